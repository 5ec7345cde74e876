package kafka

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// handledCounter is a Handler that only counts; FirstHandler too, counting those
// handed as first.
type handledCounter struct{ all, first atomic.Int64 }

func (h *handledCounter) Handle(context.Context, []byte) error {
	h.all.Add(1)
	return nil
}

func (h *handledCounter) HandleFirst(context.Context, []byte) error {
	h.first.Add(1)
	h.all.Add(1)
	return nil
}

// Messages done one at a time are committed together, not one commit each, and a
// service that stops has committed all it handled. Messages produced after the
// reader got its partition are handed as first; the backlog it found is not.
func TestCommitsCoalesceAndFirsts(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, err := StartBroker(ctx, "127.0.0.1:0", "health", "invoker0")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var commits atomic.Int64
	b.c.ControlKey(int16(kmsg.OffsetCommit), func(kmsg.Request) (kmsg.Response, error, bool) {
		b.c.KeepControl()
		commits.Add(1)
		return nil, nil, false // handled as usual
	})
	w := &kafkago.Writer{Addr: kafkago.TCP(b.Addr()), Topic: "invoker0", RequiredAcks: kafkago.RequireOne, BatchTimeout: time.Millisecond}
	defer w.Close()
	send := func(i int) {
		if err := w.WriteMessages(ctx, kafkago.Message{Value: []byte(strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
	}
	const backlog, n = 5, 40
	for i := 0; i < backlog; i++ {
		send(i)
	}
	h := &handledCounter{}
	p := NewProducer([]string{b.Addr()}, nil)
	defer p.Close()
	svc, err := NewService(ServiceConfig{Brokers: []string{b.Addr()}, InstanceID: 0, Handler: h, Producer: p,
		SessionTimeout: 6 * time.Second, CommitInterval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(sctx) }()
	wait := func(k int64) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); h.all.Load() < k; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d messages handled", h.all.Load(), k)
			}
		}
	}
	wait(backlog)
	for i := backlog; i < n; i++ {
		send(i)
		wait(int64(i + 1))
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// One commit when the first messages are done, then none for a minute but the one
	// at the stop (a commit retried after an error could add one).
	if c := commits.Load(); c < 2 || c > 3 {
		t.Errorf("%d commits for %d messages done one at a time, want 2", c, n)
	}
	t.Logf("%d commits, %d of %d messages handed as first", commits.Load(), h.first.Load(), n)
	// Messages after the backlog fetched in the same response as the backlog are
	// checked (safe); so would all be after a rebalance. None of the backlog is first.
	if f := h.first.Load(); f > n-backlog || f == 0 {
		t.Errorf("%d messages handed as first, want 1 to %d", f, n-backlog)
	}
	cl := &kafkago.Client{Addr: kafkago.TCP(b.Addr())}
	res, err := cl.OffsetFetch(ctx, &kafkago.OffsetFetchRequest{GroupID: "invoker0", Topics: map[string][]int{"invoker0": {0}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Topics["invoker0"][0].CommittedOffset; got != n {
		t.Fatalf("committed offset %d after a graceful stop, want %d", got, n)
	}
}
