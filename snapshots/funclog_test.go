package snapshots

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seuss-go/seuss/unikernel"
)

const goldenLog = "testdata/funclog-v1.log"

// goldenRecords are a put of sampleFile's state and a tombstone of it.
func goldenRecords(t testing.TB) []byte {
	h, st, runs := sampleFile()
	b := beginRecord(nil, h.ID)
	var enc bytes.Buffer
	if _, err := Encode(&enc, &h, st, runs); err != nil {
		t.Fatal(err)
	}
	b = append(b, enc.Bytes()...)
	sealRecord(b, recPut, len(h.ID))
	return appendTombstone(b, h.ID)
}

// TestFunctionLogGolden: the record framing is what the comment in funclog.go draws,
// byte for byte, and the golden file still parses.
func TestFunctionLogGolden(t *testing.T) {
	b := goldenRecords(t)
	if *update {
		if err := os.WriteFile(goldenLog, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenLog)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("framing differs from %s", goldenLog)
	}
	state, _ := os.ReadFile(golden)
	id := "fn-sample"
	// The drawn layout, field by field.
	put := want[:16+len(id)+len(state)]
	if string(put[:4]) != "SFNR" || put[4] != 1 || put[5] != byte(len(id)) || put[6] != 0 || put[7] != 0 ||
		int(le32(put[8:])) != len(state) || string(put[16:16+len(id)]) != id || !bytes.Equal(put[16+len(id):], state) {
		t.Fatalf("put record header % x", put[:16])
	}
	del := want[len(put):]
	if len(del) != 16+len(id) || string(del[:4]) != "SFNR" || del[4] != 2 || le32(del[8:]) != 0 || string(del[16:]) != id {
		t.Fatalf("delete record % x", del)
	}
	var got []logRecord
	var offs []int
	n, err := scanRecords(want, func(off int, r logRecord) { got, offs = append(got, r), append(offs, off) })
	if err != nil || n != len(want) || len(got) != 2 || offs[1] != len(put) {
		t.Fatalf("scan: %d of %d bytes, %v, %d records", n, len(want), err, len(got))
	}
	if got[0].typ != recPut || got[0].id != id || !bytes.Equal(got[0].payload, state) || got[1].typ != recDelete || got[1].id != id || len(got[1].payload) != 0 {
		t.Fatalf("parsed %+v", got)
	}
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func TestParseRecordRefuses(t *testing.T) {
	good := goldenRecords(t)
	mod := func(f func(b []byte)) []byte { b := append([]byte(nil), good...); f(b); return b }
	putLen := len(good) - 16 - len("fn-sample")
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, errShortRecord},
		{"short header", good[:15], errShortRecord},
		{"short payload", good[:putLen-1], errShortRecord},
		{"bad magic", mod(func(b []byte) { b[0] = 'X' }), errBadRecord},
		{"unknown type", mod(func(b []byte) { b[4] = 3 }), errBadRecord},
		{"no id", mod(func(b []byte) { b[5] = 0 }), errBadRecord},
		{"reserved byte", mod(func(b []byte) { b[7] = 1 }), errBadRecord},
		{"huge length", mod(func(b []byte) { b[11] = 0xff }), errBadRecord},
		{"flipped payload byte", mod(func(b []byte) { b[200] ^= 1 }), errBadRecord},
		{"flipped id byte", mod(func(b []byte) { b[17] ^= 1 }), errBadRecord},
		{"flipped crc", mod(func(b []byte) { b[12] ^= 1 }), errBadRecord},
		{"tombstone with payload", mod(func(b []byte) { b[4] = recDelete }), errBadRecord},
	} {
		if _, err := parseRecord(tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// FuzzFunctionLog: segments are untrusted input. Scanning never panics, stops inside the
// data, and every record it accepts frames back to the same bytes.
func FuzzFunctionLog(f *testing.F) {
	good := goldenRecords(f)
	f.Add(good)
	f.Add(good[:40])
	f.Add(appendTombstone(nil, "fn-x"))
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := scanRecords(data, func(off int, r logRecord) {
			b := beginRecord(nil, r.id)
			b = append(b, r.payload...)
			sealRecord(b, r.typ, len(r.id))
			if !bytes.Equal(b, data[off:off+r.n]) {
				t.Fatalf("record at %d frames differently", off)
			}
		})
		if n > len(data) || (err == nil) != (n == len(data)) {
			t.Fatalf("scan stopped at %d of %d: %v", n, len(data), err)
		}
	})
}

