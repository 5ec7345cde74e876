package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/seuss-go/seuss/unikernel"
)

func init() {
	register("run", "run a program in a unikernel context (stdio attached, exit status = guest's)", runMain)
}

// envFlags collects repeated --env K=V flags.
type envFlags []string

func (e *envFlags) String() string { return strings.Join(*e, ",") }
func (e *envFlags) Set(v string) error {
	if !strings.Contains(v, "=") {
		return fmt.Errorf("--env %q: want K=V", v)
	}
	*e = append(*e, v)
	return nil
}

// parseSize reads sizes such as 256MiB, 1GiB, 512M, 4096.
func parseSize(s string) (uint64, error) {
	mult := uint64(1)
	t := strings.TrimSpace(s)
	for _, u := range []struct {
		suf string
		m   uint64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}} {
		if strings.HasSuffix(t, u.suf) {
			mult, t = u.m, strings.TrimSuffix(t, u.suf)
			break
		}
	}
	n, err := strconv.ParseUint(strings.TrimSpace(t), 10, 64)
	if err != nil || n == 0 || n > (1<<40)/mult {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}

func runMain(ctx context.Context, args []string) (int, error) {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	root := fs.String("root", "/", "host directory served read-only as the guest's /")
	mem := fs.String("memory", "256MiB", "memory limit (commit limit of the guest)")
	as := fs.String("address-space", "", "guest address space size (default: memory + 64MiB)")
	timeout := fs.Duration("timeout", 30*time.Second, "wall-time limit (0: none)")
	stats := fs.Bool("stats", false, "print exits, system calls by name, pages touched and wall time to stderr")
	cwd := fs.String("cwd", "/", "initial working directory in the guest")
	maxOut := fs.String("max-output", "16MiB", "cap on bytes written to stdout+stderr (the rest is dropped; 0: unlimited)")
	maxFDs := fs.Int("max-fds", 1024, "cap on open descriptors in the guest")
	noPatch := fs.Bool("no-patch", false, "do not rewrite syscall instructions into direct port writes")
	noVDSO := fs.Bool("no-vdso", false, "give the guest no vDSO (every clock_gettime exits; for comparisons)")
	maxThreads := fs.Int("max-threads", unikernel.DefaultMaxThreads, "cap on live guest threads (each has a vCPU)")
	var env envFlags
	fs.Var(&env, "env", "K=V for the guest's environment (repeatable)")
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: invoker run [--root DIR] [--memory 256MiB] [--timeout 30s] [--env K=V]... [--stats] -- PROGRAM [ARGS]...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, nil
		}
		return 2, fmt.Errorf("%w: %v", errUsage, err)
	}
	argv := fs.Args()
	if len(argv) == 0 {
		fs.Usage()
		return 2, fmt.Errorf("%w: no program", errUsage)
	}
	memory, err := parseSize(*mem)
	if err != nil {
		return 2, fmt.Errorf("%w: --memory: %v", errUsage, err)
	}
	cfg := unikernel.Config{
		Root: *root, Memory: memory, Timeout: *timeout, Env: env, Cwd: *cwd, NoSyscallPatching: *noPatch,
		NoVDSO: *noVDSO, MaxThreads: *maxThreads,
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if *maxOut == "0" {
		cfg.MaxOutput = -1
	} else {
		n, err := parseSize(*maxOut)
		if err != nil {
			return 2, fmt.Errorf("%w: --max-output: %v", errUsage, err)
		}
		cfg.MaxOutput = int64(n)
	}
	if *maxFDs < 4 || *maxFDs > 1<<20 {
		return 2, fmt.Errorf("%w: --max-fds %d: want 4..1048576", errUsage, *maxFDs)
	}
	cfg.MaxFDs = *maxFDs
	if *as != "" {
		if cfg.AddressSpace, err = parseSize(*as); err != nil {
			return 2, fmt.Errorf("%w: --address-space: %v", errUsage, err)
		}
	}
	uc, err := unikernel.New(cfg)
	if err != nil {
		return 1, err
	}
	defer uc.Close()
	if err := uc.Load(argv); err != nil {
		return 127, err
	}
	res, err := uc.Run(ctx)
	if err != nil {
		return 1, err
	}
	if *stats {
		printStats(res.Stats)
	}
	if res.OutputTruncated {
		fmt.Fprintln(os.Stderr, "invoker run: output truncated at the output limit")
	}
	if res.Err != nil {
		fmt.Fprintf(os.Stderr, "invoker run: %v\n", res.Err)
	}
	return res.Status, nil
}

func printStats(s unikernel.Stats) {
	w := os.Stderr
	fmt.Fprintf(w, "--- uc stats: mode %s, wall %v, exits %d, pages touched %d (%d KiB, %d KiB private), committed %d KiB\n",
		s.Mode, s.Wall.Round(time.Microsecond), s.Exits, s.PagesTouched, s.PagesTouched*4, s.PagesPrivate*4, s.Committed>>10)
	fmt.Fprintf(w, "time in KVM_RUN %v, in library-OS handlers %v, syscall sites patched %d, threads %d (at most %d at once)\n",
		s.InGuest.Round(time.Microsecond), s.InHandlers.Round(time.Microsecond), s.PatchedSites, s.Threads, s.ThreadsPeak)
	var total uint64
	for _, c := range s.Syscalls {
		total += c.Count
	}
	fmt.Fprintf(w, "system calls: %d total, %d distinct\n", total, len(s.Syscalls))
	for _, c := range s.Syscalls {
		fmt.Fprintf(w, "  %8d  %s\n", c.Count, c.Name)
	}
	if len(s.Unknown) > 0 {
		fmt.Fprintf(w, "unimplemented (ENOSYS): %v\n", s.Unknown)
	}
}
