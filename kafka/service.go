package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/seuss-go/seuss/activation"
)

// Handler processes one message of invoker{N}; *activation.Invoker implements it.
// A nil error means the message is done (acked, or dropped as malformed) and its
// offset may be committed.
type Handler interface {
	Handle(ctx context.Context, value []byte) error
}

// FirstHandler is a Handler that can also take a message known never to have been
// handed to any consumer before: a Kafka redelivery it cannot be, so its redelivery
// check can be skipped (*activation.Invoker still checks an activation id it handled
// before, for a message resent with the same id). *activation.Invoker implements it.
type FirstHandler interface {
	Handler
	HandleFirst(ctx context.Context, value []byte) error
}

// ServiceConfig configures a Service.
type ServiceConfig struct {
	Brokers    []string
	InstanceID int
	// Instance is the id written in pings (activation.Invoker.Instance()).
	Instance activation.InvokerInstanceID
	Handler  Handler
	Producer *Producer
	// MaxInFlight bounds the messages handed to Handler at once
	// (activation.Invoker.MaxConcurrent()); the consumer stops fetching when it is
	// reached, so nothing is buffered beyond it and the reader's small queue.
	MaxInFlight int
	// PingInterval is the health ping period; default 1 s (InvokerReactive).
	PingInterval time.Duration
	// DrainTimeout bounds how long shutdown waits for running activations; default 2 min.
	DrainTimeout time.Duration
	// SessionTimeout is the consumer group session timeout; default 30 s (OpenWhisk's
	// session.timeout.ms). A dead invoker's partition moves to a new member after it.
	SessionTimeout time.Duration
	// CommitInterval is the least time between two offset commits: messages done
	// meanwhile are committed together, instead of one commit (a broker round trip)
	// per message at low load. A crash redelivers at most that much more, and a
	// redelivered activation is acked from its record, not run again. Shutdown commits
	// at once. Default 50 ms; negative: commit as soon as anything is done.
	CommitInterval time.Duration
	// Observer, optional, is told the number of messages in flight.
	Observer func(inFlight int)
	Logger   *slog.Logger
}

// Service consumes invoker{N} in group invoker{N}, hands each message to the Handler,
// commits offsets only after their messages are done (at least once), and pings the
// controllers on health every second while enabled.
type Service struct {
	cfg     ServiceConfig
	topic   string
	log     *slog.Logger
	enabled atomic.Bool
	wake    chan struct{} // pinger: enabled state changed

	inFlight atomic.Int64
}

