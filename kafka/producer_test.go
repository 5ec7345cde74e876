package kafka

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/seuss-go/seuss/activation"
)

// fakeWrites stands in for the Writer: it records each WriteMessages call's values and,
// while hold is set, blocks each call until released.
type fakeWrites struct {
	mu    sync.Mutex
	calls [][]string
	// hold: the next calls block until release is closed.
	hold    bool
	release chan struct{}
	entered chan struct{} // one value per call that blocks
	// fail, if set, gives the error of a call from its values.
	fail func(vals []string) error
}

func (f *fakeWrites) write(_ context.Context, msgs ...kafkago.Message) error {
	vals := make([]string, len(msgs))
	for i, m := range msgs {
		vals[i] = string(m.Value)
	}
	f.mu.Lock()
	f.calls = append(f.calls, vals)
	hold := f.hold
	f.mu.Unlock()
	if hold {
		f.entered <- struct{}{}
		<-f.release
	}
	if f.fail != nil {
		return f.fail(vals)
	}
	return nil
}

func (f *fakeWrites) snapshot() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]string(nil), f.calls...)
}

func newFakeProducer(t *testing.T) (*Producer, *fakeWrites) {
	t.Helper()
	f := &fakeWrites{release: make(chan struct{}), entered: make(chan struct{}, 16)}
	p := NewProducer([]string{"127.0.0.1:1"}, nil)
	p.write = f.write
	t.Cleanup(func() { p.Close() })
	return p, f
}

func (p *Producer) queued() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queue)
}

// waitQueued waits until n messages are queued behind the write in flight.
func waitQueued(t *testing.T, p *Producer, n int) {
	t.Helper()
	for i := 0; p.queued() < n; i++ {
		if i > 1e7 {
			t.Fatalf("%d messages queued, want %d", p.queued(), n)
		}
		runtime.Gosched()
	}
}

