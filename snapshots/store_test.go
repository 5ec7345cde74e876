package snapshots

import (
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// fakeParent registers a runtime snapshot without a memory file: enough for function
// snapshots whose runs are all zero (PutFunction compares data pages with the parent's).
func fakeParent(s *Store) *RuntimeSnapshot {
	h, _, _ := sampleFile()
	r := &RuntimeSnapshot{ID: h.ParentID, File: &File{Header: Header{ID: h.ParentID, Type: TypeRuntime, Kind: h.Kind, RootDigest: h.RootDigest}, Digest: h.ParentDigest}}
	s.mu.Lock()
	s.runtimes[r.ID] = r
	s.mu.Unlock()
	return r
}

// BenchmarkPutFunctionState: storing a function snapshot's state (~25 KB encoded, no
// data pages) from 2 writers, as the background goroutines of C paths do.
//
//	go test ./snapshots -run XXX -bench PutFunctionState -benchtime 3000x
func BenchmarkPutFunctionState(b *testing.B) {
	s, err := OpenStore(b.TempDir(), 1<<40, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	parent := fakeParent(s)
	h, st, _ := sampleFile()
	st.LibOS.Tmp.Nodes[1].Data = make([]byte, 18<<10)
	for i := range st.LibOS.Tmp.Nodes[1].Data {
		st.LibOS.Tmp.Nodes[1].Data[i] = byte(i * 7)
	}
	var n atomic.Int64
	b.SetParallelism(1)
	b.ReportAllocs()
	b.ResetTimer()
	c0 := cpuTime()
	defer func() { b.ReportMetric(float64(cpuTime()-c0)/1e3/float64(b.N), "cpu-us/op") }()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			hh := h
			hh.ID = fmt.Sprintf("fn-%040d", n.Add(1))
			f, err := s.PutFunction(hh, parent, st, []PendingRun{{}})
			if err != nil {
				b.Error(err)
				return
			}
			if f.File.Size < 20<<10 {
				b.Errorf("state of %d bytes", f.File.Size)
				return
			}
		}
	})
}
