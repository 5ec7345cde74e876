package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/kafka"
)

// sample is one activation as the load generator saw it.
type sample struct {
	Seq    int
	ID     string
	Action string

	Sent       time.Time // before the message was produced to invoker{N}
	InKafka    time.Time // the broker acknowledged the message (the produce call returned)
	Result     time.Time // the result ack (ResultMessage or Combined) was read
	Completion time.Time // the completion ack (CompletionMessage or Combined) was read

	Path   string // the record's seuss.path annotation
	Status int    // the record's response.statusCode; -1 until known
	FnUS   float64

	// Counts of acks received, to check that each was acked exactly once.
	Results, Completions int

	// From the in-process invoker's executor (zero when external).
	ExecTime, RunTime time.Duration

	done chan struct{}
}

// E2E is produce → result ack read, as the load generator measures it: the latency a
// controller would see, including the load generator's own produce call.
func (s *sample) E2E() time.Duration {
	if s.Result.IsZero() {
		return 0
	}
	return s.Result.Sub(s.Sent)
}

// FromKafka is message in Kafka (the produce call returned) → result ack read. The
// invoker may have fetched the message before the produce call returns, so this can
// undercount by up to the produce call's return trip; E2E overcounts by the produce
// call's batching delay. The two bound the invoker's share.
func (s *sample) FromKafka() time.Duration {
	if s.Result.IsZero() || s.InKafka.IsZero() {
		return 0
	}
	return s.Result.Sub(s.InKafka)
}

// driver sends ActivationMessages to invoker{N} and matches the acks read on
// completed{C}.
type driver struct {
	sut    *sut
	prod   *kafka.Producer
	reader *kafkago.Reader
	topic  string
	log    *slog.Logger

	mu      sync.Mutex
	byID    map[string]*sample
	strays  int // acks for activations this run did not send
	decodeE int

	acked atomic.Int64 // samples with both acks
}

func newDriver(ctx context.Context, s *sut, log *slog.Logger) (*driver, error) {
	ackTopic := kafka.CompletedTopic(s.Controller)
	// Start reading acks at the current end of completed{C}, found before anything is
	// sent, so that no ack of this run is missed and none of an earlier one is read.
	conn, err := kafkago.DialLeader(ctx, "tcp", s.Brokers[0], ackTopic, 0)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", ackTopic, err)
	}
	last, err := conn.ReadLastOffset()
	conn.Close()
	if err != nil {
		return nil, fmt.Errorf("last offset of %s: %w", ackTopic, err)
	}
	r := kafkago.NewReader(kafkago.ReaderConfig{
		Brokers:   s.Brokers,
		Topic:     ackTopic,
		Partition: 0,
		MinBytes:  1,
		MaxBytes:  4 * kafka.MaxMessageBytes,
		MaxWait:   100 * time.Millisecond,
	})
	if err := r.SetOffset(last); err != nil {
		r.Close()
		return nil, err
	}
	d := &driver{
		sut:    s,
		prod:   kafka.NewProducer(s.Brokers, log),
		reader: r,
		topic:  kafka.InvokerTopic(s.InvokerID),
		log:    log,
		byID:   map[string]*sample{},
	}
	// As a stock controller does: its KafkaProducerConnector sets no linger.ms, so
	// kafka-clients sends each activation at once (linger 0); activations sent while a
	// write is in flight still go together in the next one. (A 1 ms linger while others
	// were outstanding cost each new function 1-1.3 ms in the closed loop, waiting for
	// sends that come only when another activation completes.)
	return d, nil
}

// outstanding is the number of activations sent and not yet acked.
func (d *driver) outstanding() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.byID) - int(d.acked.Load())
}

func (d *driver) Close() {
	d.prod.Close()
	d.reader.Close()
}

