package kafka

import "testing"

// TestOffsetsCommitOnlyPastDone: the committed offset never passes a message that is
// still being handled, whatever order messages finish in.
func TestOffsetsCommitOnlyPastDone(t *testing.T) {
	o := &offsets{pending: map[int64]int{}, committed: -1}
	for off := int64(0); off < 4; off++ {
		o.fetched(off)
	}
	if got := o.done(2); got != 0 {
		t.Fatalf("after 2: commit %d, want 0 (nothing past the pending 0)", got)
	}
	o.setCommitted(0)
	if got := o.done(0); got != 1 {
		t.Fatalf("after 0: commit %d, want 1", got)
	}
	o.setCommitted(1)
	if got := o.done(1); got != 3 {
		t.Fatalf("after 1: commit %d, want 3", got)
	}
	o.setCommitted(3)
	if got := o.done(3); got != 4 {
		t.Fatalf("after 3: commit %d, want 4", got)
	}
	o.setCommitted(4)
	// A redelivered old offset (after a rebalance) never moves the commit back.
	o.fetched(1)
	if got := o.done(1); got != -1 {
		t.Fatalf("redelivered: commit %d, want none", got)
	}
}
