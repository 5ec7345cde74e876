package snapshots

import (
	"bytes"
	"time"

	"github.com/seuss-go/seuss/runtimes"
)

// flushLogs is the flush request (runtimes/doc.go) to a launcher that outlived its time
// limit: SIGUSR2, which the library OS hands to the launcher's thread waiting for it in
// sigwait (unikernel.UC.Signal); the launcher writes the logs it holds, then "!flushed"
// on fd 3. It waits for that line at most runtimes.FlushWait; the logs, written before it, are in
// the collector by then. A launcher with no such thread (nodejs, which writes a late
// run's logs through itself) costs no wait. Nothing of this is on the normal path.
func (inst *instance) flushLogs() {
	if inst.uc == nil || !inst.uc.Signal(int(runtimes.FlushSignal)) {
		return
	}
	t := time.NewTimer(runtimes.FlushWait)
	defer t.Stop()
	for {
		select {
		case line := <-inst.replies.lines:
			if bytes.HasPrefix(line, runtimes.FlushedLine) {
				return
			}
		case <-inst.exited:
			return
		case <-t.C:
			return
		}
	}
}
