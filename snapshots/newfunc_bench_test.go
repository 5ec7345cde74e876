package snapshots

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/seuss-go/seuss/activation"
)

// BenchmarkNewFunctions: sequential new functions (C, a distinct action each), recycling
// on and the kind prepared as a started invoker has it, nothing waited for between them:
// a workload of new functions through the executor. Reports the end-to-end percentiles
// and, from RestoreTrace, the wait for a VM (shell) and for quiescence before the
// function snapshot's capture. Run with:
//
//	go test ./snapshots -run '^$' -bench NewFunctions -benchtime 200x
func BenchmarkNewFunctions(b *testing.B) {
	for _, kind := range []string{"python:3.11", "nodejs:20"} {
		b.Run(kind, func(b *testing.B) {
			roots := requireUC(b, kind)
			e := newExec(b, Config{RootsDir: roots, SnapshotDir: b.TempDir()})
			defer e.Close()
			if err := e.Prepare(context.Background(), kind); err != nil {
				b.Fatal(err)
			}
			var shell, quiesce []time.Duration
			e.cfg.Trace = func(t RestoreTrace) {
				switch t.Path {
				case activation.PathCold:
					shell = append(shell, t.Shell)
				case "capture":
					quiesce = append(quiesce, t.Quiesce)
				}
			}
			defer func() { e.cfg.Trace = nil }()
			var d []time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				j := pyJob(fmt.Sprint("nf", i, "-", time.Now().UnixNano()), trivial[kind], "1")
				j.Kind = kind
				t0 := time.Now()
				out, err := e.Run(context.Background(), j)
				d = append(d, time.Since(t0))
				if err != nil || out.RunStatus != 200 || out.Path != activation.PathCold {
					b.Fatalf("%v %+v", err, out)
				}
			}
			b.StopTimer()
			report(b, d)
			b.ReportMetric(percentile(shell, 0.5)*1e3, "shell-p50-us")
			b.ReportMetric(percentile(shell, 0.9)*1e3, "shell-p90-us")
			b.ReportMetric(percentile(quiesce, 0.5)*1e3, "quiesce-p50-us")
			b.ReportMetric(percentile(quiesce, 0.9)*1e3, "quiesce-p90-us")
		})
	}
}
