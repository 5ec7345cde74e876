package sharing

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// fakeCollidingHash is a fake fast hash under which every page collides with every other:
// a failure a guest cannot cause against the seeded maphash, caused here to see that a
// collision never shares a slot.
func fakeCollidingHash([]byte) uint64 { return 7 }

func openStore(t *testing.T) *PageStore {
	t.Helper()
	s, err := OpenPageStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func hits(s *PageStore) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fastHits
}

// checkFastIndex checks the fast index's invariants: each entry names a slot byHash finds
// under the slot's hash, whose bytes have that fast hash; at most one entry per slot.
func checkFastIndex(t *testing.T, s *PageStore) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.byFast) > len(s.hashes) {
		t.Fatalf("fast index of %d entries for %d slots", len(s.byFast), len(s.hashes))
	}
	for f, sl := range s.byFast {
		if int(sl) >= len(s.hashes) || s.fastOf[sl] != f {
			t.Fatalf("fast entry %x names slot %d (of %d) whose fast hash is another", f, sl, len(s.hashes))
		}
		if cur, ok := s.byHash[s.hashes[sl]]; !ok || cur != sl {
			t.Fatalf("fast entry names slot %d, which byHash does not find", sl)
		}
		pg := s.view[int(sl)*PageSize : (int(sl)+1)*PageSize]
		if s.fastHash(pg) != f || sha256.Sum256(pg) != s.hashes[sl] {
			t.Fatalf("slot %d does not hold the page its fast entry and hash name", sl)
		}
	}
}

// A page the fast index finds gets the slot and hash the SHA-256 look-up gives: the same
// operations on a store without the fast index give the same slots and hashes, and the
// hashes are the pages' SHA-256. Pages come from a small set (so they repeat within
// calls, across calls and after being freed), calls are released at random.
func TestFastIndexAgreesWithSHA256(t *testing.T) {
	fast, slow := openStore(t), openStore(t)
	slow.fastHash = nil // SHA-256 only, as before the fast index
	rng := rand.New(rand.NewPCG(3, 4))
	set := make([][]byte, 40)
	for i := range set {
		set[i] = page(byte(i + 1))
		binary.LittleEndian.PutUint64(set[i][i*8:], rng.Uint64())
	}
	var held [][]uint32
	for round := range 300 {
		var in []byte
		for range 1 + rng.IntN(12) {
			in = append(in, set[rng.IntN(len(set))]...)
		}
		fs, fh, err := fast.PutPages(in)
		if err != nil {
			t.Fatal(err)
		}
		ss, sh, err := slow.PutPages(in)
		if err != nil {
			t.Fatal(err)
		}
		for i := range fs {
			want := sha256.Sum256(in[i*PageSize : (i+1)*PageSize])
			if fs[i] != ss[i] || fh[i] != sh[i] || fh[i] != want {
				t.Fatalf("round %d page %d: fast index gave slot %d hash %x, SHA-256 slot %d hash %x (want hash %x)", round, i, fs[i], fh[i][:4], ss[i], sh[i][:4], want[:4])
			}
		}
		held = append(held, fs)
		if rng.IntN(3) == 0 {
			k := rng.IntN(len(held))
			fast.Release(held[k])
			slow.Release(held[k])
			held = append(held[:k], held[k+1:]...)
		}
		if round == 150 { // Sweep forgets free slots' pages in both indexes
			for _, h := range held {
				fast.Release(h)
				slow.Release(h)
			}
			held = nil
			fast.Sweep()
			slow.Sweep()
			checkFastIndex(t, fast)
		}
	}
	checkFastIndex(t, fast)
	if hits(fast) == 0 || hits(slow) != 0 {
		t.Fatalf("fast index hits: %d with it, %d without", hits(fast), hits(slow))
	}
	if a, b := fast.Stats(), slow.Stats(); a != b {
		t.Fatalf("stats %+v with the fast index, %+v without", a, b)
	}
}

// A page whose fast hash collides with a stored page's but whose bytes differ is hashed
// and stored in its own slot; the stored page stays where it was.
func TestFastIndexCollisionFallsBack(t *testing.T) {
	s := openStore(t)
	s.fastHash = fakeCollidingHash
	a, ha, err := s.Put(page(1))
	if err != nil {
		t.Fatal(err)
	}
	b, hb, err := s.Put(page(2))
	if err != nil {
		t.Fatal(err)
	}
	if a == b || hb != sha256.Sum256(page(2)) || hits(s) != 0 {
		t.Fatalf("colliding page got slot %d (other page's %d), hash %x, %d fast hits", b, a, hb[:4], hits(s))
	}
	// Page 1 again: its fast entry was replaced by page 2's; found by SHA-256, same slot.
	if a2, ha2, _ := s.Put(page(1)); a2 != a || ha2 != ha {
		t.Fatalf("page 1 again: slot %d hash %x, want %d %x", a2, ha2[:4], a, ha[:4])
	}
	// Now the entry is page 1's: page 1 is a fast hit, page 2 is not, and neither moves.
	slots, hashes, err := s.PutPages(append(page(1), page(2)...))
	if err != nil {
		t.Fatal(err)
	}
	if slots[0] != a || slots[1] != b || hashes[0] != ha || hashes[1] != hb || hits(s) != 1 {
		t.Fatalf("slots %v (want %d %d), %d fast hits (want 1)", slots, a, b, hits(s))
	}
	checkFastIndex(t, s)
	for i, sl := range slots {
		if err := s.Verify(sl, hashes[i]); err != nil {
			t.Fatal(err)
		}
	}
}

