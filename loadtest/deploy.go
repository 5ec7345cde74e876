package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/seuss-go/seuss/activation"
)

// deploy measures each deployment path of a trivial action end to end inside the
// invoker (the lifecycle's own latency: message received → last ack produced), one
// activation at a time. Per distinct action it runs: the first activation (the cold
// path: B on process and boot, C on seuss), a second one (H), and, on targets with
// function snapshots, a third after dropping the idle instances (W). On seuss, B comes
// from the boot target (snapshots off), when registered.

// deployReport is the JSON object of `deploy --json`, issue 5's shape.
type deployReport struct {
	Kind   string                     `json:"kind"`
	Paths  map[string]*jsonPercentile `json:"paths"`
	Memory map[string]*float64        `json:"memory"`
}

type jsonPercentile struct {
	P50 *float64 `json:"p50_ms"`
	P90 *float64 `json:"p90_ms"`
	P99 *float64 `json:"p99_ms"`
	N   int      `json:"n"`
}

// pathTimes are what deploy gathers per path.
type pathTimes struct {
	invoker []float64 // ms: message received → last ack (the invoker's observer)
	e2e     []float64 // ms: Kafka in → result ack (the load generator)
	exec    []float64 // ms: Executor.Run alone
}

func deployMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c commonFlags
	fs := flag.NewFlagSet("deploy", flag.ContinueOnError)
	c.register(fs)
	n := fs.Int("n", 20, "distinct actions (each gives one cold, one H and, with snapshots, one W sample)")
	targetName := fs.String("target", "", "executor (default seuss, or process while seuss is not available)")
	asJSON := fs.Bool("json", false, "print one JSON object")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long")
	if err := parse(fs, args); err != nil {
		return err
	}
	if _, err := actionCode(c.kind, ""); err != nil {
		return fmt.Errorf("%w: --%v", errUsage, err)
	}
	if c.kafka != "" {
		return fmt.Errorf("%w: deploy measures inside an in-process invoker; --kafka is not supported", errUsage)
	}
	if *n < 1 {
		return fmt.Errorf("%w: --n must be at least 1", errUsage)
	}
	name, note := resolveDefault(*targetName)
	if note != "" {
		fmt.Fprintln(stderr, note)
	}
	t, err := lookupTarget(name)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}

	paths := map[string]*pathTimes{}
	mem := map[string]*float64{"function_snapshot_private_kib_p50": nil, "live_uc_private_kib_p50": nil}
	if err := deployOn(ctx, &c, t, *n, *timeout, paths, mem, "", stderr); err != nil {
		return err
	}
	if t.Snapshots {
		if b, err := lookupTarget("boot"); err == nil {
			if err := deployOn(ctx, &c, b, *n, *timeout, paths, nil, "B", stderr); err != nil {
				return err
			}
		} else {
			fmt.Fprintf(stderr, "B: %v\n", err)
		}
	}

	rep := deployReport{Kind: c.kind, Paths: map[string]*jsonPercentile{}, Memory: mem}
	for _, p := range []string{"B", "C", "W", "H"} {
		pt := paths[p]
		if pt == nil {
			pt = &pathTimes{}
		}
		rep.Paths[p] = &jsonPercentile{P50: num(pct(pt.invoker, 50)), P90: num(pct(pt.invoker, 90)), P99: num(pct(pt.invoker, 99)), N: len(pt.invoker)}
	}
	w := stdout
	if *asJSON {
		if err := writeJSON(stdout, rep); err != nil {
			return err
		}
		w = stderr
	}
	fmt.Fprintf(w, "deploy %s on %s: inside the invoker (message received -> last ack), ms\n", c.kind, t.Name)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "path\tn\tp50\tp90\tp99\texecutor p50\tKafka e2e p50\t")
	for _, p := range []string{"B", "C", "W", "H"} {
		pt := paths[p]
		if pt == nil || len(pt.invoker) == 0 {
			fmt.Fprintf(tw, "%s\t0\t-\t-\t-\t-\t-\t\n", p)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t\n", p, len(pt.invoker), fmtMS(pct(pt.invoker, 50)), fmtMS(pct(pt.invoker, 90)),
			fmtMS(pct(pt.invoker, 99)), fmtMS(pct(pt.exec, 50)), fmtMS(pct(pt.e2e, 50)))
	}
	tw.Flush()
	for k, v := range mem {
		if v == nil {
			fmt.Fprintf(w, "memory %s: unavailable (needs package snapshots)\n", k)
		} else {
			fmt.Fprintf(w, "memory %s: %.1f\n", k, *v)
		}
	}
	return nil
}

