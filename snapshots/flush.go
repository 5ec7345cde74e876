package snapshots

import (
	"bytes"
	"time"

	"golang.org/x/sys/unix"
)

// flushWait bounds the wait for a timed-out launcher's logs before its UC is killed.
const flushWait = 100 * time.Millisecond

// flushLogs is the flush request (runtimes/doc.go) to a launcher that outlived its time
// limit: SIGUSR2, which the library OS hands to the launcher's thread waiting for it in
// sigwait (unikernel.UC.Signal); the launcher writes the logs it holds, then "!flushed"
// on fd 3. It waits for that line at most flushWait; the logs, written before it, are in
// the collector by then. A launcher with no such thread (nodejs, which writes a late
// run's logs through itself) costs no wait. Nothing of this is on the normal path.
func (inst *instance) flushLogs() {
	if inst.uc == nil || !inst.uc.Signal(int(unix.SIGUSR2)) {
		return
	}
	t := time.NewTimer(flushWait)
	defer t.Stop()
	for {
		select {
		case line := <-inst.replies.lines:
			if bytes.HasPrefix(line, flushedLine) {
				return
			}
		case <-inst.exited:
			return
		case <-t.C:
			return
		}
	}
}

var flushedLine = []byte("!flushed\n")
