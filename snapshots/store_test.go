package snapshots

import (
	"bytes"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/seuss-go/seuss/sharing"
	"github.com/seuss-go/seuss/unikernel"
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

// TestAcquireKeepsPages: the pages of a function snapshot a restore has acquired stay in
// the page store, byte for byte, while the snapshot is replaced (two C paths of one action
// captured at once), removed or evicted and other pages are stored meanwhile; Release
// gives them back. Before Acquire, the replaced snapshot's slots were freed at once and
// the next PutPages wrote its new pages there: a W restore copying the old snapshot
// loaded another snapshot's pages (TestConcurrent's guest page fault, 1 run in 10-20).
func TestAcquireKeepsPages(t *testing.T) {
	s, err := OpenStore(t.TempDir(), 1<<40, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	parent := fakeParent(s)
	parent.view = make([]byte, 0x800000) // a zero image: every page put differs from it
	h, st, _ := sampleFile()
	const n = 4
	pages := func(seed byte) []byte {
		b := make([]byte, n*sharing.PageSize)
		for i := range b {
			b[i] = seed + byte(i/sharing.PageSize)
		}
		return b
	}
	put := func(id string, seed byte) *FunctionSnapshot {
		t.Helper()
		hh := h
		hh.ID = id
		f, err := s.PutFunction(hh, parent, st, []PendingRun{{PageRun: unikernel.PageRun{Addr: 0x400000, Pages: n}, Data: pages(seed)}})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	// holds checks that f's slots still hold the pages it was stored with.
	holds := func(what string, f *FunctionSnapshot, seed byte) {
		t.Helper()
		got := make([]byte, n*sharing.PageSize)
		if err := s.Pages().Copy(got, f.File.Runs[0].Slots); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, pages(seed)) {
			t.Fatalf("%s: the acquired snapshot's slots %v hold other pages", what, f.File.Runs[0].Slots)
		}
	}
	live := func() uint64 { return s.Pages().Stats().Live }

	// Replaced while acquired.
	f1 := put("fn-a", 1)
	if got := s.Acquire("fn-a"); got != f1 {
		t.Fatalf("Acquire: %p, want %p", got, f1)
	}
	f2 := put("fn-a", 10) // replaces f1; its new pages must not take f1's slots
	put("fn-b", 20)
	holds("replaced", f1, 1)
	if live() != 3*n {
		t.Fatalf("%d live pages while the replaced snapshot is acquired, want %d", live(), 3*n)
	}
	s.Release(f1)
	if live() != 2*n {
		t.Fatalf("%d live pages after Release, want %d", live(), 2*n)
	}

	// Removed while acquired (twice: released at the last Release only).
	if s.Acquire("fn-a") != f2 || s.Acquire("fn-a") != f2 {
		t.Fatal("Acquire did not return the replacement")
	}
	if !s.RemoveFunction("fn-a") {
		t.Fatal("RemoveFunction: none")
	}
	if s.Acquire("fn-a") != nil {
		t.Fatal("Acquire of a removed snapshot")
	}
	put("fn-c", 30)
	s.Release(f2)
	put("fn-d", 40)
	holds("removed", f2, 10)
	s.Release(f2)
	if live() != 3*n {
		t.Fatalf("%d live pages after the last Release, want %d", live(), 3*n)
	}

	// Evicted while acquired: the budget holds only the newest snapshot.
	f3 := s.Acquire("fn-b")
	s.mu.Lock()
	s.budget = 1
	s.mu.Unlock()
	put("fn-e", 50)
	if _, _, k := s.Usage(); k != 0 {
		t.Fatalf("%d snapshots left under a 1-byte budget", k)
	}
	put("fn-f", 60)
	holds("evicted", f3, 20)
	s.Release(f3)
}