// An idle producer writes each message at once, alone: sequential sends make one write each.
func TestProducerIdleWritesAlone(t *testing.T) {
	p, f := newFakeProducer(t)
	for i := 0; i < 5; i++ {
		if err := p.Send(context.Background(), "completed0", []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	got := f.snapshot()
	want := [][]string{{"0"}, {"1"}, {"2"}, {"3"}, {"4"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("writes %v, want %v", got, want)
	}
}

// Messages sent while a write is in flight go together, in send order, in the next write.
func TestProducerBatchesWhileWriting(t *testing.T) {
	p, f := newFakeProducer(t)
	f.hold = true
	const n = 10
	var wg sync.WaitGroup
	errs := make([]error, n+1)
	send := func(i int) {
		defer wg.Done()
		errs[i] = p.Send(context.Background(), "completed0", []byte(fmt.Sprint(i)))
	}
	wg.Add(1)
	go send(0)
	<-f.entered // message 0 is being written
	f.mu.Lock()
	f.hold = false
	f.mu.Unlock()
	for i := 1; i <= n; i++ {
		wg.Add(1)
		go send(i)
		waitQueued(t, p, i) // one at a time, so that the send order is known
	}
	close(f.release)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	got := f.snapshot()
	want := [][]string{{"0"}, {"1", "2", "3", "4", "5", "6", "7", "8", "9", "10"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("writes %v, want %v", got, want)
	}
}

// A batch is bounded by batchMessages and batchBytes; an oversize message goes alone, and
// only it reports too large, even when the broker refuses a whole batch.
func TestProducerBatchBoundsAndTooLarge(t *testing.T) {
	p, f := newFakeProducer(t)
	big := strings.Repeat("x", batchBytes)
	f.fail = func(vals []string) error {
		// As a broker does: a batch holding the big message is refused as a whole.
		for _, v := range vals {
			if v == big {
				we := make(kafkago.WriteErrors, len(vals))
				for i := range we {
					we[i] = kafkago.MessageSizeTooLarge
				}
				return we
			}
		}
		return nil
	}
	f.hold = true
	var wg sync.WaitGroup
	var mu sync.Mutex
	results := map[string]error{}
	send := func(v string) {
		defer wg.Done()
		err := p.Send(context.Background(), "completed0", []byte(v))
		mu.Lock()
		results[v] = err
		mu.Unlock()
	}
	wg.Add(1)
	go send("first")
	<-f.entered
	f.mu.Lock()
	f.hold = false
	f.mu.Unlock()
	vals := []string{}
	for i := 0; i < batchMessages+10; i++ {
		vals = append(vals, fmt.Sprint(i))
	}
	vals = append(vals[:5], append([]string{big}, vals[5:]...)...)
	for i, v := range vals {
		wg.Add(1)
		go send(v)
		waitQueued(t, p, i+1)
	}
	close(f.release)
	wg.Wait()

	var sizes []int
	for _, c := range f.snapshot() {
		sizes = append(sizes, len(c))
	}
	// first alone; 0-4 (big does not fit after them); big alone; then the other
	// batchMessages+5 small ones, batchMessages at most per write.
	want := []int{1, 5, 1, batchMessages, 5}
	if fmt.Sprint(sizes) != fmt.Sprint(want) {
		t.Fatalf("write sizes %v, want %v", sizes, want)
	}
	for v, err := range results {
		if v == big {
			if !errors.Is(err, activation.ErrAckTooLarge) {
				t.Fatalf("big message: %v, want ErrAckTooLarge", err)
			}
		} else if err != nil {
			t.Fatalf("message %q: %v", v, err)
		}
	}
}

// A refused batch of several is written again message by message: only the one that is
// too large by itself fails.
func TestProducerTooLargeBatchSplit(t *testing.T) {
	p, f := newFakeProducer(t)
	f.fail = func(vals []string) error {
		if len(vals) > 1 {
			we := make(kafkago.WriteErrors, len(vals))
			for i := range we {
				we[i] = kafkago.MessageSizeTooLarge
			}
			return we
		}
		if vals[0] == "b" {
			return kafkago.WriteErrors{kafkago.MessageSizeTooLarge}
		}
		return nil
	}
	f.hold = true
	var wg sync.WaitGroup
	res := make([]error, 4)
	for i, v := range []string{"first", "a", "b", "c"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = p.Send(context.Background(), "completed0", []byte(v))
		}()
		if i == 0 {
			<-f.entered
			f.mu.Lock()
			f.hold = false
			f.mu.Unlock()
		} else {
			waitQueued(t, p, i)
		}
	}
	close(f.release)
	wg.Wait()
	got := f.snapshot()
	want := [][]string{{"first"}, {"a", "b", "c"}, {"a"}, {"b"}, {"c"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("writes %v, want %v", got, want)
	}
	for i, err := range res {
		if tooLarge := errors.Is(err, activation.ErrAckTooLarge); tooLarge != (i == 2) || (i != 2 && err != nil) {
			t.Fatalf("send %d: %v", i, err)
		}
	}
}

// A sender that gives up while queued is not written; Close writes what is queued.
func TestProducerCanceledNotWritten(t *testing.T) {
	p, f := newFakeProducer(t)
	f.hold = true
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = p.Send(context.Background(), "completed0", []byte("first"))
	}()
	<-f.entered
	f.mu.Lock()
	f.hold = false
	f.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- p.Send(ctx, "completed0", []byte("gone")) }()
	waitQueued(t, p, 1)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled send: %v", err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = p.Send(context.Background(), "completed0", []byte("kept"))
	}()
	waitQueued(t, p, 2)
	close(f.release)
	wg.Wait()
	p.Close()
	got := f.snapshot()
	want := [][]string{{"first"}, {"kept"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("writes %v, want %v", got, want)
	}
	if err := p.Send(context.Background(), "completed0", []byte("late")); !errors.Is(err, errProducerClosed) {
		t.Fatalf("send after close: %v", err)
	}
}

// With SetLinger, a write waits for as many messages as are expected (here the linger is
// long enough never to end first); with one expected, each goes at once.
func TestProducerLinger(t *testing.T) {
	p, f := newFakeProducer(t)
	var expected atomic.Int64
	expected.Store(3)
	p.SetLinger(time.Hour, func() int { return int(expected.Load()) })
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Send(context.Background(), "completed0", []byte(fmt.Sprint(i))); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	expected.Store(1)
	for i := 3; i < 5; i++ {
		if err := p.Send(context.Background(), "completed0", []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	got := f.snapshot()
	if len(got) != 3 || len(got[0]) != 3 || fmt.Sprint(got[1:]) != "[[3] [4]]" {
		t.Fatalf("writes %v, want the first three together, then [3] and [4]", got)
	}
}