// NewService checks cfg and returns a Service; Run starts it.
func NewService(cfg ServiceConfig) (*Service, error) {
	if len(cfg.Brokers) == 0 || cfg.Handler == nil || cfg.Producer == nil {
		return nil, errors.New("kafka: service needs brokers, a handler and a producer")
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 16
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = time.Second
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 2 * time.Minute
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = 30 * time.Second
	}
	if cfg.CommitInterval == 0 {
		cfg.CommitInterval = 50 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Instance.InstanceType == "" {
		cfg.Instance = activation.NewInvokerInstanceID(cfg.InstanceID, 2048)
	}
	s := &Service{cfg: cfg, topic: InvokerTopic(cfg.InstanceID), log: cfg.Logger.With("topic", InvokerTopic(cfg.InstanceID)), wake: make(chan struct{}, 1)}
	s.enabled.Store(true)
	return s, nil
}

// Run creates invoker{N} if missing, then consumes and pings until ctx is done. On
// shutdown it stops fetching, waits up to DrainTimeout for running activations to be
// acked, commits what is done and returns nil.
func (s *Service) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for {
		err := EnsureTopic(ctx, s.cfg.Brokers, s.topic)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		s.log.Warn("cannot create the invoker topic yet; retrying", "err", err, "in", backoff)
		if !sleepCtx(ctx, backoff) {
			return nil
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.ping(ctx)
	}()
	err := s.consume(ctx)
	wg.Wait()
	return err
}

// InFlight is the number of messages being handled.
func (s *Service) InFlight() int { return int(s.inFlight.Load()) }

// Enabled reports whether the invoker pings as enabled.
func (s *Service) Enabled() bool { return s.enabled.Load() }

// SetEnabled enables or disables the invoker as POST /enable and /disable do: disabling
// sends one ping with isEnabled false and stops pinging, so the controller marks the
// invoker offline; enabling resumes the pings.
func (s *Service) SetEnabled(on bool) {
	if s.enabled.Swap(on) != on {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

func (s *Service) ping(ctx context.Context) {
	t := time.NewTicker(s.cfg.PingInterval)
	defer t.Stop()
	sentDisabled := false
	for {
		on := s.enabled.Load()
		if on || !sentDisabled {
			pctx, cancel := context.WithTimeout(ctx, s.cfg.PingInterval*5)
			if err := s.cfg.Producer.SendPing(pctx, s.cfg.Instance, on); err != nil && ctx.Err() == nil {
				s.log.Warn("health ping failed", "err", err)
			} else if err == nil {
				sentDisabled = !on
			}
			cancel()
		}
		if on {
			sentDisabled = false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.wake:
		}
	}
}

// offsets tracks, per partition, which fetched offsets are still being handled, so
// that the committed offset only ever moves past messages that are done. OpenWhisk's
// invoker topics have one partition; a topic created with more works too.
type offsets struct {
	mu    sync.Mutex
	parts map[int]*partOffsets
}

type partOffsets struct {
	pending   map[int64]int // offset → deliveries in flight
	next      int64         // one past the highest offset fetched
	committed int64         // the group's committed offset as far as we know (-1: none)
}

func newOffsets() *offsets { return &offsets{parts: map[int]*partOffsets{}} }

func (o *offsets) part(p int) *partOffsets {
	po := o.parts[p]
	if po == nil {
		po = &partOffsets{pending: map[int64]int{}, committed: -1}
		o.parts[p] = po
	}
	return po
}

func (o *offsets) fetched(p int, off int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	po := o.part(p)
	if off < po.committed && len(po.pending) == 0 {
		// Nothing in flight and an offset below what was committed: the log was reset
		// (a broker that came back empty). Commit from here on again.
		po.committed, po.next = -1, 0
	}
	po.pending[off]++
	if off+1 > po.next {
		po.next = off + 1
	}
}

// done marks off of partition p handled and returns the offset to commit for p (all
// below it done), or -1.
func (o *offsets) done(p int, off int64) int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	po := o.part(p)
	if po.pending[off]--; po.pending[off] <= 0 {
		delete(po.pending, off)
	}
	return po.target()
}

func (po *partOffsets) target() int64 {
	low := po.next
	for off := range po.pending {
		if off < low {
			low = off
		}
	}
	if low > po.committed {
		return low
	}
	return -1
}

// targets returns the offsets to commit, by partition.
func (o *offsets) targets() map[int]int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	t := map[int]int64{}
	for p, po := range o.parts {
		if off := po.target(); off >= 0 {
			t[p] = off
		}
	}
	return t
}

func (o *offsets) setCommitted(p int, off int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if po := o.part(p); off > po.committed {
		po.committed = off
	}
}

func (s *Service) consume(ctx context.Context) error {
	r := kafkago.NewReader(kafkago.ReaderConfig{
		Brokers:  s.cfg.Brokers,
		GroupID:  s.topic, // OpenWhisk: group.id == topic
		Topic:    s.topic,
		MinBytes: 1,
		// A message may be up to max.message.bytes; fetch at least that much.
		MaxBytes:          4 * MaxMessageBytes,
		MaxWait:           500 * time.Millisecond, // fetch.max.wait.ms
		QueueCapacity:     s.cfg.MaxInFlight,
		StartOffset:       kafkago.FirstOffset, // auto.offset.reset=earliest
		CommitInterval:    0,                   // synchronous commits, after the acks
		SessionTimeout:    s.cfg.SessionTimeout,
		HeartbeatInterval: max(s.cfg.SessionTimeout/10, 100*time.Millisecond),
		RebalanceTimeout:  s.cfg.SessionTimeout,
		JoinGroupBackoff:  500 * time.Millisecond,
		ReadBackoffMin:    100 * time.Millisecond,
		ReadBackoffMax:    2 * time.Second,
		MaxAttempts:       1 << 30, // keep trying to rejoin a broker that went away
		ErrorLogger:       kafkago.LoggerFunc(func(f string, a ...any) { s.log.Debug("kafka reader: " + fmt.Sprintf(f, a...)) }),
	})

	// Handlers keep running after ctx ends (draining), until DrainTimeout.
	hctx, hcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hcancel()
	stopDrain := context.AfterFunc(ctx, func() {
		t := time.NewTimer(s.cfg.DrainTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			s.log.Warn("drain timeout: abandoning running activations; they will be redelivered")
			hcancel()
		case <-hctx.Done():
		}
	})
	defer stopDrain()

	offs := newOffsets()
	commits := make(chan struct{}, 1) // "there is something to commit"
	committerDone := make(chan struct{})
	go func() {
		defer close(committerDone)
		s.commitLoop(hctx, ctx, r, offs, commits)
	}()

	fh, _ := s.cfg.Handler.(FirstHandler)
	var fr *firsts
	if fh != nil {
		fr = newFirsts(r.Stats)
	}
	slots := make(chan struct{}, s.cfg.MaxInFlight)
	var wg sync.WaitGroup
	for ctx.Err() == nil {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			continue
		}
		msg, err := r.FetchMessage(ctx)
		if err != nil {
			<-slots
			if ctx.Err() != nil {
				break
			}
			s.log.Warn("fetch failed; retrying", "err", err)
			sleepCtx(ctx, time.Second)
			continue
		}
		offs.fetched(msg.Partition, msg.Offset)
		first := fr != nil && fr.first(msg)
		s.observe(+1)
		wg.Add(1)
		go func(msg kafkago.Message) {
			defer wg.Done()
			defer func() { <-slots }()
			defer s.observe(-1)
			var err error
			if first {
				err = fh.HandleFirst(hctx, msg.Value)
			} else {
				err = s.cfg.Handler.Handle(hctx, msg.Value)
			}
			if err != nil {
				// Not done: its offset stays uncommitted and it is redelivered.
				s.log.Warn("message not completed; left uncommitted", "offset", msg.Offset, "err", err)
				return
			}
			if offs.done(msg.Partition, msg.Offset) >= 0 {
				select {
				case commits <- struct{}{}:
				default: // already signalled; the committer reads the latest targets
				}
			}
		}(msg)
	}
	wg.Wait()
	close(commits)
	<-committerDone
	hcancel()
	if err := r.Close(); err != nil {
		s.log.Debug("closing reader", "err", err)
	}
	return nil
}

