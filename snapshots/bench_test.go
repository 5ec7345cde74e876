package snapshots

import (
	"context"
	"fmt"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/seuss-go/seuss/activation"
)

// The deploy benchmark: a trivial action through each path, end to end inside the
// executor (Run called → result returned), with percentiles and, for W, where the time
// goes. Run with:
//
//	go test ./snapshots -run XXX -bench Deploy -benchtime 40x
var trivial = map[string]string{
	"python:3.11": "def main(args):\n    return {\"ok\": True}\n",
	"nodejs:20":   "function main(args) { return { ok: true } }\n",
}

func percentile(d []time.Duration, p float64) float64 {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p * float64(len(s)-1))
	return float64(s[i]) / 1e6
}

func report(b *testing.B, d []time.Duration) {
	b.ReportMetric(percentile(d, 0.5), "p50-ms")
	b.ReportMetric(percentile(d, 0.9), "p90-ms")
	b.ReportMetric(percentile(d, 0.99), "p99-ms")
	b.ReportMetric(0, "ns/op")
}

func minflt() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Minflt
}

func BenchmarkDeploy(b *testing.B) {
	for _, kind := range []string{"python:3.11", "nodejs:20"} {
		b.Run(kind, func(b *testing.B) {
			roots := requireUC(b, kind)
			job := func(name string) *activation.Job {
				j := pyJob(name, trivial[kind], "1")
				j.Kind = kind
				return j
			}
			mustRun := func(e *Executor, j *activation.Job, want activation.Path) time.Duration {
				t0 := time.Now()
				out, err := e.Run(context.Background(), j)
				d := time.Since(t0)
				if err != nil || out.RunStatus != 200 || out.Path != want {
					b.Fatalf("%v %+v (want %s)", err, out, want)
				}
				return d
			}
			b.Run("B", func(b *testing.B) {
				e := newExec(b, Config{RootsDir: roots, NoSnapshots: true})
				defer e.Close()
				var d []time.Duration
				for i := 0; i < b.N; i++ {
					d = append(d, mustRun(e, job("b"), activation.PathBoot))
					e.DropIdle()
				}
				report(b, d)
			})
			e := newExec(b, Config{RootsDir: roots, SnapshotDir: b.TempDir(), NoRecycle: true})
			defer e.Close()
			mustRun(e, job("first"), activation.PathBoot)
			b.Run("C", func(b *testing.B) {
				var d []time.Duration
				var q, c, sc, cp time.Duration
				e.cfg.Trace = func(t RestoreTrace) {
					if t.Path == "capture" {
						q, c, sc, cp = q+t.Quiesce, c+t.Capture, sc+t.Scan, cp+t.Copy
					}
				}
				defer func() {
					e.cfg.Trace = nil
					n := time.Duration(b.N)
					b.ReportMetric(float64(q/n)/1e3, "quiesce-us")
					b.ReportMetric(float64(c/n)/1e3, "state-us")
					b.ReportMetric(float64(sc/n)/1e3, "scan-us")
					b.ReportMetric(float64(cp/n)/1e3, "copy-us")
				}()
				for i := 0; i < b.N; i++ {
					d = append(d, mustRun(e, job(fmt.Sprint("c", i, time.Now().UnixNano())), activation.PathCold))
					e.WaitSnapshots()
					e.DropIdle()
				}
				report(b, d)
			})
			mustRun(e, job("w"), activation.PathCold)
			e.WaitSnapshots()
			e.DropIdle()
			b.Run("W", func(b *testing.B) {
				var d []time.Duration
				var traces []RestoreTrace
				e.cfg.Trace = func(t RestoreTrace) { traces = append(traces, t) }
				defer func() { e.cfg.Trace = nil }()
				var exits, touched, private, faults uint64
				var inGuest, inHandlers time.Duration
				for i := 0; i < b.N; i++ {
					f0 := minflt()
					d = append(d, mustRun(e, job("w"), activation.PathWarm))
					faults += uint64(minflt() - f0)
					for _, inst := range e.pool.Live() {
						s := inst.uc.Stats()
						exits += s.Exits
						inGuest += s.InGuest
						inHandlers += s.InHandlers
						touched += s.PagesTouched
						private += s.PagesPrivate
					}
					e.DropIdle()
				}
				report(b, d)
				var sh, mem, st, start, mp time.Duration
				for _, t := range traces {
					sh, mem, st, start, mp = sh+t.Shell, mem+t.Memory, st+t.State, start+t.Start, mp+t.Map
				}
				n := time.Duration(len(traces))
				b.ReportMetric(float64(sh/n)/1e3, "shell-us")
				b.ReportMetric(float64(mem/n)/1e3, "memory-us")
				b.ReportMetric(float64(mp/n)/1e3, "map-us")
				b.ReportMetric(float64(st/n)/1e3, "state-us")
				b.ReportMetric(float64(start/n)/1e3, "start-us")
				b.ReportMetric(float64(traces[0].DiffPages), "diff-pages")
				b.ReportMetric(float64(traces[0].DiffReads), "diff-reads")
				b.ReportMetric(float64(exits)/float64(b.N), "exits")
				b.ReportMetric(float64(inGuest/time.Duration(b.N))/1e3, "in-guest-us")
				b.ReportMetric(float64(inHandlers/time.Duration(b.N))/1e3, "in-handlers-us")
				b.ReportMetric(float64(touched)/float64(b.N), "pages-touched")
				b.ReportMetric(float64(private)/float64(b.N), "pages-private")
				b.ReportMetric(float64(faults)/float64(b.N), "host-minflt")
			})
			b.Run("W-recycle", func(b *testing.B) {
				e.cfg.NoRecycle = false
				defer func() { e.cfg.NoRecycle = true }()
				var mem time.Duration
				e.cfg.Trace = func(t RestoreTrace) { mem += t.Memory }
				defer func() { e.cfg.Trace = nil }()
				e.DropIdle()
				mustRun(e, job("w"), activation.PathWarm)
				e.DropIdle()
				e.WaitSnapshots()
				var d []time.Duration
				var inGuest time.Duration
				for i := 0; i < b.N; i++ {
					d = append(d, mustRun(e, job("w"), activation.PathWarm))
					for _, inst := range e.pool.Live() {
						inGuest += inst.uc.Stats().InGuest
					}
					e.DropIdle()
					e.WaitSnapshots()
				}
				report(b, d)
				b.ReportMetric(float64(mem/time.Duration(b.N))/1e3, "memory-us")
				b.ReportMetric(float64(inGuest/time.Duration(b.N))/1e3, "in-guest-us")
				b.ReportMetric(float64(e.shells.recycledHits.Load()), "recycled-hits")
			})
			b.Run("H", func(b *testing.B) {
				e.DropIdle()
				mustRun(e, job("w"), activation.PathWarm)
				var d []time.Duration
				for i := 0; i < b.N; i++ {
					d = append(d, mustRun(e, job("w"), activation.PathHot))
				}
				report(b, d)
			})
			for _, en := range e.Store().List() {
				if en.Type == TypeFunction && en.FQN == "guest/w" {
					b.Logf("%s function snapshot: %d data pages, %d zero pages, state %d B, private %d KiB", kind, en.DataPages, en.ZeroPages, en.StateBytes, en.PrivateBytes>>10)
				}
			}
		})
	}
}
