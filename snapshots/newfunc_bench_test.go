package snapshots

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/seuss-go/seuss/activation"
)

// BenchmarkNewFunctions: sequential new functions (C, a distinct action each), recycling
// on and the kind prepared as a started invoker has it, nothing waited for between them:
// a workload of new functions through the executor. Reports the end-to-end percentiles
// and, from RestoreTrace, the wait for a VM (shell) and for quiescence before the
// function snapshot's capture, the init and run requests, and the process's CPU time per
// new function (background work included). Run with:
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
			var d, initD, runD []time.Duration
			cpu0 := processCPU()
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
				initD = append(initD, out.InitEnd.Sub(out.InitStart))
				runD = append(runD, out.RunEnd.Sub(out.RunStart))
			}
			b.StopTimer()
			cpu := processCPU() - cpu0
			report(b, d)
			b.ReportMetric(float64(cpu/time.Duration(b.N))/1e6, "cpu-ms")
			b.ReportMetric(percentile(shell, 0.5)*1e3, "shell-p50-us")
			b.ReportMetric(percentile(shell, 0.9)*1e3, "shell-p90-us")
			b.ReportMetric(percentile(quiesce, 0.5)*1e3, "quiesce-p50-us")
			b.ReportMetric(percentile(quiesce, 0.9)*1e3, "quiesce-p90-us")
			b.ReportMetric(percentile(initD, 0.5)*1e3, "init-p50-us")
			b.ReportMetric(percentile(runD, 0.5)*1e3, "run-p50-us")
		})
	}
}

// processCPU is the process's CPU time so far (user and system): the executor's and the
// guests' (vCPU threads are threads of this process), background work included.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
