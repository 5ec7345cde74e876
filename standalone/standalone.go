// Package standalone wires seuss's standalone mode: an embedded Kafka-protocol broker,
// the bbolt store in a data directory, the OpenWhisk REST API (package controller) and
// the invoker, in one process. `invoker standalone` (and so `make run`) runs it; the
// load generator starts it in-process.
//
// The controller and the invoker talk only through the broker, with OpenWhisk's
// messages on invoker0 and completed0, so standalone exercises the invoker exactly as an
// OpenWhisk deployment does. The package owns no logic of its own beyond wiring and
// start-up order.
package standalone

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/controller"
	"github.com/seuss-go/seuss/kafka"
	"github.com/seuss-go/seuss/runtimes"
	"github.com/seuss-go/seuss/runtimes/process"
	"github.com/seuss-go/seuss/snapshots"
	"github.com/seuss-go/seuss/store/bbolt"
)

// Defaults of the command line (OpenWhisk standalone's API port; Kafka's port).
const (
	DefaultAPIListen   = "127.0.0.1:3233"
	DefaultKafkaListen = "127.0.0.1:9092"
)

// Executor kinds.
const (
	ExecutorProcess = "process" // host processes (runtimes/process), the baseline
	ExecutorUC      = "uc"      // unikernel contexts resumed from snapshots
)

// Config configures a stack.
type Config struct {
	// DataDir holds the store (seuss.db) and, with the UC executor, the snapshots.
	// Created if missing. Required.
	DataDir string
	// APIListen is the REST API's address; default DefaultAPIListen. Port 0 picks one.
	APIListen string
	// KafkaListen is the embedded broker's address; default DefaultKafkaListen. Port 0
	// picks one.
	KafkaListen string
	// ExecutorKind is ExecutorUC or ExecutorProcess. Default: ExecutorUC where /dev/kvm
	// works and both runtime roots are built (DataDir/roots, else .seuss/roots), else
	// ExecutorProcess (and the log says why).
	ExecutorKind string
	// Executor, when set, is used instead of building one from ExecutorKind (the load
	// generator and tests bring their own). The stack does not close it.
	Executor activation.Executor
	// UserMemoryMB is the invoker's user memory; default 2048.
	UserMemoryMB int
	// BlockingTimeout caps blocking invokes; default 60 s, as OpenWhisk.
	BlockingTimeout time.Duration
	// Logger logs; default slog.Default().
	Logger *slog.Logger
	// Progress, when set with the unikernel executor, makes Start build (first start)
	// or load (later starts) every kind's runtime snapshot before it returns, drawing a
	// progress bar on it. When nil they are prepared in the background.
	Progress io.Writer
}

// Stack is a running standalone deployment.
type Stack struct {
	// APIHost is the REST API's base, e.g. "http://127.0.0.1:3233": wsk's --apihost and
	// openwhisk-client-go's Config.Host.
	APIHost string
	// KafkaAddr is the broker's host:port.
	KafkaAddr string
	// DataDir is the data directory in use.
	DataDir string
	// ExecutorKind is the executor in use (the default resolved).
	ExecutorKind string
	// Controller is the REST API server.
	Controller *controller.Server
	// Store is the artifact store.
	Store *bbolt.Store

	cancel  context.CancelFunc
	g       *errgroup.Group
	closers []func()
}