// testStore opens a store with a runtime snapshot (no memory pages): function snapshots
// over it hold one data page each.
func testStore(t *testing.T, dir string, log *slog.Logger) (*Store, *RuntimeSnapshot) {
	t.Helper()
	s, err := OpenStore(dir, 1<<40, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	h, _, _ := sampleFile()
	if r := s.Runtime(h.Kind, h.RootDigest); r != nil {
		return s, r
	}
	_, st, _ := sampleFile()
	r, err := s.PutRuntime(Header{Kind: h.Kind, RootDigest: h.RootDigest}, st, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, r
}

func testPage(v byte) []byte { return bytes.Repeat([]byte{v}, unikernel.PageSize) }

func putFn(t *testing.T, s *Store, r *RuntimeSnapshot, id string, v byte) *FunctionSnapshot {
	t.Helper()
	h, st, _ := sampleFile()
	h.ID = id
	f, err := s.PutFunction(h, r, st, []PendingRun{{PageRun: unikernel.PageRun{Addr: 0x500000, Pages: 1}, Data: testPage(v)}})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// pageOf is the value of the one page a test function snapshot holds (0: none cached).
func pageOf(s *Store, id string) byte {
	f, err := s.Inspect(id)
	if err != nil {
		return 0
	}
	for v := 1; v < 256; v++ {
		if f.Runs[0].Hashes[0] == sha256.Sum256(testPage(byte(v))) {
			return byte(v)
		}
	}
	return 0
}

func functionIDs(s *Store) string {
	var ids []string
	for _, e := range s.List() {
		if e.Type == TypeFunction {
			ids = append(ids, e.ID)
		}
	}
	return strings.Join(ids, ",")
}

func segments(t *testing.T, dir string) []string {
	segs, err := filepath.Glob(filepath.Join(dir, "functions", "seg-*.log"))
	if err != nil {
		t.Fatal(err)
	}
	return segs
}

func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// TestFunctionLogReplay: the last record of an id wins, a tombstone deletes, recency
// survives a restart, and sizes are the records'.
func TestFunctionLogReplay(t *testing.T) {
	dir := t.TempDir()
	s, r := testStore(t, dir, nil)
	putFn(t, s, r, "fn-a", 1)
	putFn(t, s, r, "fn-b", 2)
	a := putFn(t, s, r, "fn-a", 3)
	putFn(t, s, r, "fn-c", 4)
	if !s.RemoveFunction("fn-b") {
		t.Fatal("fn-b not removed")
	}
	s.Release(s.Acquire("fn-a")) // a hit: fn-a is the most recent
	if got := functionIDs(s); got != "fn-a,fn-c" {
		t.Fatalf("before restart: %s", got)
	}
	if e := s.List()[1]; e.StateBytes != a.rec.n || e.StateBytes != int64(16+len("fn-a"))+a.File.Size {
		t.Fatalf("state bytes %d, record %d", e.StateBytes, a.rec.n)
	}
	used, _, _ := s.Usage()
	s.Close()
	if segs := segments(t, dir); len(segs) != 1 {
		t.Fatalf("segments %v", segs)
	}

	s, _ = testStore(t, dir, nil)
	// Recency is the records' (a hit in memory is not logged): c was made last.
	if got := functionIDs(s); got != "fn-c,fn-a" {
		t.Fatalf("after restart: %s", got)
	}
	if pageOf(s, "fn-a") != 3 || pageOf(s, "fn-c") != 4 {
		t.Fatalf("fn-a holds page %d, fn-c %d", pageOf(s, "fn-a"), pageOf(s, "fn-c"))
	}
	if u, _, n := s.Usage(); u != used || n != 2 {
		t.Fatalf("usage %d of %d snapshots, was %d", u, n, used)
	}
	if _, err := s.Inspect("fn-b"); err == nil {
		t.Fatal("deleted fn-b inspected")
	}
}

// TestFunctionLogTornTail: a record cut short by a crash is dropped, the segment cut back
// to the record before it, and the store appends after that.
func TestFunctionLogTornTail(t *testing.T) {
	dir := t.TempDir()
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	s, r := testStore(t, dir, log)
	a := putFn(t, s, r, "fn-a", 1)
	putFn(t, s, r, "fn-b", 2)
	s.Close()
	seg := segments(t, dir)[0]
	good := a.rec.off + a.rec.n
	if err := os.Truncate(seg, fileSize(t, seg)-7); err != nil {
		t.Fatal(err)
	}

	s, r = testStore(t, dir, log)
	if got := functionIDs(s); got != "fn-a" {
		t.Fatalf("after a torn record: %s", got)
	}
	if n := fileSize(t, seg); n != good {
		t.Fatalf("segment of %d bytes, want %d", n, good)
	}
	if !strings.Contains(logBuf.String(), "damaged record") {
		t.Fatalf("no warning: %s", logBuf.String())
	}
	putFn(t, s, r, "fn-c", 3)
	s.Close()
	s, _ = testStore(t, dir, log)
	if got := functionIDs(s); got != "fn-c,fn-a" || pageOf(s, "fn-c") != 3 {
		t.Fatalf("after appending to a cut segment: %s", got)
	}
}

// TestFunctionLogCorrupt: a damaged record in a sealed segment ends that segment's
// replay (its tail is dead: the segment is compacted) while later segments replay; a
// record whose framing is whole but whose state is not is dropped and a tombstone logged.
func TestFunctionLogCorrupt(t *testing.T) {
	defer func(n int64) { segmentMax = n }(segmentMax)
	segmentMax = 8 << 10 // four records a segment
	dir := t.TempDir()
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	s, r := testStore(t, dir, log)
	a := putFn(t, s, r, "fn-a", 1)
	b := putFn(t, s, r, "fn-b", 2)
	c := putFn(t, s, r, "fn-c", 3)
	if a.rec.seg != b.rec.seg || b.rec.seg != c.rec.seg {
		t.Fatalf("a, b and c in segments %d %d %d", a.rec.seg.seq, b.rec.seg.seq, c.rec.seg.seq)
	}
	for a.rec.seg == s.segs[len(s.segs)-1] {
		putFn(t, s, r, "fn-d", 4)
	}
	e := putFn(t, s, r, "fn-e", 5)
	// A record with good framing around a bad state.
	bad := beginRecord(nil, "fn-bad")
	bad = append(bad, "SEUSSNAP but not a state file"...)
	sealRecord(bad, recPut, len("fn-bad"))
	s.logMu.Lock()
	if _, _, err := s.appendLocked(bad); err != nil {
		t.Fatal(err)
	}
	s.logMu.Unlock()
	s.Close()
	first := filepath.Join(dir, "functions", segName(a.rec.seg.seq))
	size := fileSize(t, first)
	f, err := os.OpenFile(first, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{'X'}, b.rec.off+300)
	f.Close()

	for i := 0; i < 2; i++ {
		s, _ = testStore(t, dir, log)
		// b, c and d were behind the damaged record.
		if got := functionIDs(s); got != "fn-e,fn-a" || pageOf(s, "fn-e") != 5 || pageOf(s, "fn-a") != 1 {
			t.Fatalf("after a damaged record (open %d): %s", i, got)
		}
		if _, err := os.Stat(first); !os.IsNotExist(err) {
			t.Fatalf("segment with a dead tail (%d bytes) kept: %v", size, err)
		}
		if i == 0 && (!strings.Contains(logBuf.String(), "damaged record") || !strings.Contains(logBuf.String(), "id=fn-bad")) {
			t.Fatalf("warnings: %s", logBuf.String())
		}
		// fn-bad is deleted in the log: not decoded (nor warned of) again.
		tomb := false
		data, _ := os.ReadFile(s.segPath(s.segs[len(s.segs)-1]))
		scanRecords(data, func(_ int, r logRecord) { tomb = tomb || (r.typ == recDelete && r.id == "fn-bad") })
		if !tomb {
			t.Fatal("no tombstone of fn-bad")
		}
		if i == 1 && strings.Count(logBuf.String(), "id=fn-bad") != 1 {
			t.Fatalf("fn-bad decoded again: %s", logBuf.String())
		}
		s.Close()
	}
	if e.rec.seg == a.rec.seg {
		t.Fatal("fn-e in the first segment")
	}
}

// TestFunctionLogCompaction: a sealed segment at most half live is rewritten into the
// active one and deleted; live records keep their state, deletes stay deleted.
func TestFunctionLogCompaction(t *testing.T) {
	defer func(n int64) { segmentMax = n }(segmentMax)
	segmentMax = 12 << 10 // five records a segment
	dir := t.TempDir()
	s, r := testStore(t, dir, nil)
	var first []string
	for i := 0; s.segs[0] == s.segs[len(s.segs)-1]; i++ {
		id := "fn-1-" + string(rune('a'+i))
		putFn(t, s, r, id, byte(1+i))
		first = append(first, id)
	}
	if len(first) < 4 {
		t.Fatalf("%d records sealed the first segment", len(first))
	}
	seg1 := s.segPath(s.segs[0])
	// The second segment: a tombstone of a put in the first (which stays: most of it
	// live), then puts deleted again, so that it compacts while the first is older.
	s.RemoveFunction(first[0])
	// fn-pin holds first[0]'s page: were first[0] replayed, it would load.
	putFn(t, s, r, "fn-pin", 1)
	seg2 := s.segs[1]
	for i := 0; seg2 == s.segs[len(s.segs)-1]; i++ {
		putFn(t, s, r, "fn-2", 100)
		s.RemoveFunction("fn-2")
	}
	if _, err := os.Stat(s.segPath(seg2)); !os.IsNotExist(err) {
		t.Fatalf("dead segment kept: %v", err)
	}
	if _, err := os.Stat(seg1); err != nil {
		t.Fatalf("live segment deleted: %v", err)
	}
	// The tombstone of first[0] moved with the second segment's live records.
	s.Close()
	s, r = testStore(t, dir, nil)
	if f := s.funcs[first[0]]; f != nil {
		t.Fatalf("%s back after compacting the segment of its tombstone", first[0])
	}
	if len(s.funcs) != len(first) {
		t.Fatalf("%d function snapshots", len(s.funcs))
	}
	// Now most of the first segment dies: it compacts on the next put.
	for _, id := range first[1 : len(first)-1] {
		s.RemoveFunction(id)
	}
	keep := first[len(first)-1]
	putFn(t, s, r, "fn-3", 200)
	if _, err := os.Stat(seg1); !os.IsNotExist(err) {
		t.Fatalf("half-dead segment kept: %v", err)
	}
	if f := s.funcs[keep]; f.rec.seg == nil || f.rec.seg.seq <= 2 {
		t.Fatalf("%s not moved", keep)
	}
	s.Close()

	s, _ = testStore(t, dir, nil)
	if got := functionIDs(s); got != "fn-3,fn-pin,"+keep {
		t.Fatalf("after compaction and restart: %s", got)
	}
	if pageOf(s, keep) != byte(len(first)) || pageOf(s, "fn-3") != 200 {
		t.Fatalf("pages %d %d", pageOf(s, keep), pageOf(s, "fn-3"))
	}
	var live, size int64
	for _, g := range s.segs {
		live, size = live+g.live, size+g.size
	}
	if want := s.funcs[keep].rec.n + s.funcs["fn-3"].rec.n + s.funcs["fn-pin"].rec.n; live != want || size < live {
		t.Fatalf("live %d bytes of %d, want %d", live, size, want)
	}
}

// TestFunctionLogReadOnly: a read-only store (`snapshot ls` while an invoker runs) lists
// whole records, leaves a record being appended out, and writes nothing.
func TestFunctionLogReadOnly(t *testing.T) {
	dir := t.TempDir()
	s, r := testStore(t, dir, nil)
	putFn(t, s, r, "fn-a", 1)
	// The next record, written in two halves as a concurrent reader may see it.
	h, st, _ := sampleFile()
	h.ID = "fn-b"
	h.ParentID, h.ParentDigest = r.ID, r.File.Digest
	h.Created = time.Now().UTC()
	rec := beginRecord(nil, h.ID)
	var enc bytes.Buffer
	if _, err := Encode(&enc, &h, st, nil); err != nil {
		t.Fatal(err)
	}
	rec = append(rec, enc.Bytes()...)
	sealRecord(rec, recPut, len(h.ID))
	s.logMu.Lock()
	defer s.logMu.Unlock()
	s.active.Write(rec[:len(rec)/2])
	seg := segments(t, dir)[0]
	size := fileSize(t, seg)

	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ro, err := OpenStoreReadOnly(dir)
			if err != nil {
				t.Error(err)
				return
			}
			defer ro.Close()
			if got := functionIDs(ro); got != "fn-a" {
				t.Errorf("read-only store lists %s", got)
			}
			if _, err := ro.Inspect("fn-a"); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if fileSize(t, seg) != size {
		t.Fatal("a read-only open changed the segment")
	}
	s.active.Write(rec[len(rec)/2:])
	ro, err := OpenStoreReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if got := functionIDs(ro); got != "fn-b,fn-a" {
		t.Fatalf("once the record is whole: %s", got)
	}
}

// TestFunctionLogLegacy: state files of stores before the log still load; removing one
// deletes its file, a new put of its id supersedes it, and the log wins over a file.
func TestFunctionLogLegacy(t *testing.T) {
	dir := t.TempDir()
	s, r := testStore(t, dir, nil)
	fa, fb, fc := putFn(t, s, r, "fn-a", 1), putFn(t, s, r, "fn-b", 2), putFn(t, s, r, "fn-c", 3)
	s.Close()
	// Turn the records into state files of their own, as an older store wrote them.
	seg := segments(t, dir)[0]
	data, _ := os.ReadFile(seg)
	for _, f := range []*FunctionSnapshot{fa, fb, fc} {
		rec, err := parseRecord(data[f.rec.off:])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "functions", f.ID+".snap"), rec.payload, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Remove(seg)
	legacy := func(id string) bool {
		_, err := os.Stat(filepath.Join(dir, "functions", id+".snap"))
		return err == nil
	}

	s, r = testStore(t, dir, nil)
	if got := functionIDs(s); len(got) != len("fn-a,fn-b,fn-c") || pageOf(s, "fn-a") != 1 || pageOf(s, "fn-b") != 2 || pageOf(s, "fn-c") != 3 {
		t.Fatalf("state files load as %s", got)
	}
	// By id: the three were made within a clock tick or two, so their order by recency
	// is not fixed (and their sizes can differ by the digits of the creation time).
	for _, e := range s.List() {
		if e.ID == fa.ID && e.StateBytes != fa.File.Size {
			t.Fatalf("state bytes %d, file %d", e.StateBytes, fa.File.Size)
		}
	}
	s.RemoveFunction("fn-a")
	putFn(t, s, r, "fn-b", 20)
	if legacy("fn-a") || legacy("fn-b") || !legacy("fn-c") {
		t.Fatal("state files not deleted with their snapshots")
	}
	s.Close()
	// A state file next to a record of its id (a crash between the two): the record wins.
	os.WriteFile(filepath.Join(dir, "functions", "fn-b.snap"), data[fb.rec.off+16+4:fb.rec.off+fb.rec.n], 0o644)
	s, _ = testStore(t, dir, nil)
	if got := functionIDs(s); got != "fn-b,fn-c" || pageOf(s, "fn-b") != 20 || pageOf(s, "fn-c") != 3 || legacy("fn-b") {
		t.Fatalf("after restart: %s, fn-b holds %d", got, pageOf(s, "fn-b"))
	}
}
