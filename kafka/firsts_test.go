package kafka

import (
	"testing"

	kafkago "github.com/segmentio/kafka-go"
)

// A message counts as first only in the reader's first generation, at or past the high
// watermark of its partition's first fetch, and never again after anything unexpected.
func TestFirsts(t *testing.T) {
	var rebalances int64
	stats := func() kafkago.ReaderStats {
		r := rebalances
		rebalances = 0 // the reader's counters are reset by each Stats
		return kafkago.ReaderStats{Rebalances: r}
	}
	msg := func(p int, off, hwm int64) kafkago.Message {
		return kafkago.Message{Partition: p, Offset: off, HighWaterMark: hwm}
	}
	type step struct {
		m     kafkago.Message
		rebal int64 // generations the reader counted before this message
		want  bool
	}
	cases := map[string][]step{
		"restart: the backlog is checked, what follows is not": {
			{msg(0, 5, 8), 1, false}, {msg(0, 6, 8), 0, false}, {msg(0, 7, 8), 0, false},
			{msg(0, 8, 9), 0, true}, {msg(0, 9, 12), 0, true},
			{msg(1, 0, 1), 0, false}, {msg(1, 1, 2), 0, true}, // partitions apart
		},
		"an empty topic: the first message is checked, then none": {
			{msg(0, 0, 1), 1, false}, {msg(0, 1, 2), 0, true},
		},
		"a second generation turns it off for good": {
			{msg(0, 0, 1), 1, false}, {msg(0, 1, 2), 0, true},
			{msg(0, 1, 3), 1, false}, {msg(0, 2, 3), 0, false}, {msg(0, 7, 9), 0, false},
		},
		"a message of a partition read again": {
			{msg(0, 3, 4), 1, false}, {msg(0, 4, 6), 0, true}, {msg(0, 5, 6), 0, true},
			{msg(0, 4, 6), 0, false}, {msg(0, 6, 7), 0, false},
		},
		"a watermark that cannot be (not sent)": {
			{msg(0, 3, 0), 1, false}, {msg(0, 4, 9), 0, false},
		},
		"no generation counted": {
			{msg(0, 3, 4), 0, false}, {msg(0, 4, 9), 0, false},
		},
	}
	for name, steps := range cases {
		rebalances = 0
		f := newFirsts(stats)
		for i, s := range steps {
			rebalances += s.rebal
			if got := f.first(s.m); got != s.want {
				t.Errorf("%s: step %d (partition %d offset %d hwm %d): first = %v, want %v", name, i, s.m.Partition, s.m.Offset, s.m.HighWaterMark, got, s.want)
			}
		}
	}
}