// Start brings the stack up and returns once the REST API answers and the invoker
// consumes invoker0. It runs until ctx is done or Close is called.
func Start(ctx context.Context, cfg Config) (st *Stack, err error) {
	if cfg.DataDir == "" {
		return nil, errors.New("standalone: a data directory is required")
	}
	if cfg.APIListen == "" {
		cfg.APIListen = DefaultAPIListen
	}
	if cfg.KafkaListen == "" {
		cfg.KafkaListen = DefaultKafkaListen
	}
	if cfg.UserMemoryMB <= 0 {
		cfg.UserMemoryMB = 2048
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ExecutorKind == "" {
		var why string
		cfg.ExecutorKind, why = defaultExecutor(cfg.DataDir)
		if why != "" {
			cfg.Logger.Warn("standalone: unikernel executor not available, running actions in host processes", "why", why)
		}
	}
	log := cfg.Logger
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("standalone: data dir: %w", err)
	}
	dataDir, _ := filepath.Abs(cfg.DataDir)

	ctx, cancel := context.WithCancel(ctx)
	g, gctx := errgroup.WithContext(ctx)
	s := &Stack{DataDir: dataDir, ExecutorKind: cfg.ExecutorKind, cancel: cancel, g: g}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()

	// 1. The broker, with the topics of one controller (0) and one invoker (0).
	// It outlives the other components' context: the invoker drains (acks and commits)
	// after the context ends, so the broker is closed last, by release.
	bctx, bcancel := context.WithCancel(context.WithoutCancel(ctx))
	s.closers = append(s.closers, bcancel)
	broker, err := kafka.StartBroker(bctx, cfg.KafkaListen,
		kafka.InvokerTopic(0), kafka.CompletedTopic("0"), kafka.HealthTopic)
	if err != nil {
		return s, fmt.Errorf("standalone: %w", err)
	}
	s.closers = append(s.closers, broker.Close)
	s.KafkaAddr = broker.Addr()
	brokers := []string{s.KafkaAddr}

	// 2. The store.
	db, err := bbolt.Open(filepath.Join(dataDir, "seuss.db"))
	if err != nil {
		return s, fmt.Errorf("standalone: %w", err)
	}
	s.Store = db
	s.closers = append(s.closers, func() { db.Close() })

	// 3. The invoker: executor, lifecycle, Kafka consumer, acks and health pings.
	exec := cfg.Executor
	if exec == nil {
		e, closeExec, err := newExecutor(ctx, cfg, dataDir)
		if err != nil {
			return s, err
		}
		exec = e
		s.closers = append(s.closers, closeExec)
	}
	if err := startInvoker(gctx, g, cfg, brokers, db, exec); err != nil {
		return s, err
	}

	// 4. The controller: its Kafka client, the ack reader, the REST API.
	bus, err := controller.DialKafka(gctx, brokers, "0", kafka.InvokerTopic(0))
	if err != nil {
		return s, fmt.Errorf("standalone: %w", err)
	}
	s.closers = append(s.closers, bus.Close)
	srv, err := controller.New(controller.Config{
		Store:           db,
		Bus:             bus,
		InvokerTopic:    kafka.InvokerTopic(0),
		ControllerID:    "0",
		BlockingTimeout: cfg.BlockingTimeout,
		Logf:            func(f string, a ...any) { log.Warn(fmt.Sprintf(f, a...)) },
	})
	if err != nil {
		return s, err
	}
	s.Controller = srv
	g.Go(func() error {
		return bus.Run(gctx, srv, func(f string, a ...any) { log.Warn(fmt.Sprintf(f, a...)) })
	})

	ln, err := net.Listen("tcp", cfg.APIListen)
	if err != nil {
		return s, fmt.Errorf("standalone: REST API: %w", err)
	}
	s.APIHost = "http://" + ln.Addr().String()
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	g.Go(func() error {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("standalone: REST API: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs.Shutdown(sctx)
		return nil
	})
	return s, nil
}

// Wait blocks until the stack stops (its context is done, or a component failed) and
// releases everything. It returns the first component's error.
func (s *Stack) Wait() error {
	err := s.g.Wait()
	s.release()
	return err
}

// Close stops the stack and waits for it.
func (s *Stack) Close() error {
	s.cancel()
	return s.Wait()
}

func (s *Stack) release() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}

