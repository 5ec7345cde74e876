package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/seuss-go/seuss/activation"
)

// Producer sends the invoker's messages: acks on completed{C}, pings on health, user
// events on events. It implements activation.AckSender and activation.EventSender.
//
// Every write waits for the partition leader (RequireOne, OpenWhisk's acks=1): kafka-go's
// default RequireNone would drop an oversize message without telling anyone.
//
// Batching is natural, not timed: a message sent while no write is in flight is written
// at once; messages sent while a write is in flight queue up and go together in the next
// write, as soon as it returns. One write is in flight at a time, so under load the
// batches grow with the broker's round trip, and an idle producer adds no delay. (kafka-go's
// own batching waits out Writer.BatchTimeout on every write: with 1 ms, each ack paid
// ~1 ms; with 1 µs, each message became its own produce request and peak throughput
// fell by a third.) Natural batching alone writes more, smaller batches than a fixed
// wait when messages come one at a time but often, which costs CPU per message in the
// client and the broker; SetLinger restores the wait for when more messages are known to
// be on their way.
type Producer struct {
	w   *kafkago.Writer
	log *slog.Logger
	// write is w.WriteMessages; tests replace it to observe the batches.
	write func(ctx context.Context, msgs ...kafkago.Message) error

	// flushing counts the running flush goroutine (at most one), for Close.
	flushing sync.WaitGroup

	// linger and expected: see SetLinger. Set before the first Send.
	linger   time.Duration
	expected func() int
	// more is signalled on every Send, for a lingering flush.
	more chan struct{}

	mu      sync.Mutex
	queue   []*pending // sent, not yet taken by a write; in send order
	writing bool       // a flush goroutine is running
	closed  bool
}

// pending is one message waiting for its write.
type pending struct {
	msg      kafkago.Message
	size     int64     // its size in a record batch, as kafka-go counts it
	at       time.Time // when it was sent, if the producer lingers
	err      error
	done     chan struct{} // closed once err is set
	canceled bool          // the sender gave up before a write took it (guarded by Producer.mu)
}

var (
	_ activation.AckSender   = (*Producer)(nil)
	_ activation.EventSender = (*Producer)(nil)
)

// Batch bounds. batchBytes is OpenWhisk's ack producer max.request.size
// (MAX_ACTIVATION_LIMIT) less a little for the record batch's own overhead, so that a
// batch of several acks is never refused by a broker whose max.message.bytes is that
// limit.
const (
	batchBytes    = MaxMessageBytes - 512
	batchMessages = 256
)

// NewProducer returns a producer writing to brokers. logger may be nil.
func NewProducer(brokers []string, logger *slog.Logger) *Producer {
	if logger == nil {
		logger = slog.Default()
	}
	w := &kafkago.Writer{
		Addr:         kafkago.TCP(brokers...),
		Balancer:     &kafkago.LeastBytes{},
		RequiredAcks: kafkago.RequireOne,
		BatchBytes:   batchBytes,
		BatchSize:    batchMessages,
		// Each WriteMessages call below carries a whole batch, appended under the
		// partition writer's lock: the batch is queued for writing as soon as the call
		// has appended it, not 1 ns later, since the timer's goroutine needs that lock.
		BatchTimeout: time.Nanosecond,
		MaxAttempts:  3,
		WriteTimeout: 10 * time.Second,
		ReadTimeout:  10 * time.Second,
	}
	return &Producer{w: w, log: logger, write: w.WriteMessages, more: make(chan struct{}, 1)}
}

// SetLinger makes the producer wait, before a write that would not fill a batch, up to
// linger for more messages, but only while fewer are queued than expected() says are
// coming. For the invoker, expected is the number of activations in flight: with one,
// its ack is written at once; with several, their acks go in fewer, larger writes, as a
// fixed BatchTimeout would batch them, which is what keeps peak throughput on a CPU-bound
// machine. Call it before the first Send.
func (p *Producer) SetLinger(linger time.Duration, expected func() int) {
	p.linger, p.expected = linger, expected
}

// Close waits for the messages already sent to be written, then closes the producer.
// Sends after Close fail.
func (p *Producer) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.flushing.Wait()
	return p.w.Close()
}

// errProducerClosed: Send after Close.
var errProducerClosed = errors.New("kafka: producer closed")

// Send writes one message to topic and waits for the leader's ack. A message the
// client or the broker refuses as too large returns an error wrapping
// activation.ErrAckTooLarge. If ctx ends first, Send returns its error; a message
// already taken by a write may still reach the broker (at least once).
func (p *Producer) Send(ctx context.Context, topic string, value []byte) error {
	pm, err := p.enqueue(topic, value)
	if err != nil {
		return err
	}
	return p.wait(ctx, pm)
}

// enqueue queues one message for the next write, starting a flush if none runs.
func (p *Producer) enqueue(topic string, value []byte) (*pending, error) {
	pm := &pending{
		msg:  kafkago.Message{Topic: topic, Value: value},
		size: messageSize(len(value)),
		done: make(chan struct{}),
	}
	if p.linger > 0 {
		pm.at = time.Now()
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, fmt.Errorf("kafka: send to %s: %w", topic, errProducerClosed)
	}
	p.queue = append(p.queue, pm)
	select {
	case p.more <- struct{}{}:
	default:
	}
	if !p.writing {
		p.writing = true
		p.flushing.Add(1)
		go p.flush()
	}
	p.mu.Unlock()
	return pm, nil
}

