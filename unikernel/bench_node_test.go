package unikernel

import (
	"context"
	"os/exec"
	"testing"
	"time"
)

// BenchmarkNodeStart: `node -e 0` in a UC (create, load, run to exit, close) against the
// same on the host (fork+exec), alternating; reports both, the ratio, exits per start-up
// and clock_gettime exits (0 with the vDSO).
func BenchmarkNodeStart(b *testing.B) {
	requireKVM(b)
	var ucTime, hostTime time.Duration
	var exits, clock uint64
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		uc, err := New(Config{})
		if err != nil {
			b.Fatal(err)
		}
		if err := uc.Load([]string{"/usr/bin/node", "-e", "0"}); err != nil {
			b.Fatal(err)
		}
		res, err := uc.Run(context.Background())
		if err != nil || res.Status != 0 {
			b.Fatalf("%v %+v", err, res)
		}
		uc.Close()
		ucTime += time.Since(t0)
		exits += res.Stats.Exits
		for _, c := range res.Stats.Syscalls {
			if c.Name == "clock_gettime" {
				clock += c.Count
			}
		}
		t1 := time.Now()
		if err := exec.Command("/usr/bin/node", "-e", "0").Run(); err != nil {
			b.Fatal(err)
		}
		hostTime += time.Since(t1)
	}
	n := float64(b.N)
	b.ReportMetric(float64(ucTime.Microseconds())/1000/n, "uc-ms/op")
	b.ReportMetric(float64(hostTime.Microseconds())/1000/n, "host-ms/op")
	b.ReportMetric(float64(ucTime)/float64(hostTime), "uc/host")
	b.ReportMetric(float64(exits)/n, "exits/op")
	b.ReportMetric(float64(clock)/n, "clock_gettime-exits/op")
}
