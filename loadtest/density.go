package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"time"
)

// density measures how many idle instances fit per GiB, SEUSS's cache-density claim:
//   - processes: distinct actions are run on the process baseline, one warm process
//     each, left idle; their memory is the kernel's PSS of every process this one
//     started (shared pages divided among their sharers), read from /proc;
//   - function snapshots: distinct actions are run on the seuss target until its
//     function-snapshot cache reaches the budget, as the target's SnapshotBytes hook
//     reports it. Unavailable until package snapshots registers seuss.
type densityResult struct {
	Kind   string
	Budget int64

	Processes       int
	ProcPSS         int64 // sum
	ProcPSSP50      int64
	ProcRSSP50      int64
	ProcessesPerGiB float64
	ProcErr         error

	Snapshots       int
	SnapBytes       int64
	SnapBytesP50    int64
	SnapshotsPerGiB float64
	SnapErr         error
}

// densityReport is the JSON object of `density --json`, the shape.
type densityReport struct {
	FunctionSnapshotsPerGiB *float64 `json:"function_snapshots_per_gib"`
	ProcessesPerGiB         *float64 `json:"processes_per_gib"`
	BytesPerSnapshotP50     *float64 `json:"bytes_per_snapshot_p50"`
}

// errUnavailable: the measurement needs an executor that is not built yet.
var errUnavailable = errors.New("unavailable")

const gib = 1 << 30

func densityMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c commonFlags
	fs := flag.NewFlagSet("density", flag.ContinueOnError)
	c.register(fs)
	budgetS := fs.String("budget", "512MiB", "memory to fill: idle processes' PSS, or the function-snapshot cache")
	maxProcs := fs.Int("max-processes", 400, "stop the process side after this many processes")
	maxSnaps := fs.Int("max-snapshots", 20000, "stop the snapshot side after this many function snapshots")
	asJSON := fs.Bool("json", false, "print one JSON object")
	only := fs.String("only", "", "measure one side: processes or snapshots (default both)")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up on a side after this long")
	if err := parse(fs, args); err != nil {
		return err
	}
	if _, err := actionCode(c.kind, ""); err != nil {
		return fmt.Errorf("%w: --%v", errUsage, err)
	}
	budget, err := parseSize(*budgetS)
	if err != nil {
		return fmt.Errorf("%w: --budget: %v", errUsage, err)
	}
	if c.kafka != "" {
		return fmt.Errorf("%w: density measures in-process executors; --kafka is not supported", errUsage)
	}
	r := &densityResult{Kind: c.kind, Budget: budget}
	switch *only {
	case "", "processes", "snapshots":
	default:
		return fmt.Errorf("%w: --only %q: want processes or snapshots", errUsage, *only)
	}
	if *only != "snapshots" {
		r.ProcErr = processDensity(ctx, &c, budget, *maxProcs, *timeout, r, stderr)
	} else {
		r.ProcErr = fmt.Errorf("%w: not measured (--only snapshots)", errUnavailable)
	}
	if *only != "processes" {
		r.SnapErr = snapshotDensity(ctx, &c, budget, *maxSnaps, *timeout, r, stderr)
	} else {
		r.SnapErr = fmt.Errorf("%w: not measured (--only processes)", errUnavailable)
	}

	if *asJSON {
		out := densityReport{}
		if r.ProcErr == nil {
			out.ProcessesPerGiB = num(r.ProcessesPerGiB)
		}
		if r.SnapErr == nil {
			out.FunctionSnapshotsPerGiB = num(r.SnapshotsPerGiB)
			out.BytesPerSnapshotP50 = num(float64(r.SnapBytesP50))
		}
		if err := writeJSON(stdout, out); err != nil {
			return err
		}
	}
	w := stdout
	if *asJSON {
		w = stderr
	}
	fmt.Fprintf(w, "density %s, budget %s\n", r.Kind, mib(r.Budget))
	if r.ProcErr != nil {
		fmt.Fprintf(w, "  processes:          %v\n", r.ProcErr)
	} else {
		fmt.Fprintf(w, "  processes:          %d idle warm processes, PSS %s (p50 %s each; RSS p50 %s) -> %.1f per GiB\n",
			r.Processes, mib(r.ProcPSS), mib(r.ProcPSSP50), mib(r.ProcRSSP50), r.ProcessesPerGiB)
	}
	if r.SnapErr != nil {
		fmt.Fprintf(w, "  function snapshots: %v\n", r.SnapErr)
	} else {
		fmt.Fprintf(w, "  function snapshots: %d, footprint %s (shared pages once; own bytes p50 %s each) -> %.1f per GiB\n",
			r.Snapshots, mib(r.SnapBytes), mib(r.SnapBytesP50), r.SnapshotsPerGiB)
		if r.ProcErr == nil && r.ProcessesPerGiB > 0 {
			fmt.Fprintf(w, "  ratio snapshots/processes per GiB: %.1fx\n", r.SnapshotsPerGiB/r.ProcessesPerGiB)
		}
	}
	if r.ProcErr != nil && !errors.Is(r.ProcErr, errUnavailable) {
		return r.ProcErr
	}
	if r.SnapErr != nil && !errors.Is(r.SnapErr, errUnavailable) {
		return r.SnapErr
	}
	return nil
}

func mib(b int64) string { return fmt.Sprintf("%.2f MiB", float64(b)/(1<<20)) }

