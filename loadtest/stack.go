package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/kafka"
	"github.com/seuss-go/seuss/store"
	"github.com/seuss-go/seuss/store/bbolt"
	"github.com/seuss-go/seuss/store/couchdb"
)

// sut is the system under test: where to send activations and where the actions live.
// In-process it is a broker, a bbolt store and an invoker this process started (the
// wiring is package kafka's NewInvoker, as `invoker serve` uses it); external, it is
// someone else's broker and store.
type sut struct {
	Brokers    []string
	Store      store.Store
	InvokerID  int
	Controller string // C of completed{C}
	// In-process only (nil for an external invoker): what the invoker itself measured.
	Exec    *timedExecutor
	Obs     *pathObserver
	Records *timedStore

	close func() error
}

// Close stops what the sut started.
// executor is the in-process executor under test, nil against an external invoker.
func (s *sut) executor() activation.Executor {
	if s.Exec == nil {
		return nil
	}
	return s.Exec.inner
}

func (s *sut) Close() error {
	if s.close == nil {
		return nil
	}
	err := s.close()
	s.close = nil
	return err
}

type stackOptions struct {
	UserMemoryMB int
	// ExecBudgetMB is the executor's memory budget; 0 means UserMemoryMB.
	ExecBudgetMB int
	// RootsDir and CacheBytes are passed to the executor (execOptions).
	RootsDir   string
	CacheBytes int64
	Controller string
	Logger     *slog.Logger
}