// readAcks reads completed{C} until ctx is done.
func (d *driver) readAcks(ctx context.Context) {
	for {
		m, err := d.reader.ReadMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d.log.Warn("reading acks", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		d.handleAck(time.Now(), m.Value)
	}
}

// ackFields are the fields of the three ack shapes that tell them apart. A result's
// activation is decoded in the same pass (ackRecord); a shrunk one, the activation id
// as a string, is read again as shrunkAck.
type ackFields struct {
	ActivationID  string     `json:"activationId"`
	Response      *ackRecord `json:"response"`
	IsSystemError *bool      `json:"isSystemError"`
}

type shrunkAck struct {
	Response string `json:"response"`
}

// ackRecord is what the driver reads of the activation in a result ack: decoding the
// whole WhiskActivation (logs and all) was the driver's largest cost per ack.
type ackRecord struct {
	ActivationID string `json:"activationId"`
	Response     struct {
		StatusCode int             `json:"statusCode"`
		Result     json.RawMessage `json:"result"`
	} `json:"response"`
	Annotations []activation.KeyValue `json:"annotations"`
}

// fnResult is the function's own result.
type fnResult struct {
	FnUS float64 `json:"fn_us"`
}

func (d *driver) handleAck(now time.Time, b []byte) {
	var a ackFields
	err := json.Unmarshal(b, &a)
	rec := a.Response
	isResult := rec != nil
	id := a.ActivationID
	if te := (*json.UnmarshalTypeError)(nil); errors.As(err, &te) && te.Field == "response" {
		// A shrunk result: the activation id alone.
		var s shrunkAck
		err = json.Unmarshal(b, &s)
		isResult, rec, id = err == nil, nil, s.Response
	}
	if err != nil {
		d.mu.Lock()
		d.decodeE++
		d.mu.Unlock()
		return
	}
	isCompletion := a.IsSystemError != nil
	if rec != nil {
		id = rec.ActivationID
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.byID[id]
	if s == nil {
		d.strays++
		return
	}
	if isResult {
		s.Results++
		if s.Result.IsZero() {
			s.Result = now
		}
		if rec != nil {
			s.Status = rec.Response.StatusCode
			for _, kv := range rec.Annotations {
				if kv.Key == "seuss.path" {
					_ = json.Unmarshal(kv.Value, &s.Path)
				}
			}
			var r fnResult
			if json.Unmarshal(rec.Response.Result, &r) == nil {
				s.FnUS = r.FnUS
			}
		}
	}
	if isCompletion {
		s.Completions++
		if s.Completion.IsZero() {
			s.Completion = now
		}
	}
	if s.Results >= 1 && s.Completions >= 1 && s.done != nil {
		close(s.done)
		s.done = nil
		d.acked.Add(1)
	}
}

// send produces one blocking ActivationMessage for a and registers s under its id.
func (d *driver) send(ctx context.Context, s *sample, a action, params json.RawMessage) error {
	s.ID = newActivationID()
	s.Action = a.Name
	s.Status = -1
	s.done = make(chan struct{})
	rev := a.Rev
	now := time.Now()
	m := &activation.ActivationMessage{
		TransID:  activation.NewTransactionID(newActivationID(), now.UnixMilli()),
		Action:   activation.FullyQualifiedEntityName{Path: guestNamespace, Name: a.Name, Version: "0.0.1"},
		Revision: &rev,
		User: activation.Identity{
			Subject:   guestNamespace,
			Namespace: activation.Namespace{Name: guestNamespace, UUID: guestUUID},
			AuthKey:   activation.AuthKey{APIKey: guestUUID + ":" + guestKey},
			Rights:    []string{"READ", "PUT", "DELETE", "ACTIVATE"},
			Limits:    json.RawMessage(`{}`),
		},
		ActivationID:        s.ID,
		RootControllerIndex: activation.ControllerInstanceID{AsString: d.sut.Controller, InstanceType: "controller"},
		Blocking:            true,
		Content:             params,
		InitArgs:            []string{},
		LockedArgs:          map[string]string{},
	}
	b, err := activation.Marshal(m)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.byID[s.ID] = s
	d.mu.Unlock()
	s.Sent = time.Now()
	err = d.prod.Send(ctx, d.topic, b)
	now = time.Now()
	d.mu.Lock()
	s.InKafka = now
	d.mu.Unlock()
	return err
}

// wait blocks until s has both acks or ctx is done.
func (d *driver) wait(ctx context.Context, s *sample) error {
	d.mu.Lock()
	ch := s.done
	d.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// loadSpec is how a workload is offered.
type loadSpec struct {
	Parallel int     // closed loop: this many outstanding activations
	Rate     float64 // open loop: activations per second; < 0 means all at once (burst)
	Timeout  time.Duration
	Progress func(acked, total int)
	// Linger is how long acks are still read after the last one, to catch duplicates;
	// 0 means 300 ms.
	Linger time.Duration
	// Before, when set, is called before activation i is sent (closed loop).
	Before func(i int)
}

// runLoad sends one activation per entry of idx (an index into actions) and waits for
// their acks. It returns the samples in send order.
func (d *driver) runLoad(ctx context.Context, actions []action, idx []int, params json.RawMessage, ls loadSpec) ([]*sample, error) {
	samples := make([]*sample, len(idx))
	for i := range samples {
		samples[i] = &sample{Seq: i}
	}
	rctx, rcancel := context.WithCancel(ctx)
	readerDone := make(chan struct{})
	go func() { defer close(readerDone); d.readAcks(rctx) }()
	defer func() { rcancel(); <-readerDone }()

	tctx, cancel := context.WithTimeout(ctx, ls.Timeout)
	defer cancel()

	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		if ls.Progress == nil {
			return
		}
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopProgress:
				ls.Progress(int(d.acked.Load()), len(idx))
				return
			case <-t.C:
				ls.Progress(int(d.acked.Load()), len(idx))
			}
		}
	}()
	defer func() { close(stopProgress); <-progressDone }()

	var firstErr error
	var errMu sync.Mutex
	fail := func(err error) {
		errMu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		errMu.Unlock()
	}
	var wg sync.WaitGroup
	if ls.Rate == 0 {
		// Closed loop: Parallel workers, each with one activation outstanding.
		var next atomic.Int64
		for w := 0; w < max(ls.Parallel, 1); w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1) - 1)
					if i >= len(idx) || tctx.Err() != nil {
						return
					}
					s := samples[i]
					if ls.Before != nil {
						ls.Before(i)
					}
					if err := d.send(tctx, s, actions[idx[i]], params); err != nil {
						fail(fmt.Errorf("send activation %d: %w", i, err))
						return
					}
					if err := d.wait(tctx, s); err != nil {
						fail(fmt.Errorf("activation %d (%s) not acked: %w", i, s.ID, err))
						return
					}
				}
			}()
		}
		wg.Wait()
	} else {
		// Open loop: send on schedule whatever the acks do; then wait for all acks.
		start := time.Now()
		for i := range idx {
			if ls.Rate > 0 {
				at := start.Add(time.Duration(float64(i) / ls.Rate * float64(time.Second)))
				if dl := time.Until(at); dl > 0 {
					select {
					case <-time.After(dl):
					case <-tctx.Done():
					}
				}
			}
			if tctx.Err() != nil {
				break
			}
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				if err := d.send(tctx, samples[i], actions[idx[i]], params); err != nil {
					fail(fmt.Errorf("send activation %d: %w", i, err))
				}
			}(i)
		}
		wg.Wait()
		for _, s := range samples {
			if s.ID == "" {
				continue
			}
			if err := d.wait(tctx, s); err != nil {
				fail(fmt.Errorf("activation %d (%s) not acked: %w", s.Seq, s.ID, err))
				break
			}
		}
	}
	// Linger briefly for duplicate acks, so that "exactly once" is checked, not hoped.
	linger := ls.Linger
	if linger <= 0 {
		linger = 300 * time.Millisecond
	}
	select {
	case <-time.After(linger):
	case <-ctx.Done():
	}
	if firstErr == nil && tctx.Err() != nil {
		firstErr = errors.New("run timed out")
	}
	d.mu.Lock()
	for _, s := range samples {
		if d.sut.Exec != nil && s.ID != "" {
			if r, ok := d.sut.Exec.get(s.ID); ok {
				s.ExecTime, s.RunTime = r.Exec, r.Run
				if s.Path == "" {
					s.Path = string(r.Path)
				}
			}
		}
	}
	d.mu.Unlock()
	return samples, firstErr
}

func newActivationID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