// fillUntil runs distinct actions on s, a batch at a time, until measure reports at
// least budget bytes or max instances. measure returns the bytes of each instance and
// the total footprint of all of them.
func fillUntil(ctx context.Context, c *commonFlags, s *sut, prefix string, budget int64, max int, timeout time.Duration, stderr io.Writer,
	measure func() ([]int64, int64, error)) ([]int64, int64, error) {
	d, err := newDriver(ctx, s, c.logger(stderr))
	if err != nil {
		return nil, 0, err
	}
	defer d.Close()
	params, _ := json.Marshal(map[string]any{"spin": 0})
	deadline := time.Now().Add(timeout)
	const batch = 10
	var per []int64
	var total int64
	for n := 0; ; n += batch {
		t0 := time.Now()
		k := min(batch, max-n)
		if k <= 0 {
			break
		}
		actions, err := createActions(ctx, s.Store, c.kind, fmt.Sprintf("%s-%d", prefix, n), k, c.memoryMB)
		if err != nil {
			return nil, 0, err
		}
		idx := make([]int, k)
		for i := range idx {
			idx[i] = i
		}
		samples, err := d.runLoad(ctx, actions, idx, params, loadSpec{Parallel: 2, Timeout: time.Until(deadline), Linger: time.Millisecond})
		if err != nil {
			return nil, 0, err
		}
		for _, sm := range samples {
			if sm.Status != 0 {
				return nil, 0, fmt.Errorf("activation %s of %s failed with status %d", sm.ID, sm.Action, sm.Status)
			}
		}
		if per, total, err = measure(); err != nil {
			return nil, 0, err
		}
		if c.verbose {
			fmt.Fprintf(stderr, "%s: %d activations, %d instances, %s of %s, batch took %v\n", prefix, n+k, len(per), mib(total), mib(budget), time.Since(t0).Round(time.Millisecond))
		} else if isTerminal(stderr) {
			fmt.Fprintf(stderr, "\r%d instances, %s of %s ", len(per), mib(total), mib(budget))
		}
		if total >= budget || time.Now().After(deadline) {
			break
		}
	}
	if isTerminal(stderr) && !c.verbose {
		fmt.Fprintln(stderr)
	}
	return per, total, nil
}

func processDensity(ctx context.Context, c *commonFlags, budget int64, max int, timeout time.Duration, r *densityResult, stderr io.Writer) error {
	t, err := lookupTarget("process")
	if err != nil {
		return err
	}
	before, err := descendants(os.Getpid())
	if err != nil {
		return fmt.Errorf("processes: /proc: %w", err)
	}
	old := map[int]bool{}
	for _, p := range before {
		old[p] = true
	}
	// The executor's own budget must not evict: every process stays, idle and warm.
	o := c.stackOptions(stderr)
	o.ExecBudgetMB = 1 << 30
	s, err := startInProcess(ctx, t, o)
	if err != nil {
		return err
	}
	defer s.Close()
	var pss, rss []int64
	measure := func() ([]int64, int64, error) {
		ms, err := childMem()
		if err != nil {
			return nil, 0, err
		}
		pss, rss = pss[:0], rss[:0]
		var total int64
		for _, m := range ms {
			if !old[m.PID] {
				pss = append(pss, m.PSS)
				rss = append(rss, m.RSS)
				total += m.PSS
			}
		}
		return pss, total, nil
	}
	per, total, err := fillUntil(ctx, c, s, "lt-density-process-"+newActivationID()[:8], budget, max, timeout, stderr, measure)
	if err != nil {
		return fmt.Errorf("processes: %w", err)
	}
	if len(per) == 0 {
		return errors.New("processes: no idle process found under this one")
	}
	r.Processes = len(per)
	r.ProcPSS = total
	r.ProcPSSP50, r.ProcRSSP50 = median(per), median(rss)
	r.ProcessesPerGiB = float64(r.Processes) * gib / float64(r.ProcPSS)
	return nil
}

func snapshotDensity(ctx context.Context, c *commonFlags, budget int64, max int, timeout time.Duration, r *densityResult, stderr io.Writer) error {
	t, err := lookupTarget("seuss")
	if err != nil || t.SnapshotBytes == nil {
		return fmt.Errorf("%w: needs the seuss target's function-snapshot cache (package snapshots), not built yet", errUnavailable)
	}
	// The cache must not evict while it fills: its own budget counts every page of
	// every snapshot, shared or not, so it is set far above the footprint measured.
	o := c.stackOptions(stderr)
	o.CacheBytes = 1 << 40
	s, err := startInProcess(ctx, t, o)
	if err != nil {
		return err
	}
	defer s.Close()
	if c.verbose {
		debugUsage = func(used, budget int64, n int) {
			fmt.Fprintf(stderr, "cache accounting: %d function snapshots, %s counted against a budget of %s\n", n, mib(used), mib(budget))
		}
		defer func() { debugUsage = nil }()
	}
	measure := func() ([]int64, int64, error) {
		if w, ok := s.Exec.inner.(snapshotWaiter); ok {
			w.WaitSnapshots()
		}
		return t.SnapshotBytes(s.Exec.inner)
	}
	per, total, err := fillUntil(ctx, c, s, "lt-density-seuss-"+newActivationID()[:8], budget, max, timeout, stderr, measure)
	if err != nil {
		return fmt.Errorf("function snapshots: %w", err)
	}
	if len(per) == 0 {
		return errors.New("function snapshots: the cache reports no snapshots")
	}
	r.Snapshots = len(per)
	r.SnapBytes = total
	r.SnapBytesP50 = median(per)
	r.SnapshotsPerGiB = float64(r.Snapshots) * gib / float64(r.SnapBytes)
	return nil
}

func median(xs []int64) int64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]int64(nil), xs...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)-1)/2]
}