// startInProcess starts broker, store and invoker 0 with t's executor, in a temporary
// directory removed on Close.
func startInProcess(ctx context.Context, t *target, o stackOptions) (s *sut, err error) {
	dir, err := os.MkdirTemp("", "seuss-loadtest-")
	if err != nil {
		return nil, err
	}
	var closers []func() error
	closeAll := func() error {
		var first error
		for i := len(closers) - 1; i >= 0; i-- {
			if err := closers[i](); err != nil && first == nil {
				first = err
			}
		}
		os.RemoveAll(dir)
		return first
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()

	// The broker outlives the invoker: the invoker drains (acks, commits) after its
	// context ends, so the broker is closed last.
	bctx, bcancel := context.WithCancel(context.WithoutCancel(ctx))
	broker, err := kafka.StartBroker(bctx, "127.0.0.1:0",
		kafka.InvokerTopic(0), kafka.CompletedTopic(o.Controller), kafka.HealthTopic)
	if err != nil {
		bcancel()
		return nil, err
	}
	closers = append(closers, func() error { broker.Close(); bcancel(); return nil })

	db, err := bbolt.Open(filepath.Join(dir, "seuss.db"))
	if err != nil {
		return nil, err
	}
	closers = append(closers, db.Close)

	budget := o.ExecBudgetMB
	if budget <= 0 {
		budget = o.UserMemoryMB
	}
	exec, closeExec, err := t.New(ctx, execOptions{MemoryBudgetMB: budget, TempDir: dir, RootsDir: o.RootsDir, CacheBytes: o.CacheBytes, Logger: o.Logger})
	if err != nil {
		return nil, fmt.Errorf("executor %s: %w", t.Name, err)
	}
	closers = append(closers, closeExec)
	timed := &timedExecutor{inner: exec, runs: map[string]execRun{}}
	obs := newPathObserver()
	records := &timedStore{Store: db}

	inv, err := kafka.NewInvoker(kafka.InvokerConfig{
		Brokers:      []string{broker.Addr()},
		ID:           0,
		UserMemoryMB: o.UserMemoryMB,
		Store:        records,
		Executor:     timed,
		Observer:     obs,
		Logger:       o.Logger,
		DrainTimeout: 10 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	ictx, icancel := context.WithCancel(context.WithoutCancel(ctx))
	g, gctx := errgroup.WithContext(ictx)
	g.Go(func() error { return inv.Run(gctx) })
	closers = append(closers, func() error { icancel(); return g.Wait() })

	return &sut{
		Brokers:    []string{broker.Addr()},
		Store:      db,
		InvokerID:  0,
		Controller: o.Controller,
		Exec:       timed,
		Obs:        obs,
		Records:    records,
		close:      closeAll,
	}, nil
}

// connectExternal uses a running invoker: brokers "h:p,h:p" and a store given as
// "couchdb" (configured from CONFIG_whisk_couchdb_* as `invoker serve` is) or
// "bbolt:PATH" (the invoker must not hold the file open: bbolt locks it).
func connectExternal(ctx context.Context, brokers, storeSpec string, invokerID int, controller string) (*sut, error) {
	bs := kafka.SplitBrokers(brokers)
	if err := kafka.EnsureTopics(ctx, bs, kafka.InvokerTopic(invokerID), kafka.CompletedTopic(controller)); err != nil {
		return nil, err
	}
	var st store.Store
	switch {
	case storeSpec == "couchdb":
		cfg, err := couchdb.ConfigFromEnv(os.Getenv)
		if err != nil {
			return nil, err
		}
		c, err := couchdb.Open(ctx, cfg)
		if err != nil {
			return nil, err
		}
		st = c
	case strings.HasPrefix(storeSpec, "bbolt:"):
		b, err := bbolt.Open(strings.TrimPrefix(storeSpec, "bbolt:"))
		if err != nil {
			return nil, err
		}
		st = b
	case storeSpec == "":
		return nil, errors.New("--kafka needs --store couchdb|bbolt:PATH: the actions must be created where the invoker reads them")
	default:
		return nil, fmt.Errorf("--store %q: want couchdb or bbolt:PATH", storeSpec)
	}
	return &sut{Brokers: bs, Store: st, InvokerID: invokerID, Controller: controller, close: st.Close}, nil
}

// execRun is what the invoker's executor saw of one activation.
type execRun struct {
	Path activation.Path
	Exec time.Duration // Executor.Run: placement, init when cold, run
	Run  time.Duration // the run request alone (Outcome.RunStart..RunEnd)
}

// timedExecutor wraps the target's executor to learn, per activation, the path it took
// and how long the executor spent. It adds two clock reads and a map insert.
type timedExecutor struct {
	inner activation.Executor
	mu    sync.Mutex
	runs  map[string]execRun
}

var _ activation.Executor = (*timedExecutor)(nil)

// Run implements activation.Executor.
func (t *timedExecutor) Run(ctx context.Context, job *activation.Job) (*activation.Outcome, error) {
	start := time.Now()
	out, err := t.inner.Run(ctx, job)
	d := time.Since(start)
	r := execRun{Exec: d}
	if out != nil {
		r.Path = out.Path
		if !out.RunStart.IsZero() && !out.RunEnd.IsZero() {
			r.Run = out.RunEnd.Sub(out.RunStart)
		}
	}
	t.mu.Lock()
	t.runs[job.Run.ActivationID] = r
	t.mu.Unlock()
	return out, err
}

func (t *timedExecutor) get(id string) (execRun, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.runs[id]
	return r, ok
}

// DropIdle ends the inner executor's idle instances, when it can, after its pending
// snapshot captures are stored.
func (t *timedExecutor) DropIdle() int {
	if w, ok := t.inner.(snapshotWaiter); ok {
		w.WaitSnapshots()
	}
	if d, ok := t.inner.(dropper); ok {
		return d.DropIdle()
	}
	return 0
}

// timedStore is the invoker's view of the store, timing each record write (the lifecycle
// writes the record between the result ack and the completion ack).
type timedStore struct {
	activation.Store
	mu     sync.Mutex
	writes []time.Duration
}

// PutActivation implements activation.Store.
func (t *timedStore) PutActivation(ctx context.Context, a *activation.WhiskActivation) error {
	start := time.Now()
	err := t.Store.PutActivation(ctx, a)
	d := time.Since(start)
	t.mu.Lock()
	t.writes = append(t.writes, d)
	t.mu.Unlock()
	return err
}

// take returns and clears the write times so far.
func (t *timedStore) take() []time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	w := t.writes
	t.writes = nil
	return w
}

// pathObserver implements activation.Observer: per path, the invoker's own latency from
// receiving the message to its last ack.
type pathObserver struct {
	mu        sync.Mutex
	latencies map[activation.Path][]time.Duration
	malformed int
	redeliver int
}

var _ activation.Observer = (*pathObserver)(nil)

func newPathObserver() *pathObserver {
	return &pathObserver{latencies: map[activation.Path][]time.Duration{}}
}

// Malformed implements activation.Observer.
func (o *pathObserver) Malformed(error) { o.mu.Lock(); o.malformed++; o.mu.Unlock() }

// Redelivered implements activation.Observer.
func (o *pathObserver) Redelivered() { o.mu.Lock(); o.redeliver++; o.mu.Unlock() }

// Completed implements activation.Observer.
func (o *pathObserver) Completed(p activation.Path, _ int, latency time.Duration) {
	o.mu.Lock()
	o.latencies[p] = append(o.latencies[p], latency)
	o.mu.Unlock()
}

// take returns and clears the latencies seen so far.
func (o *pathObserver) take() map[activation.Path][]time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	l := o.latencies
	o.latencies = map[activation.Path][]time.Duration{}
	return l
}