// rootsDir is where the runtime roots are: $SEUSS_ROOTS_DIR (as for invoker serve; the
// container image sets it), else DATA_DIR/roots (what `make rootfs` builds for `make run`),
// else .seuss/roots.
func rootsDir(dataDir string) string {
	if d := os.Getenv("SEUSS_ROOTS_DIR"); d != "" {
		return d
	}
	if d := filepath.Join(dataDir, "roots"); dirExists(d) {
		return d
	}
	return filepath.Join(".seuss", "roots")
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// defaultExecutor is uc where it can run (KVM and both roots), else process and why.
func defaultExecutor(dataDir string) (string, string) {
	if err := snapshots.Available(rootsDir(dataDir)); err != nil {
		return ExecutorProcess, err.Error()
	}
	return ExecutorUC, ""
}

// newExecutor builds the executor named by cfg.ExecutorKind.
func newExecutor(ctx context.Context, cfg Config, dataDir string) (activation.Executor, func(), error) {
	switch cfg.ExecutorKind {
	case ExecutorProcess:
		e, err := process.New(process.Config{MemoryBudgetMB: cfg.UserMemoryMB})
		if err != nil {
			return nil, nil, fmt.Errorf("standalone: process executor: %w", err)
		}
		cfg.Logger.Info("process executor", "memory limits", e.MemoryLimitMechanism())
		return e, func() { e.Close() }, nil
	case ExecutorUC:
		e, err := snapshots.New(snapshots.Config{RootsDir: rootsDir(dataDir), SnapshotDir: filepath.Join(dataDir, "snapshots"), MemoryBudgetMB: cfg.UserMemoryMB, Log: cfg.Logger})
		if err != nil {
			return nil, nil, fmt.Errorf("standalone: unikernel executor: %w", err)
		}
		// Runtime snapshots ahead of the first activations (which would otherwise boot).
		if cfg.Progress != nil {
			if err := prepareRuntimes(ctx, e, cfg.Progress); err != nil {
				e.Close()
				return nil, nil, err
			}
			return e, func() { e.Close() }, nil
		}
		for _, k := range runtimes.Kinds() {
			go func() {
				if err := e.Prepare(context.Background(), k.Name); err != nil {
					cfg.Logger.Warn("standalone: runtime snapshot not prepared", "kind", k.Name, "err", err)
				}
			}()
		}
		return e, func() { e.Close() }, nil
	default:
		return nil, nil, fmt.Errorf("standalone: unknown executor %q (want %s or %s)", cfg.ExecutorKind, ExecutorUC, ExecutorProcess)
	}
}

// prepareRuntimes builds or loads every kind's runtime snapshot in turn, drawing one
// progress-bar line per kind on w (a line each, so that it reads the same in a terminal
// and in a log). A first start boots each runtime and captures it; later starts find the
// snapshots in the data directory and take a millisecond.
func prepareRuntimes(ctx context.Context, e *snapshots.Executor, w io.Writer) error {
	kinds := runtimes.Kinds()
	const width = 24
	for i, k := range kinds {
		start := time.Now()
		if err := e.Prepare(ctx, k.Name); err != nil {
			fmt.Fprintf(w, "runtime snapshots %s %d/%d %s: failed: %v\n", bar(i, len(kinds), width), i, len(kinds), k.Name, err)
			return fmt.Errorf("standalone: runtime snapshot of %s: %w", k.Name, err)
		}
		fmt.Fprintf(w, "runtime snapshots %s %d/%d %s ready in %s\n", bar(i+1, len(kinds), width), i+1, len(kinds), k.Name,
			time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// bar draws [####----] for done of total in width cells.
func bar(done, total, width int) string {
	n := 0
	if total > 0 {
		n = done * width / total
	}
	b := make([]byte, 0, width+2)
	b = append(b, '[')
	for i := 0; i < width; i++ {
		if i < n {
			b = append(b, '#')
		} else {
			b = append(b, '-')
		}
	}
	return string(append(b, ']'))
}