// deployOn runs the deploy pattern on a fresh in-process stack of t and adds the
// samples to paths (only those of path only, when set); mem, when not nil, gets the
// target's memory figures.
func deployOn(ctx context.Context, c *commonFlags, t *target, n int, timeout time.Duration, paths map[string]*pathTimes, mem map[string]*float64, only string, stderr io.Writer) error {
	s, err := startInProcess(ctx, t, c.stackOptions(stderr))
	if err != nil {
		return fmt.Errorf("deploy on %s: %w", t.Name, err)
	}
	defer s.Close()
	actions, err := createActions(ctx, s.Store, c.kind, "lt-deploy-"+t.Name+"-"+newActivationID()[:8], n, c.memoryMB)
	if err != nil {
		return err
	}
	per := 2 // cold, H
	if t.Snapshots {
		per = 3 // cold, H, W
	}
	idx := make([]int, 0, n*per)
	for i := 0; i < n; i++ {
		for j := 0; j < per; j++ {
			idx = append(idx, i)
		}
	}
	d, err := newDriver(ctx, s, c.logger(stderr))
	if err != nil {
		return err
	}
	defer d.Close()
	params, _ := json.Marshal(map[string]any{"spin": 0})
	ls := loadSpec{Parallel: 1, Timeout: timeout, Linger: time.Millisecond,
		Before: func(i int) {
			if i%per == 2 {
				s.Exec.DropIdle() // the third activation of an action restores its function snapshot
			}
		}}
	if isTerminal(stderr) {
		ls.Progress = progressBar(stderr, t.Name)
	}
	s.Obs.take()
	samples, err := d.runLoad(ctx, actions, idx, params, ls)
	if err != nil {
		return fmt.Errorf("deploy on %s: %w", t.Name, err)
	}
	// One activation at a time: the observer's latencies come in the order sent.
	inv := s.Obs.take()
	next := map[activation.Path]int{}
	for _, sm := range samples {
		if sm.Status != 0 {
			return fmt.Errorf("deploy on %s: activation %s failed with status %d", t.Name, sm.ID, sm.Status)
		}
		p := activation.Path(sm.Path)
		if only != "" && sm.Path != only {
			continue
		}
		pt := paths[sm.Path]
		if pt == nil {
			pt = &pathTimes{}
			paths[sm.Path] = pt
		}
		if k := next[p]; k < len(inv[p]) {
			pt.invoker = append(pt.invoker, ms(inv[p][k]))
			next[p] = k + 1
		}
		pt.e2e = append(pt.e2e, ms(sm.E2E()))
		pt.exec = append(pt.exec, ms(sm.ExecTime))
	}
	if w, ok := s.Exec.inner.(snapshotWaiter); ok {
		w.WaitSnapshots()
	}
	if mem != nil && t.SnapshotBytes != nil {
		if b, _, err := t.SnapshotBytes(s.Exec.inner); err == nil && len(b) > 0 {
			mem["function_snapshot_private_kib_p50"] = num(float64(median(b)) / 1024)
		}
	}
	if mem != nil && t.LiveBytes != nil {
		if b, err := t.LiveBytes(s.Exec.inner); err == nil && len(b) > 0 {
			mem["live_uc_private_kib_p50"] = num(float64(median(b)) / 1024)
		}
	}
	return nil
}
