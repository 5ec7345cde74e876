package process

import (
	"bytes"
	"syscall"
	"time"

	"github.com/seuss-go/seuss/runtimes"
)

// flushLogs is the flush request (runtimes/doc.go) to a launcher that outlived its time
// limit: SIGUSR2 to the launcher's process (not its group), which the python launcher
// takes in a thread waiting in sigwait, writes the logs it holds, then "!flushed" on
// fd 3. It reads fd 3 for that line at most runtimes.FlushWait; the logs are in the pipes before
// it, and fail drains them once the group is dead. The nodejs launcher has no handler:
// the signal ends it at once (it writes a late run's logs through itself). Nothing of
// this is on the normal path.
func (inst *instance) flushLogs() {
	if syscall.Kill(inst.cmd.Process.Pid, runtimes.FlushSignal) != nil {
		return
	}
	_ = inst.reply.SetReadDeadline(time.Now().Add(runtimes.FlushWait))
	for {
		line, err := inst.rd.ReadBytes('\n')
		if err != nil || bytes.Equal(line, runtimes.FlushedLine) {
			return
		}
	}
}