// commitLoop commits the latest target offsets, retrying while the broker is away.
// After commits is closed it makes a last attempt for what is done, then returns.
// stop is the service's context: once it is done, failed commits are not retried.
func (s *Service) commitLoop(ctx, stop context.Context, r *kafkago.Reader, offs *offsets, commits <-chan struct{}) {
	commit := func(timeout time.Duration) bool {
		targets := offs.targets()
		if len(targets) == 0 {
			return true
		}
		msgs := make([]kafkago.Message, 0, len(targets))
		for p, off := range targets {
			// CommitMessages commits msg.Offset+1.
			msgs = append(msgs, kafkago.Message{Topic: s.topic, Partition: p, Offset: off - 1})
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if err := r.CommitMessages(cctx, msgs...); err != nil {
			s.log.Warn("commit failed", "offsets", targets, "err", err)
			return false
		}
		for p, off := range targets {
			offs.setCommitted(p, off)
		}
		return true
	}
	for range commits {
		for backoff := 100 * time.Millisecond; ; backoff = min(backoff*2, 5*time.Second) {
			if commit(10*time.Second) || ctx.Err() != nil {
				break
			}
			// While shutting down, do not retry: the last attempt below covers it.
			if stop.Err() != nil || !sleepCtx(stop, backoff) {
				break
			}
		}
		if s.cfg.CommitInterval > 0 {
			// Let more be done before the next commit; shutdown does not wait.
			sleepCtx(stop, s.cfg.CommitInterval)
		}
	}
	if ctx.Err() == nil {
		commit(5 * time.Second)
	}
}

// firsts tells which fetched messages no consumer can have been handed before: those
// produced after this reader was given their partition. That is known only while the
// reader is in its first consumer group generation; the first message fetched from a
// partition carries the partition's high watermark, and every message of that partition
// at or past it was produced after the assignment. Messages below it may have been
// fetched by the partition's previous owner (a crashed or restarted invoker, whose
// offsets were not committed) and are checked for a record as before. From the second
// generation on (a rebalance: the partition may have been elsewhere meanwhile), or on
// anything unexpected, no message counts as first any more, for the reader's life.
// Only the consume loop calls it.
type firsts struct {
	stats func() kafkago.ReaderStats
	gens  int64 // generations seen (rebalances counted by the reader)
	off   bool
	fence map[int]int64 // partition → first offset produced after the assignment
	next  map[int]int64 // partition → one past the last offset fetched
}

func newFirsts(stats func() kafkago.ReaderStats) *firsts {
	return &firsts{stats: stats, fence: map[int]int64{}, next: map[int]int64{}}
}

// first reports whether msg, just fetched, was produced after its partition was assigned
// to this reader. The reader counts a generation before it fetches anything for it,
// so a message of a second generation is never taken for one of the first.
func (f *firsts) first(msg kafkago.Message) bool {
	if f.off {
		return false
	}
	f.gens += f.stats().Rebalances
	p := msg.Partition
	next, seen := f.next[p]
	switch {
	case f.gens != 1, msg.HighWaterMark <= msg.Offset, seen && msg.Offset < next:
		// A second generation, a watermark that cannot be, or the partition read again.
		f.off = true
		return false
	}
	f.next[p] = msg.Offset + 1
	fence, ok := f.fence[p]
	if !ok {
		f.fence[p] = msg.HighWaterMark
		return false
	}
	return msg.Offset >= fence
}

func (s *Service) observe(delta int64) {
	n := s.inFlight.Add(delta)
	if s.cfg.Observer != nil {
		s.cfg.Observer(int(n))
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// ControlHandler serves the stock invoker's HTTP endpoints (DefaultInvokerServer,
// BasicRasService): GET /ping → "pong"; POST /enable, POST /disable; GET /isEnabled →
// {"enabled":bool}. When user is non-empty the last three require basic auth.
func (s *Service) ControlHandler(user, password string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
		_, _ = w.Write([]byte("pong"))
	})
	auth := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if user != "" {
				u, p, ok := r.BasicAuth()
				if !ok || u != user || p != password {
					w.Header().Set("WWW-Authenticate", `Basic realm="invoker"`)
					http.Error(w, "unauthorized", http.StatusUnauthorized)
					return
				}
			}
			h(w, r)
		}
	}
	mux.HandleFunc("POST /enable", auth(func(w http.ResponseWriter, r *http.Request) {
		s.SetEnabled(true)
		s.log.Info("invoker enabled")
		_, _ = w.Write([]byte(fmt.Sprintf("%s enabled", s.cfg.Instance.String())))
	}))
	mux.HandleFunc("POST /disable", auth(func(w http.ResponseWriter, r *http.Request) {
		s.SetEnabled(false)
		s.log.Info("invoker disabled")
		_, _ = w.Write([]byte(fmt.Sprintf("%s disabled", s.cfg.Instance.String())))
	}))
	mux.HandleFunc("GET /isEnabled", auth(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"enabled":%t}`, s.enabled.Load())
	}))
	return mux
}
