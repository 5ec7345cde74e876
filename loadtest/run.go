package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"time"
)

type runFlags struct {
	commonFlags
	scenario    string
	activations int
	parallel    int
	rate        string
	spin        float64
	functions   int
	target      string
	compare     string
	json        bool
	csv         string
	plot        string
	timeout     time.Duration
	progress    bool
	seed        int64
	cpuprofile  string
	trace       string
	coldInvoker bool
}

func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f runFlags
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	f.commonFlags.register(fs)
	fs.StringVar(&f.scenario, "scenario", "new-functions", "new-functions | repeat | zipf | burst")
	fs.IntVar(&f.activations, "activations", 100, "number of activations")
	fs.IntVar(&f.parallel, "parallel", 4, "closed loop: activations outstanding at once")
	fs.StringVar(&f.rate, "rate", "", "open loop: activations per second, e.g. 50 or 50/s (instead of --parallel)")
	fs.Float64Var(&f.spin, "spin", 0, "CPU spin per activation, in ms (SEUSS's default function)")
	fs.IntVar(&f.functions, "functions", 100, "zipf: number of distinct actions")
	fs.StringVar(&f.target, "target", "", "executor to run against (default seuss, or process while seuss is not available)")
	fs.StringVar(&f.compare, "compare", "", "more targets to run the same workload against, e.g. process,boot")
	fs.BoolVar(&f.json, "json", false, "print one JSON object on stdout (the table goes to stderr)")
	fs.StringVar(&f.csv, "csv", "", "write one CSV row per activation to FILE")
	fs.StringVar(&f.plot, "plot", "", "write latency CDFs per path and throughput over time to FILE.png or FILE.svg")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Minute, "give up on a target's run after this long")
	fs.BoolVar(&f.progress, "progress", false, "draw the progress bar even when stderr is not a terminal")
	fs.Int64Var(&f.seed, "seed", 1, "zipf: random seed")
	fs.StringVar(&f.cpuprofile, "cpuprofile", "", "write a CPU profile of the whole process (load generator, invoker, executor) to FILE")
	fs.StringVar(&f.trace, "trace", "", "write a runtime/trace execution trace to FILE (where the invoker waits: go tool trace)")
	fs.BoolVar(&f.coldInvoker, "cold-invoker", false, "measure from an invoker that has just started with an empty snapshot directory: the kind's runtime snapshot is booted and captured inside the run (by default it is prepared before the run, as a started invoker has it)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if f.activations < 1 {
		return fmt.Errorf("%w: --activations must be at least 1", errUsage)
	}
	if _, err := actionCode(f.kind, ""); err != nil {
		return fmt.Errorf("%w: --%v", errUsage, err)
	}
	idx, nActions, err := plan(f.scenario, f.activations, f.functions, f.seed)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	ls := loadSpec{Parallel: f.parallel, Timeout: f.timeout}
	if f.rate != "" {
		r, err := strconv.ParseFloat(strings.TrimSuffix(f.rate, "/s"), 64)
		if err != nil || r <= 0 {
			return fmt.Errorf("%w: --rate %q: want a positive number per second", errUsage, f.rate)
		}
		ls.Rate = r
	}
	if f.scenario == "burst" {
		ls.Rate = -1 // all at once, on a quiet invoker
	}

	primary, note := resolveDefault(f.target)
	if note != "" {
		fmt.Fprintln(stderr, note)
	}
	names := []string{primary}
	for _, n := range strings.Split(f.compare, ",") {
		n = strings.TrimSpace(n)
		if n == "" || contains(names, n) {
			continue
		}
		names = append(names, n)
	}
	var tgts []*target
	for i, n := range names {
		t, err := lookupTarget(n)
		if err != nil {
			if i == 0 {
				return fmt.Errorf("%w: %v", errUsage, err)
			}
			fmt.Fprintf(stderr, "compare: skipping %v\n", err)
			continue
		}
		tgts = append(tgts, t)
	}
	if f.kafka != "" && len(tgts) > 1 {
		return fmt.Errorf("%w: --compare needs in-process targets; an external invoker has one executor", errUsage)
	}

	stopProfiles, err := startProfiles(f.cpuprofile, f.trace)
	if err != nil {
		return err
	}
	defer stopProfiles()
	params, _ := json.Marshal(map[string]any{"spin": f.spin})
	runID := newActivationID()[:8]
	var results []*targetResult
	for _, t := range tgts {
		name := t.Name
		if f.kafka != "" {
			name = "external"
		}
		r, err := runTarget(ctx, &f, t, name, runID, idx, nActions, params, ls, stderr)
		if err != nil && r == nil {
			return fmt.Errorf("target %s: %w", t.Name, err)
		}
		results = append(results, r)
	}

	if f.json {
		writeTable(stderr, f.scenario, results)
		if err := writeJSON(stdout, buildRunReport(f.scenario, results)); err != nil {
			return err
		}
	} else {
		writeTable(stdout, f.scenario, results)
	}
	if f.csv != "" {
		if err := writeCSV(f.csv, results); err != nil {
			return fmt.Errorf("--csv: %w", err)
		}
	}
	if f.plot != "" {
		title := fmt.Sprintf("seuss loadtest: %s, %d activations, %s, spin %g ms", f.scenario, f.activations, f.kind, f.spin)
		if err := writePlot(f.plot, title, results); err != nil {
			return fmt.Errorf("--plot: %w", err)
		}
	}
	for _, r := range results {
		if r.Err != nil {
			return fmt.Errorf("target %s: %w", r.Target, r.Err)
		}
		if r.Missing > 0 || r.Duplicates > 0 {
			return fmt.Errorf("target %s: %d activations not acked, %d acked more than once", r.Target, r.Missing, r.Duplicates)
		}
	}
	return nil
}

