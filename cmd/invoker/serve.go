package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/kafka"
	"github.com/seuss-go/seuss/metrics"
	"github.com/seuss-go/seuss/runtimes/process"
	"github.com/seuss-go/seuss/snapshots"
	"github.com/seuss-go/seuss/store"
	"github.com/seuss-go/seuss/store/bbolt"
	"github.com/seuss-go/seuss/store/couchbase"
	"github.com/seuss-go/seuss/store/couchdb"
)

func init() {
	register("serve", "OpenWhisk invoker: consume invoker{N} from Kafka, run, record, ack (drop-in for the stock invoker)", serveMain)
}

// serveEnv lists the environment variables serve reads, OpenWhisk's names where the
// stock invoker has one (openwhisk-protocol.md §7). A flag given on the command line
// wins over the environment.
var serveEnv = []struct{ flag, env, help string }{
	{"id", "INVOKER_ID", "instance N: consume invoker{N} (the stock invoker takes --id only)"},
	{"uniqueName", "INVOKER_UNIQUE_NAME", "unique name written in pings and acks (ids are not assigned through ZooKeeper: give --id)"},
	{"displayedName", "INVOKER_DISPLAYED_NAME", "display name written in pings and acks"},
	{"kafka", "KAFKA_HOSTS", "Kafka brokers host:port[,host:port]"},
	{"user-memory", "CONFIG_whisk_containerPool_userMemory", "memory shared by running activations, MB or a ByteSize (\"1024m\", \"2 GB\")"},
	{"port", "PORT", "HTTP port of /ping, /enable, /disable, /isEnabled, /metrics"},
	{"events", "CONFIG_whisk_userEvents_enabled", "publish user events on the events topic"},
	{"username", "CONFIG_whisk_invoker_username", "basic-auth user of /enable, /disable, /isEnabled (empty: no auth)"},
	{"password", "CONFIG_whisk_invoker_password", "basic-auth password"},
	{"store", "SEUSS_STORE", "bbolt | couchdb | couchbase (default: couchdb when CONFIG_whisk_couchdb_host is set, else bbolt)"},
	{"bbolt-path", "SEUSS_BBOLT_PATH", "bbolt store file"},
	{"spool-dir", "SEUSS_SPOOL_DIR", "where activation records wait while CouchDB or Couchbase is unreachable (bounded, on disk)"},
	{"executor", "SEUSS_EXECUTOR", "uc (unikernel contexts resumed from snapshots; needs /dev/kvm and `make rootfs`) or process (host processes); default uc where it can run, else process"},
	{"roots-dir", "SEUSS_ROOTS_DIR", "uc: the runtime roots built by `make rootfs`"},
	{"snapshot-dir", "SEUSS_SNAPSHOT_DIR", "uc: the snapshot store"},
	{"drain-timeout", "SEUSS_DRAIN_TIMEOUT", "how long shutdown waits for running activations"},
	{"kafka-session-timeout", "SEUSS_KAFKA_SESSION_TIMEOUT", "consumer group session timeout (OpenWhisk: 30s; kfake accepts 6s and more)"},
	{"log-level", "SEUSS_LOG_LEVEL", "debug | info | warn | error"},
}

func serveMain(ctx context.Context, args []string) (int, error) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	id := fs.Int("id", 0, "")
	uniqueName := fs.String("uniqueName", "", "")
	displayedName := fs.String("displayedName", "", "")
	brokers := fs.String("kafka", "localhost:9092", "")
	userMemory := fs.String("user-memory", "2048", "")
	port := fs.Int("port", 8085, "")
	events := fs.Bool("events", false, "")
	username := fs.String("username", "", "")
	password := fs.String("password", "", "")
	storeKind := fs.String("store", "", "")
	bboltPath := fs.String("bbolt-path", filepath.Join(".seuss", "store.db"), "")
	spoolDir := fs.String("spool-dir", filepath.Join(".seuss", "spool"), "")
	executor := fs.String("executor", "", "")
	rootsDir := fs.String("roots-dir", filepath.Join(".seuss", "roots"), "")
	snapshotDir := fs.String("snapshot-dir", filepath.Join(".seuss", "snapshots"), "")
	drain := fs.Duration("drain-timeout", 2*time.Minute, "")
	session := fs.Duration("kafka-session-timeout", 30*time.Second, "")
	logLevel := fs.String("log-level", "info", "")
	for _, e := range serveEnv {
		f := fs.Lookup(e.flag)
		f.Usage = e.help + " (env " + e.env + ")"
		if v, ok := os.LookupEnv(e.env); ok && v != "" {
			if err := f.Value.Set(v); err != nil {
				return 2, fmt.Errorf("%w: %s=%q: %v", errUsage, e.env, v, err)
			}
			f.DefValue = v
		}
	}
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: invoker serve --id N --kafka HOST:PORT [--store bbolt|couchdb|couchbase] [flags]")
		fmt.Fprintln(fs.Output(), "CouchDB is configured as OpenWhisk's: CONFIG_whisk_couchdb_{protocol,host,port,username,password},")
		fmt.Fprintln(fs.Output(), "CONFIG_whisk_couchdb_databases_{WhiskEntity,WhiskActivation}, DB_PREFIX.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0, nil
		}
		return 2, errUsage
	}
	if fs.NArg() > 0 {
		return 2, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	*storeKind = storeKindDefault(*storeKind)
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return 2, fmt.Errorf("%w: --log-level: %v", errUsage, err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	memMB, err := parseMemoryMB(*userMemory)
	if err != nil {
		return 2, fmt.Errorf("%w: --user-memory: %v", errUsage, err)
	}

	st, err := openStore(ctx, *storeKind, *bboltPath)
	if err != nil {
		return 1, err
	}
	defer st.Close()
	if *storeKind != "bbolt" {
		// A network store that goes away must delay records, not lose them.
		sp, err := store.NewSpool(st, store.SpoolOptions{Dir: *spoolDir, Logger: log})
		if err != nil {
			return 1, err
		}
		go func() { _ = sp.Run(ctx) }()
		st = sp
	}

	if *executor == "" {
		*executor = "uc"
		if err := snapshots.Available(*rootsDir); err != nil {
			*executor = "process"
			log.Warn("unikernel executor not available, running actions in host processes", "why", err)
		}
	}
	ex, err := newExecutor(*executor, memMB, *rootsDir, *snapshotDir, log)
	if err != nil {
		return 1, err
	}
	defer ex.Close()

	m := metrics.New()
	if pe, ok := ex.(*process.Executor); ok {
		m.PoolGauges(func() int { return pe.Stats().Live }, func() int { return pe.Stats().Idle }, func() int { return pe.Stats().ReservedMB })
	}
	// An executor with its own metrics (the unikernel executor: snapshots cached,
	// shared and private memory) exports them through the same registry.
	if c, ok := ex.(prometheus.Collector); ok {
		m.Registry().MustRegister(c)
	}
	inv, err := kafka.NewInvoker(kafka.InvokerConfig{
		Brokers:        kafka.SplitBrokers(*brokers),
		ID:             *id,
		UserMemoryMB:   memMB,
		UniqueName:     *uniqueName,
		DisplayedName:  *displayedName,
		Store:          st,
		Executor:       ex,
		Events:         *events,
		Observer:       m,
		QueueDepth:     m.QueueDepth,
		Logger:         log,
		DrainTimeout:   *drain,
		SessionTimeout: *session,
	})
	if err != nil {
		return 1, err
	}

	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	mux.Handle("/", inv.Service.ControlHandler(*username, *password))
	ln, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(*port)))
	if err != nil {
		return 1, fmt.Errorf("listen on port %d: %w", *port, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", "err", err)
		}
	}()
	log.Info("invoker serving", "id", *id, "kafka", *brokers, "topic", kafka.InvokerTopic(*id),
		"userMemoryMB", memMB, "store", *storeKind, "executor", *executor, "http", ln.Addr().String())

	err = inv.Run(ctx)
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if err != nil {
		return 1, err
	}
	log.Info("invoker stopped")
	return 0, nil
}