// A freed slot reused for another page is found with that page's hash, never the old
// one's; the old page, put again, gets a slot and hash of its own.
func TestFastIndexReusedSlot(t *testing.T) {
	for _, name := range []string{"maphash", "colliding"} {
		t.Run(name, func(t *testing.T) {
			s := openStore(t)
			if name == "colliding" {
				s.fastHash = fakeCollidingHash
			}
			a, _, _ := s.Put(page(1))
			keep, _, _ := s.Put(page(3))
			s.Release([]uint32{a}) // free, still findable
			b, hb, _ := s.Put(page(2))
			if b != a || hb != sha256.Sum256(page(2)) {
				t.Fatalf("page 2 in slot %d (freed %d), hash %x", b, a, hb[:4])
			}
			before := hits(s)
			b2, hb2, _ := s.Put(page(2))
			if b2 != b || hb2 != hb || hits(s) != before+1 {
				t.Fatalf("page 2 again: slot %d hash %x (want %d %x), fast hits %d -> %d", b2, hb2[:4], b, hb[:4], before, hits(s))
			}
			a2, ha2, _ := s.Put(page(1))
			if a2 == b || a2 == keep || ha2 != sha256.Sum256(page(1)) {
				t.Fatalf("page 1 after its slot was reused: slot %d hash %x", a2, ha2[:4])
			}
			checkFastIndex(t, s)
			for _, c := range []struct {
				sl uint32
				b  byte
			}{{a2, 1}, {b, 2}, {keep, 3}} {
				got := make([]byte, PageSize)
				if err := s.ReadRun(got, c.sl); err != nil || !bytes.Equal(got, page(c.b)) {
					t.Fatalf("slot %d does not hold page %d (%v)", c.sl, c.b, err)
				}
			}
		})
	}
}

// A pages.dat cut short from outside makes the comparison fault: the page is then found by
// SHA-256 as without the fast index, not a crash; Trim forgets what it cuts off.
func TestFastIndexTruncatedFile(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenPageStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	slots, hashes, err := s.PutPages(append(page(1), page(2)...))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(dir, "pages.dat"), PageSize); err != nil {
		t.Fatal(err)
	}
	for range 2 { // slot 1 is past the end now (and found by SHA-256 again each time)
		sl, h, err := s.Put(page(2))
		if err != nil || sl != slots[1] || h != hashes[1] || hits(s) != 0 {
			t.Fatalf("page 2 after truncation: slot %d hash %x err %v, %d fast hits", sl, h[:4], err, hits(s))
		}
	}
	if sl, _, _ := s.Put(page(1)); sl != slots[0] || hits(s) != 1 {
		t.Fatalf("page 1: slot %d, %d fast hits", sl, hits(s))
	}

	// Trim: the tail's fast entries go with it.
	s.Release([]uint32{slots[1], slots[1], slots[1]})
	if _, err := s.Trim(); err != nil {
		t.Fatal(err)
	}
	checkFastIndex(t, s)
	s.mu.Lock()
	n := len(s.byFast)
	s.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d fast entries after trim, want 1 (page 1's)", n)
	}
}

// Calls from several goroutines, sharing pages and releasing them, each get the SHA-256 of
// their pages and slots that hold them while referenced; in the end nothing is live and
// the index is consistent. Meant for -race.
func TestFastIndexConcurrent(t *testing.T) {
	s := openStore(t)
	shared := make([][]byte, 64)
	for i := range shared {
		shared[i] = page(byte(i))
		binary.LittleEndian.PutUint64(shared[i], uint64(i)*0x9e3779b97f4a7c15)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 5))
			var held [][]uint32
			for round := range 200 {
				var in []byte
				for j := range 8 {
					if j%4 == 3 { // a page of this goroutine's own
						p := page(0xee)
						binary.LittleEndian.PutUint64(p, uint64(g)<<32|uint64(round)<<8|uint64(j))
						in = append(in, p...)
					} else {
						in = append(in, shared[rng.IntN(len(shared))]...)
					}
				}
				slots, hashes, err := s.PutPages(in)
				if err != nil {
					errs <- err.Error()
					return
				}
				got := make([]byte, PageSize)
				for i, sl := range slots {
					p := in[i*PageSize : (i+1)*PageSize]
					if hashes[i] != sha256.Sum256(p) {
						errs <- "a page's hash is not its SHA-256"
						return
					}
					if err := s.Copy(got, []uint32{sl}); err != nil || !bytes.Equal(got, p) {
						errs <- "a referenced slot does not hold its page"
						return
					}
				}
				held = append(held, slots)
				if len(held) > 3 {
					s.Release(held[0])
					held = held[1:]
				}
			}
			for _, h := range held {
				s.Release(h)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	if st := s.Stats(); st.Live != 0 || hits(s) == 0 {
		t.Fatalf("after all released: %+v, %d fast hits", st, hits(s))
	}
	checkFastIndex(t, s)
}
