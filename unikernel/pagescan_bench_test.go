package unikernel

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkPageScans: the two page scans of the new-function path on a python UC restored
// from its runtime image, after an init and a run: the function snapshot's diff (MemoryRuns,
// during the capture pause) and the ranges RecycleVM hands to its reset (dirtyRanges).
func BenchmarkPageScans(b *testing.B) {
	requireKVM(b)
	root := pythonRoot(b)
	must := func(err error) {
		b.Helper()
		if err != nil {
			b.Fatal(err)
		}
	}
	quiet := func(uc *UC) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		must(uc.WaitQuiescent(ctx))
	}
	cfg, _ := sessionConfig(root)
	uc, err := New(cfg)
	must(err)
	defer uc.Close()
	must(uc.Load(pythonArgv))
	must(uc.Start())
	quiet(uc)
	st, err := uc.Capture()
	must(err)
	// The runtime image, as a sparse file.
	runs, err := uc.MemoryRuns(true)
	must(err)
	memFile := filepath.Join(b.TempDir(), "memory")
	f, err := os.Create(memFile)
	must(err)
	defer f.Close()
	must(f.Truncate(int64(uc.vm.Size)))
	for _, r := range runs {
		_, err := f.WriteAt(uc.vm.mem[r.Addr:r.Addr+r.Pages*PageSize], int64(r.Addr))
		must(err)
	}
	vm, err := NewVM(st.AddressSpace)
	must(err)
	defer vm.Close()
	must(vm.PrepareVCPUs(1))
	cfg2, s2 := sessionConfig(root)
	uc2, err := RestoreOnVM(vm, cfg2, st, func(g *GuestMemory) error {
		return g.MapFile(userBase, g.Size()-userBase, int(f.Fd()), userBase)
	})
	must(err)
	defer uc2.Close()
	must(uc2.Start())
	for _, l := range []string{initLine(counterAction), runLine(`{"x":1}`)} {
		_, err := s2.in.Write([]byte(l + "\n"))
		must(err)
		_, err = s2.reply.ReadString('\n')
		must(err)
	}
	quiet(uc2)
	b.Run("MemoryRuns", func(b *testing.B) {
		threadCPU(b, func() error { _, err := uc2.MemoryRuns(false); return err })
	})
	b.Run("Recycle", func(b *testing.B) {
		threadCPU(b, func() error { _, err := uc2.dirtyRanges(); return err })
	})
}

// threadCPU runs f b.N times on one OS thread and reports that thread's CPU time per call
// (user and system, RUSAGE_THREAD): steadier than the wall time on a loaded machine.
func threadCPU(b *testing.B, f func() error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var r0, r1 unix.Rusage
	unix.Getrusage(unix.RUSAGE_THREAD, &r0)
	for i := 0; i < b.N; i++ {
		if err := f(); err != nil {
			b.Fatal(err)
		}
	}
	unix.Getrusage(unix.RUSAGE_THREAD, &r1)
	cpu := func(r *unix.Rusage) int64 { return r.Utime.Nano() + r.Stime.Nano() }
	b.ReportMetric(float64(cpu(&r1)-cpu(&r0))/float64(b.N), "cpu-ns/op")
}