// parseMemoryMB reads a plain number of MB or an OpenWhisk ByteSize ("1024m", "2 GB").
func parseMemoryMB(s string) (int, error) {
	if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
		if n <= 0 {
			return 0, fmt.Errorf("%q: must be positive", s)
		}
		return n, nil
	}
	b, ok := activation.ParseByteSize(s)
	if !ok || b < 1<<20 {
		return 0, fmt.Errorf("%q: want MB or a size such as 1024m", s)
	}
	return int(b >> 20), nil
}

func storeKindDefault(kind string) string {
	if kind == "" {
		kind = "bbolt"
		if os.Getenv("CONFIG_whisk_couchdb_host") != "" {
			kind = "couchdb"
		}
	}
	return kind
}

func openStore(ctx context.Context, kind, bboltPath string) (store.Store, error) {
	var st store.Store
	switch kind {
	case "bbolt":
		if err := os.MkdirAll(filepath.Dir(bboltPath), 0o755); err != nil {
			return nil, err
		}
		b, err := bbolt.Open(bboltPath)
		if err != nil {
			return nil, err
		}
		st = b
	case "couchdb":
		cfg, err := couchdb.ConfigFromEnv(os.Getenv)
		if err != nil {
			return nil, err
		}
		c, err := couchdb.Open(ctx, cfg)
		if err != nil {
			return nil, err
		}
		st = c
	case "couchbase":
		c, err := couchbase.Open(ctx, couchbase.ConfigFromEnv(os.Getenv))
		if err != nil {
			return nil, err
		}
		st = c
	default:
		return nil, fmt.Errorf("%w: --store %q: want bbolt, couchdb or couchbase", errUsage, kind)
	}
	return st, nil
}

// executorCloser is an activation.Executor that holds resources.
type executorCloser interface {
	activation.Executor
	Close() error
}

func newExecutor(kind string, memMB int, rootsDir, snapshotDir string, log *slog.Logger) (executorCloser, error) {
	var env []string
	if h := apiHost(); h != "" {
		env = append(env, "__OW_API_HOST="+h)
	}
	switch kind {
	case "process":
		e, err := process.New(process.Config{MemoryBudgetMB: memMB, Env: env})
		if err != nil {
			return nil, err
		}
		log.Info("process executor", "memory limits", e.MemoryLimitMechanism())
		return e, nil
	case "uc":
		return snapshots.New(snapshots.Config{RootsDir: rootsDir, SnapshotDir: snapshotDir, MemoryBudgetMB: memMB, Env: env, Log: log})
	default:
		return nil, fmt.Errorf("%w: --executor %q: want process or uc", errUsage, kind)
	}
}

// apiHost is __OW_API_HOST from WHISK_API_HOST_PROTO/NAME/PORT, as the stock invoker
// sets it on every container (default proto https, port 443).
func apiHost() string {
	name := os.Getenv("WHISK_API_HOST_NAME")
	if name == "" {
		return ""
	}
	proto := os.Getenv("WHISK_API_HOST_PROTO")
	if proto == "" {
		proto = "https"
	}
	port := os.Getenv("WHISK_API_HOST_PORT")
	if port == "" {
		port = "443"
	}
	return proto + "://" + name + ":" + port
}
