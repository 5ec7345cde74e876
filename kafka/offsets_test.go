package kafka

import "testing"

// TestOffsetsCommitOnlyPastDone: the committed offset never passes a message that is
// still being handled, whatever order messages finish in, per partition.
func TestOffsetsCommitOnlyPastDone(t *testing.T) {
	o := newOffsets()
	for off := int64(0); off < 4; off++ {
		o.fetched(0, off)
	}
	o.fetched(1, 7)
	step := func(p int, off, want int64) {
		t.Helper()
		if got := o.done(p, off); got != want {
			t.Fatalf("after %d/%d: commit %d, want %d", p, off, got, want)
		}
		if want >= 0 {
			o.setCommitted(p, want)
		}
	}
	step(0, 2, 0) // 0 still pending: nothing past it
	step(0, 0, 1)
	step(0, 1, 3)
	step(1, 7, 8)
	step(0, 3, 4)
	if ts := o.targets(); len(ts) != 0 {
		t.Fatalf("targets after all done: %v", ts)
	}
	// An offset below the committed one while nothing is in flight means the log was
	// reset (a broker that came back empty): commits start over.
	o.fetched(0, 0)
	step(0, 0, 1)
}