// wait waits for pm's write, as Send does.
func (p *Producer) wait(ctx context.Context, pm *pending) error {
	topic := pm.msg.Topic
	select {
	case <-pm.done:
	case <-ctx.Done():
		p.mu.Lock()
		pm.canceled = true // a write that has not taken it yet skips it
		p.mu.Unlock()
		return fmt.Errorf("kafka: send to %s: %w", topic, ctx.Err())
	}
	if pm.err == nil {
		return nil
	}
	if isTooLarge(pm.err) {
		return fmt.Errorf("kafka: send %d bytes to %s: %w: %v", len(pm.msg.Value), topic, activation.ErrAckTooLarge, pm.err)
	}
	return fmt.Errorf("kafka: send to %s: %w", topic, pm.err)
}

// messageSize is a message's size in a record batch as kafka-go's Writer counts it
// against BatchBytes (Message.totalSize: no key, no headers).
func messageSize(valueLen int) int64 { return 4 + 1 + 1 + 4 + 4 + int64(valueLen) + 8 }

// flush writes batches until the queue is empty, then ends. Only one runs at a time.
func (p *Producer) flush() {
	defer p.flushing.Done()
	for {
		p.lingerFor()
		p.mu.Lock()
		batch := p.take()
		if len(batch) == 0 {
			p.writing = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		p.writeBatch(batch)
	}
}

// lingerFor waits while fewer messages are queued than are expected, until the oldest
// has waited p.linger since its Send: a message that queued up during the last write
// has already waited, and does not wait again.
func (p *Producer) lingerFor() {
	if p.linger <= 0 || p.expected == nil {
		return
	}
	var t *time.Timer
	for {
		p.mu.Lock()
		n := len(p.queue)
		var since time.Time
		if n > 0 {
			since = p.queue[0].at
		}
		p.mu.Unlock()
		if n == 0 || n >= min(p.expected(), batchMessages) {
			return
		}
		if t == nil {
			left := p.linger - time.Since(since)
			if left <= 0 {
				return
			}
			t = time.NewTimer(left)
			defer t.Stop()
		}
		select {
		case <-p.more:
		case <-t.C:
			return
		}
	}
}

// take removes the next batch from the queue: messages in send order, skipping those
// whose sender gave up, up to batchMessages and batchBytes (the first one always, so
// that an oversize message fails alone). p.mu is held.
func (p *Producer) take() []*pending {
	var batch []*pending
	var bytes int64
	i := 0
	for ; i < len(p.queue) && len(batch) < batchMessages; i++ {
		pm := p.queue[i]
		if pm.canceled {
			continue
		}
		if len(batch) > 0 && bytes+pm.size > batchBytes {
			break
		}
		batch = append(batch, pm)
		bytes += pm.size
	}
	n := copy(p.queue, p.queue[i:])
	clear(p.queue[n:])
	p.queue = p.queue[:n]
	return batch
}

// writeBatch writes batch in one WriteMessages call and completes each message with its
// own error. If a batch of several is refused as too large, each is written again alone,
// so that only a message that is too large by itself reports it (and only its ack is
// shrunk).
func (p *Producer) writeBatch(batch []*pending) {
	msgs := make([]kafkago.Message, len(batch))
	for i, pm := range batch {
		msgs[i] = pm.msg
	}
	// The Writer bounds each produce request (WriteTimeout, MaxAttempts); senders that
	// stop waiting do not cancel a write other senders share.
	err := p.write(context.Background(), msgs...)
	errs := make([]error, len(batch))
	var we kafkago.WriteErrors
	switch {
	case err == nil:
	case errors.As(err, &we) && len(we) == len(batch):
		copy(errs, we)
	default:
		for i := range errs {
			errs[i] = err
		}
	}
	if len(batch) > 1 {
		for i, e := range errs {
			if e != nil && isTooLarge(e) {
				errs[i] = p.write(context.Background(), batch[i].msg)
			}
		}
	}
	for i, pm := range batch {
		pm.err = errs[i]
		close(pm.done)
	}
}

func isTooLarge(err error) bool {
	var we kafkago.WriteErrors
	if errors.As(err, &we) {
		for _, e := range we {
			if e != nil && isTooLarge(e) {
				return true
			}
		}
		return false
	}
	return errors.Is(err, kafkago.MessageSizeTooLarge)
}

// SendAck implements activation.AckSender: topic "completed" + controller.
func (p *Producer) SendAck(ctx context.Context, controller string, ack activation.Ack) error {
	b, err := activation.EncodeAck(ack)
	if err != nil {
		return fmt.Errorf("kafka: encode %s ack: %w", activation.AckKind(ack), err)
	}
	return p.Send(ctx, CompletedTopic(controller), b)
}

// StartAck implements activation.AckStarter: the ack is queued as SendAck queues it,
// and wait waits for its write.
func (p *Producer) StartAck(ctx context.Context, controller string, ack activation.Ack) (wait func() error) {
	b, err := activation.EncodeAck(ack)
	if err != nil {
		err = fmt.Errorf("kafka: encode %s ack: %w", activation.AckKind(ack), err)
		return func() error { return err }
	}
	pm, err := p.enqueue(CompletedTopic(controller), b)
	if err != nil {
		return func() error { return err }
	}
	return func() error { return p.wait(ctx, pm) }
}

var _ activation.AckStarter = (*Producer)(nil)

// SendEvent implements activation.EventSender: topic "events".
func (p *Producer) SendEvent(ctx context.Context, ev *activation.EventMessage) error {
	b, err := activation.Marshal(ev)
	if err != nil {
		return err
	}
	return p.Send(ctx, EventsTopic, b)
}

// SendPing writes a PingMessage on health.
func (p *Producer) SendPing(ctx context.Context, id activation.InvokerInstanceID, enabled bool) error {
	b, err := json.Marshal(activation.PingMessage{Name: id, IsEnabled: &enabled})
	if err != nil {
		return err
	}
	return p.Send(ctx, HealthTopic, b)
}
