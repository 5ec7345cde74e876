package sharing

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func page(b byte) []byte { return bytes.Repeat([]byte{b}, PageSize) }

func TestPageStoreDedupAndReuse(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenPageStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	a1, ha, _ := s.Put(page(1))
	a2, _, _ := s.Put(page(1))
	b, hb, _ := s.Put(page(2))
	if a1 != a2 || a1 == b {
		t.Fatalf("slots %d %d %d: identical pages must share a slot", a1, a2, b)
	}
	if st := s.Stats(); st.Live != 2 || st.Slots != 2 {
		t.Fatalf("stats %+v", st)
	}
	if priv, shared, _ := s.Attribution([]uint32{a1, b}); priv != PageSize || shared != PageSize {
		t.Fatalf("attribution %d private, %d shared", priv, shared)
	}
	got := make([]byte, 2*PageSize)
	if err := s.ReadRun(got, 0); err != nil || !bytes.Equal(got[:PageSize], page(1)) || !bytes.Equal(got[PageSize:], page(2)) {
		t.Fatalf("read back: %v", err)
	}
	s.Release([]uint32{a1, a2})
	c, _, _ := s.Put(page(3)) // reuses the freed slot
	if c != a1 {
		t.Fatalf("freed slot %d not reused (got %d)", a1, c)
	}
	s.Close()

	// Reopen: owners claim their slots; unclaimed ones are swept.
	s, err = OpenPageStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Ref([]uint32{a1}, [][32]byte{ha}) {
		t.Fatal("claimed a slot with the hash of the page it used to hold")
	}
	if !s.Ref([]uint32{b}, [][32]byte{hb}) {
		t.Fatal("could not claim a live slot")
	}
	s.Sweep()
	if st := s.Stats(); st.Live != 1 || st.Free != 1 {
		t.Fatalf("after sweep %+v", st)
	}
	if err := s.Verify(b, hb); err != nil {
		t.Fatal(err)
	}
	// A damaged page is found.
	f, _ := os.OpenFile(filepath.Join(dir, "pages.dat"), os.O_RDWR, 0)
	f.WriteAt([]byte{9}, int64(b)*PageSize+100)
	f.Close()
	if err := s.Verify(b, hb); !errors.Is(err, ErrBadPage) {
		t.Fatalf("damaged page: %v", err)
	}
	// Trim cuts the free tail.
	s.Release([]uint32{b})
	if freed, err := s.Trim(); err != nil || freed != 2*PageSize {
		t.Fatalf("trim freed %d: %v", freed, err)
	}
	if st, _ := os.Stat(filepath.Join(dir, "pages.dat")); st.Size() != 0 {
		t.Fatalf("pages.dat is %d bytes after trim", st.Size())
	}
}

func TestRangeUsage(t *testing.T) {
	u, err := RangeUsage(0, ^uintptr(0))
	if err != nil {
		t.Fatal(err)
	}
	if u.Rss <= 0 || u.Private() <= 0 {
		t.Fatalf("usage of the whole process: %+v", u)
	}
}

// PutPages is Put page by page: duplicates within the call and with stored pages share a
// slot, freed slots are reused (a free slot whose page is put again is revived, not
// overwritten), every page reads back and survives a reopen.
func TestPutPagesLikePut(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenPageStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	x, _, _ := s.Put(page(9))
	y, _, _ := s.Put(page(8))
	s.Release([]uint32{x, y}) // both free, page 9 still findable
	var in []byte
	for _, b := range []byte{9, 1, 2, 1, 3, 4, 4} {
		in = append(in, page(b)...)
	}
	slots, hashes, err := s.PutPages(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(slots) != 7 || slots[1] != slots[3] || slots[5] != slots[6] || slots[0] != x {
		t.Fatalf("slots %v (page 9 was in slot %d)", slots, x)
	}
	if st := s.Stats(); st.Live != 5 {
		t.Fatalf("stats %+v, want 5 live", st)
	}
	check := func(s *PageStore) {
		for i, sl := range slots {
			if err := s.Verify(sl, hashes[i]); err != nil {
				t.Fatalf("page %d slot %d: %v", i, sl, err)
			}
			got := make([]byte, PageSize)
			if err := s.ReadRun(got, sl); err != nil || !bytes.Equal(got, in[i*PageSize:(i+1)*PageSize]) {
				t.Fatalf("page %d slot %d read back wrong (%v)", i, sl, err)
			}
		}
	}
	check(s)
	if sl, _, _ := s.Put(page(4)); sl != slots[5] {
		t.Fatalf("Put after PutPages: slot %d, want %d", sl, slots[5])
	}
	s.Release(slots)
	if s.Refs(slots[5]) != 1 || s.Refs(slots[1]) != 0 {
		t.Fatalf("refs %d %d", s.Refs(slots[5]), s.Refs(slots[1]))
	}
	s.Close()
	s, err = OpenPageStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Ref(slots, hashes) {
		t.Fatal("reopened store lost pages")
	}
	check(s)
	if _, _, err := s.PutPages(make([]byte, 100)); err == nil {
		t.Fatal("a partial page was accepted")
	}
}

// A call that revives a free slot's page and also stores a new page never puts the new
// page in that slot (which would store the revived page a second time), whichever index
// finds the revived page.
func TestPutPagesRevivesBeforeAllocating(t *testing.T) {
	for _, fast := range []bool{true, false} {
		s, err := OpenPageStore(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if !fast {
			s.fastHash = nil
		}
		x, _, _ := s.Put(page(1))
		y, _, _ := s.Put(page(2))
		s.Release([]uint32{x, y}) // free, y the next to be taken, both findable
		slots, _, err := s.PutPages(append(page(3), page(2)...))
		if err != nil {
			t.Fatal(err)
		}
		if slots[1] != y || slots[0] != x {
			t.Fatalf("fast index %v: slots %v, want page 2 revived in %d and page 3 in %d", fast, slots, y, x)
		}
		if st := s.Stats(); st.Slots != 2 || st.Live != 2 {
			t.Fatalf("fast index %v: %+v", fast, st)
		}
		s.Close()
	}
}
