package unikernel

import (
	"context"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// BenchmarkSyscallRoundTrip: one getpid from the guest to the library OS and back (one
// KVM_RUN with KVM_CAP_SYNC_REGS). The guest loops b.N times; UC creation is not timed.
// "patched" is the default (the call site rewritten into a direct port write), "stub" keeps
// the `syscall` instruction and its entry stub.
func BenchmarkSyscallRoundTrip(b *testing.B) {
	requireKVM(b)
	root := testRoot(b, "hostile")
	for _, c := range []struct {
		name    string
		noPatch bool
	}{{"patched", false}, {"stub", true}} {
		b.Run(c.name, func(b *testing.B) {
			uc, err := New(Config{Root: root, NoSyscallPatching: c.noPatch})
			if err != nil {
				b.Fatal(err)
			}
			defer uc.Close()
			if err := uc.Load([]string{"/hostile", "getpid", strconv.Itoa(b.N)}); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			res, err := uc.Run(context.Background())
			b.StopTimer()
			if err != nil || res.Status != 0 || res.Err != nil {
				b.Fatalf("%v %+v", err, res)
			}
		})
	}
}

// BenchmarkUCCreateDestroy: a UC with the default 256 MiB limit (320 MiB slot): VM, memory
// slot, system area, library OS, then Close. No vCPU (that comes with Load).
func BenchmarkUCCreateDestroy(b *testing.B) {
	requireKVM(b)
	for i := 0; i < b.N; i++ {
		uc, err := New(Config{})
		if err != nil {
			b.Fatal(err)
		}
		if err := uc.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUCStaticExit: create, load a static musl program, run it to exit(0), close.
func BenchmarkUCStaticExit(b *testing.B) {
	requireKVM(b)
	root := testRoot(b, "hostile")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		uc, err := New(Config{Root: root})
		if err != nil {
			b.Fatal(err)
		}
		if err := uc.Load([]string{"/hostile", "exit"}); err != nil {
			b.Fatal(err)
		}
		res, err := uc.Run(context.Background())
		if err != nil || res.Status != 0 {
			b.Fatalf("%v %+v", err, res)
		}
		uc.Close()
	}
}

// BenchmarkPythonPass: `python3.11 -c pass` in a UC (create, load, run, close) against the
// same on the host (fork+exec), alternating; reports both and the ratio.
func BenchmarkPythonPass(b *testing.B) {
	requireKVM(b)
	var ucTime, hostTime time.Duration
	var exits uint64
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		uc, err := New(Config{})
		if err != nil {
			b.Fatal(err)
		}
		if err := uc.Load([]string{hostPython, "-c", "pass"}); err != nil {
			b.Fatal(err)
		}
		res, err := uc.Run(context.Background())
		if err != nil || res.Status != 0 {
			b.Fatalf("%v %+v", err, res)
		}
		uc.Close()
		ucTime += time.Since(t0)
		exits += res.Stats.Exits
		t1 := time.Now()
		if err := exec.Command(hostPython, "-c", "pass").Run(); err != nil {
			b.Fatal(err)
		}
		hostTime += time.Since(t1)
	}
	n := float64(b.N)
	b.ReportMetric(float64(ucTime.Microseconds())/1000/n, "uc-ms/op")
	b.ReportMetric(float64(hostTime.Microseconds())/1000/n, "host-ms/op")
	b.ReportMetric(float64(ucTime)/float64(hostTime), "uc/host")
	b.ReportMetric(float64(exits)/n, "exits/op")
}
