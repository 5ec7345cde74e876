// Command loadtest is seuss's load generator: it drives an invoker through Kafka as
// SEUSS's load generator did, writing real ActivationMessages into invoker{N} (after
// creating the actions in the store) and reading the acks on completed{C}.
//
// By default it starts the system under test itself, in-process: the embedded broker,
// a bbolt store in a temporary directory and invoker 0 with the chosen executor (the
// wiring is package kafka's NewInvoker). With --kafka and --store it drives an external
// invoker instead.
//
//	loadtest run --scenario new-functions|repeat|zipf|burst --activations N
//	             [--parallel P | --rate R] [--spin MS] [--kind K] [--target T]
//	             [--compare T1,T2] [--json] [--csv FILE] [--plot FILE.png|.svg]
//	loadtest density --kind K --budget SIZE [--json]
//	loadtest deploy --kind K --n N [--json]
//
// Targets (executors) are registered by name: process (executors.go), seuss and boot
// (the UC executor with snapshots on and off, snapshots.go). Measurements: throughput and
// latency per path (run), instances per GiB (density), per-path deployment time inside
// the invoker (deploy), CPU per activation, and the invoker's overhead on the H path.
//
// It owns only the load generator: scenarios, measurement, reports and plots. It must
// not reimplement the invoker's wiring (packages kafka, activation, standalone) nor
// know how executors work inside.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = map[string]command{}

func init() {
	commands["run"] = command{"run a workload (scenario) against one or more targets", runMain}
	commands["density"] = command{"how many idle instances fit per GiB (processes; function snapshots)", densityMain}
	commands["deploy"] = command{"per-path deployment latency inside the invoker (B, C, W, H)", deployMain}
}

// errUsage marks a command-line mistake: exit status 2.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stderr)
		if len(args) == 0 {
			return fmt.Errorf("%w: a command is required", errUsage)
		}
		return nil
	}
	c, ok := commands[args[0]]
	if !ok {
		usage(stderr)
		return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
	}
	return c.run(ctx, args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: loadtest <command> [flags]   (loadtest <command> -h for its flags)")
	var names []string
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(w, "targets: %s\n", strings.Join(targetNames(), ", "))
}

// commonFlags are the flags every command shares: where the system under test is.
type commonFlags struct {
	kind       string
	kafka      string
	store      string
	invoker    int
	controller string
	memoryMB   int
	userMemMB  int
	roots      string
	verbose    bool
}

func (c *commonFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.kind, "kind", "python:3.11", "runtime kind: python:3.11 or nodejs:20")
	fs.StringVar(&c.kafka, "kafka", "", "external invoker: Kafka brokers host:port[,host:port] (default: an in-process stack)")
	fs.StringVar(&c.store, "store", "", "external invoker's store: couchdb (CONFIG_whisk_couchdb_* env) or bbolt:PATH")
	fs.IntVar(&c.invoker, "invoker", 0, "N of invoker{N} (external)")
	fs.StringVar(&c.controller, "controller", "0", "C of completed{C}, where acks are read")
	fs.IntVar(&c.memoryMB, "memory", 256, "each action's memory limit in MB")
	fs.IntVar(&c.userMemMB, "user-memory", 2048, "in-process invoker's user memory in MB (also the executor's budget)")
	fs.StringVar(&c.roots, "roots", "", "runtime roots for UC targets (`make rootfs`; default the executor's, .seuss/roots)")
	fs.BoolVar(&c.verbose, "v", false, "log the invoker's warnings on stderr")
}

func (c *commonFlags) logger(stderr io.Writer) *slog.Logger {
	lvl := slog.LevelError + 4 // quiet
	if c.verbose {
		lvl = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
}

// open starts (or connects to) the system under test for target t.
func (c *commonFlags) open(ctx context.Context, t *target, stderr io.Writer) (*sut, error) {
	if c.kafka != "" {
		return connectExternal(ctx, c.kafka, c.store, c.invoker, c.controller)
	}
	return startInProcess(ctx, t, c.stackOptions(stderr))
}

func (c *commonFlags) stackOptions(stderr io.Writer) stackOptions {
	return stackOptions{UserMemoryMB: c.userMemMB, Controller: c.controller, RootsDir: c.roots, Logger: c.logger(stderr)}
}

func parse(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stderr)
			fs.PrintDefaults()
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	return nil
}

// isTerminal reports whether w is a terminal (the progress bar is drawn only there,
// unless forced).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
