package sharing

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// benchMix is a new function's snapshot as the page store sees it: calls of perCall pages
// of which about one in ten is new, the rest already stored (pages it shares with other
// functions of the same code). Owners are dropped in the order they came once window of
// them are held, as the snapshot store's LRU drops function snapshots.
const (
	benchPerCall = 150
	benchNewEach = 15
	benchBase    = 4096 // pages already stored and held
	benchWindow  = 64
	benchCalls   = 32 // prebuilt calls, used in turn (19 MiB: not all in cache)
)

type benchStore struct {
	s     *PageStore
	calls [][]byte // stored pages from random stretches of the base, a new one every tenth
	seq   uint64
	held  [][]uint32
}

func newBenchStore(b *testing.B) *benchStore {
	s, err := OpenPageStore(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	rng := rand.New(rand.NewPCG(1, 2))
	fill := func(n int) []byte {
		p := make([]byte, n*PageSize)
		for i := 0; i < len(p); i += 8 {
			binary.LittleEndian.PutUint64(p[i:], rng.Uint64())
		}
		return p
	}
	base := fill(benchBase)
	if _, _, err := s.PutPages(base); err != nil {
		b.Fatal(err)
	}
	bs := &benchStore{s: s}
	for range benchCalls {
		start := rng.IntN(benchBase - benchPerCall)
		call := append([]byte(nil), base[start*PageSize:(start+benchPerCall)*PageSize]...)
		for j := 0; j < benchNewEach; j++ {
			at := j * (benchPerCall / benchNewEach)
			copy(call[at*PageSize:(at+1)*PageSize], fill(1))
		}
		bs.calls = append(bs.calls, call)
	}
	return bs
}

// next returns the next call's pages, its new pages made unique by a counter.
func (bs *benchStore) next() []byte {
	call := bs.calls[bs.seq%benchCalls]
	for j := 0; j < benchNewEach; j++ {
		bs.seq++
		at := j * (benchPerCall / benchNewEach)
		binary.LittleEndian.PutUint64(call[at*PageSize:], bs.seq)
	}
	return call
}

func (bs *benchStore) hold(slots []uint32) {
	bs.held = append(bs.held, slots)
	if len(bs.held) > benchWindow {
		bs.s.Release(bs.held[0])
		bs.held = bs.held[1:]
	}
}

func BenchmarkPutPages(b *testing.B) {
	bs := newBenchStore(b)
	b.SetBytes(benchPerCall * PageSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		slots, _, err := bs.s.PutPages(bs.next())
		if err != nil {
			b.Fatal(err)
		}
		bs.hold(slots)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchPerCall), "ns/page")
}