// runTarget runs the workload against one target on a fresh system under test.
func runTarget(ctx context.Context, f *runFlags, t *target, name, runID string, idx []int, nActions int, params json.RawMessage, ls loadSpec, stderr io.Writer) (res *targetResult, err error) {
	s, err := f.open(ctx, t, stderr)
	if err != nil {
		return nil, err
	}
	var cpu0 time.Duration
	defer func() {
		t0 := time.Now()
		s.Close()
		if f.verbose {
			fmt.Fprintf(stderr, "%s: stack closed in %v\n", name, time.Since(t0).Round(time.Millisecond))
		}
		// After Close: the executor's processes have been reaped, so their CPU counts.
		if res != nil && cpu0 > 0 {
			res.CPU = cpuTime() - cpu0
		}
	}()
	prefix := fmt.Sprintf("lt-%s-%s-%s", f.scenario, t.Name, runID)
	actions, err := createActions(ctx, s.Store, f.kind, prefix, nActions, f.memoryMB)
	if err != nil {
		return nil, err
	}
	d, err := newDriver(ctx, s, f.logger(stderr))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	if f.progress || isTerminal(stderr) {
		ls.Progress = progressBar(stderr, name)
	}
	// A started invoker has its runtime snapshots (standalone prepares them at start; a
	// snapshot directory keeps them across restarts): the run measures activations, not
	// the invoker's first start, unless --cold-invoker.
	var prepared time.Duration
	if p, ok := s.executor().(preparer); ok && t.Snapshots && !f.coldInvoker && f.kafka == "" {
		t0 := time.Now()
		if err := p.Prepare(ctx, f.kind); err != nil {
			return nil, fmt.Errorf("prepare %s: %w", f.kind, err)
		}
		prepared = time.Since(t0)
	}
	cpu0 = cpuTime()
	if s.Records != nil {
		s.Records.take()
	}
	samples, runErr := d.runLoad(ctx, actions, idx, params, ls)
	if ls.Progress != nil && int(d.acked.Load()) < len(idx) {
		fmt.Fprintln(stderr)
	}
	d.mu.Lock()
	strays := d.strays
	d.mu.Unlock()
	r := summarize(name, samples, strays, runErr)
	r.Prepare = prepared
	if s.Records != nil {
		var w []float64
		for _, d := range s.Records.take() {
			w = append(w, ms(d))
		}
		r.RecordWriteP50 = pct(w, 50)
	}
	// Captures still running after the run (and its linger for duplicate acks) are
	// work the throughput figure does not show: say how long they kept going.
	if s.Exec != nil {
		if w, ok := s.Exec.inner.(snapshotWaiter); ok {
			t0 := time.Now()
			w.WaitSnapshots()
			r.CaptureDrain = time.Since(t0)
		}
	}
	if f.kafka != "" {
		cpu0 = 0 // the invoker's CPU is elsewhere
	}
	return r, nil
}

// progressBar returns a Progress func drawing "name [#####.....] k/n" on w.
func progressBar(w io.Writer, name string) func(acked, total int) {
	start := time.Now()
	finished := false
	return func(acked, total int) {
		if finished {
			return
		}
		const width = 30
		fill := width * acked / max(total, 1)
		rate := float64(acked) / time.Since(start).Seconds()
		fmt.Fprintf(w, "\r%-8s [%s%s] %d/%d acked  %.1f/s ", name, strings.Repeat("#", fill), strings.Repeat(".", width-fill), acked, total, rate)
		if acked >= total {
			fmt.Fprintln(w)
			finished = true
		}
	}
}

// startProfiles starts a CPU profile and an execution trace when asked; the returned
// func stops them and closes the files.
func startProfiles(cpu, tr string) (func(), error) {
	var stops []func()
	stop := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	if cpu != "" {
		f, err := os.Create(cpu)
		if err != nil {
			return stop, fmt.Errorf("--cpuprofile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return stop, fmt.Errorf("--cpuprofile: %w", err)
		}
		stops = append(stops, func() { pprof.StopCPUProfile(); f.Close() })
	}
	if tr != "" {
		f, err := os.Create(tr)
		if err != nil {
			stop()
			return func() {}, fmt.Errorf("--trace: %w", err)
		}
		if err := trace.Start(f); err != nil {
			f.Close()
			stop()
			return func() {}, fmt.Errorf("--trace: %w", err)
		}
		stops = append(stops, func() { trace.Stop(); f.Close() })
	}
	return stop, nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
