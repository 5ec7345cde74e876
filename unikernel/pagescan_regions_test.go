package unikernel

import (
	"bytes"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// regionsGuest drives testdata/regions.c: its stdin and what it printed.
type regionsGuest struct {
	in  *io.PipeWriter
	mu  sync.Mutex
	out bytes.Buffer
}

func regionsConfig(root string) (Config, *regionsGuest) {
	g := &regionsGuest{}
	r, w := io.Pipe()
	g.in = w
	// A small guest: the test reads the whole image and compares it.
	return Config{Root: root, Memory: 256 << 20, AddressSpace: 512 << 20, Stdin: r, Stdout: lockedWriter{&g.mu, &g.out}, Stderr: lockedWriter{&g.mu, &g.out}}, g
}

// wait returns the addresses named in the first line printed that matches re.
func (g *regionsGuest) wait(t *testing.T, re string) map[string]uint64 {
	t.Helper()
	rx := regexp.MustCompile(re)
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
		g.mu.Lock()
		out := g.out.String()
		g.mu.Unlock()
		for _, l := range strings.Split(out, "\n") {
			if !rx.MatchString(l) {
				continue
			}
			addrs := map[string]uint64{}
			for _, f := range strings.Fields(l) {
				if k, v, ok := strings.Cut(f, "="); ok {
					a, err := strconv.ParseUint(strings.TrimPrefix(v, "0x"), 16, 64)
					if err != nil {
						t.Fatalf("%q: %v", l, err)
					}
					addrs[k] = a
				}
			}
			return addrs
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	t.Fatalf("no line matching %q; output:\n%s", re, g.out.String())
	return nil
}

// TestScansFindEveryRegion: after a restore, the guest writes a marker into a brk heap, an
// anonymous mapping, a thread's stack, a private file mapping of the runtime, fresh
// anonymous memory and a file mapped in this life, and the library OS writes it into a
// read(2) buffer: MemoryRuns stores each of those pages with the marker. The guest also
// writes it into a hole (unmapped memory its page tables still map): RecycleVM gives back
// a VM equal to the image byte for byte, twice in a row (the second life's pages are also
// the first life's, already the process's own).
func TestScansFindEveryRegion(t *testing.T) {
	requireKVM(t)
	root := testRoot(t, "regions")
	cfg, g := regionsConfig(root)
	uc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	if err := uc.Load([]string{"/regions"}); err != nil {
		t.Fatal(err)
	}
	if err := uc.Start(); err != nil {
		t.Fatal(err)
	}
	at := g.wait(t, "^regions ")
	st, memFile, img, f := captureImage(t, uc)

	var vm *VM
	for life, marker := range []string{"SEUSS-SCAN-MARKER-ONE", "SEUSS-SCAN-MARKER-TWO"} {
		cfg, g := regionsConfig(root)
		var uc *UC
		if vm == nil {
			uc = restoreFrom(t, st, memFile, nil, cfg)
		} else {
			if uc, err = RestoreOnVM(vm, cfg, st, func(*GuestMemory) error { return nil }); err != nil {
				t.Fatal(err)
			}
			defer uc.Close()
			if err := uc.Start(); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := g.in.Write([]byte(marker + "\n")); err != nil {
			t.Fatal(err)
		}
		done := g.wait(t, "^done 1 ")
		quiesce(t, uc)
		runs, err := uc.MemoryRuns(false)
		if err != nil {
			t.Fatal(err)
		}
		stored := func(a uint64) bool {
			for _, r := range runs {
				if !r.Zero && r.Addr <= a && a < r.Addr+r.Pages*PageSize {
					return true
				}
			}
			return false
		}
		mem := uc.Memory()
		for _, k := range []string{"heap", "anon", "stack", "file", "rbuf", "fresh", "ffile"} {
			a, ok := at[k]
			if !ok {
				a, ok = done[k]
			}
			if !ok || a < userBase || a+uint64(len(marker)) > uint64(len(mem)) {
				t.Fatalf("life %d: no address for %s: %v %v", life, k, at, done)
			}
			if string(mem[a:a+uint64(len(marker))]) != marker {
				t.Fatalf("life %d: %s at %#x does not hold the marker: the test proves nothing", life, k, a)
			}
			if !stored(a) {
				t.Errorf("life %d: the function snapshot misses the page written in %s at %#x", life, k, a)
			}
		}
		if string(mem[at["hole"]:at["hole"]+uint64(len(marker))]) != marker {
			t.Fatalf("life %d: the hole does not hold the marker", life)
		}
		if err := uc.Close(); err != nil {
			t.Fatal(err)
		}
		if vm, err = uc.RecycleVM(func(g *GuestMemory, dirty []DirtyRange) error {
			return resetFromImage(g, dirty, img, int(f.Fd()))
		}); err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(vm.mem, []byte("SEUSS-SCAN-MARKER-")) {
			t.Fatalf("life %d: a recycled VM still holds what the UC wrote", life)
		}
		if !bytes.Equal(vm.mem[userBase:], img[userBase:]) {
			t.Fatalf("life %d: a recycled VM's memory differs from the image", life)
		}
	}
}

// captureImage quiesces and captures uc with its whole memory saved: the state, the
// memory file, its bytes (the image a recycled VM must equal) and the file opened (for
// resetFromImage's remaps; closed when the test ends).
func captureImage(t *testing.T, uc *UC) (*VMState, string, []byte, *os.File) {
	t.Helper()
	quiesce(t, uc)
	st, err := uc.Capture()
	if err != nil {
		t.Fatal(err)
	}
	memFile, _ := saveFull(t, uc)
	img, err := os.ReadFile(memFile)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(memFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return st, memFile, img, f
}

// resetFromImage puts the image back over dirty, as package snapshots does: pages copied
// back, other files' ranges mapped again.
func resetFromImage(g *GuestMemory, dirty []DirtyRange, img []byte, fd int) error {
	for _, d := range dirty {
		if d.File {
			if err := g.MapFile(d.Start, d.End-d.Start, fd, int64(d.Start)); err != nil {
				return err
			}
			continue
		}
		b, err := g.Bytes(d.Start, d.End-d.Start)
		if err != nil {
			return err
		}
		for a := d.Start; a < d.End; a += PageSize {
			if !bytes.Equal(b[a-d.Start:a-d.Start+PageSize], img[a:a+PageSize]) {
				copy(b[a-d.Start:a-d.Start+PageSize], img[a:a+PageSize])
			}
		}
	}
	return nil
}

// TestMemoryRunsMatchesPagemap: the diff MemoryRuns finds with one PAGEMAP_SCAN is the one
// read from /proc/self/pagemap entry by entry (diffRunsPagemap, the fallback), for a
// python UC whose init remapped memory (fresh and freed arenas).
func TestMemoryRunsMatchesPagemap(t *testing.T) {
	requireKVM(t)
	root := pythonRoot(t)
	cfg, _ := sessionConfig(root)
	uc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	if err := uc.Load(pythonArgv); err != nil {
		t.Fatal(err)
	}
	if err := uc.Start(); err != nil {
		t.Fatal(err)
	}
	quiesce(t, uc)
	st, err := uc.Capture()
	if err != nil {
		t.Fatal(err)
	}
	memFile, _ := saveFull(t, uc)
	cfg2, s2 := sessionConfig(root)
	uc2 := restoreFrom(t, st, memFile, nil, cfg2)
	code := "import json\nJUNK = [bytes(200000) for i in range(20)]\ndel JUNK[::2]\nBIG = bytearray(b'\\x5a' * 3000000)\ndef main(args):\n    return {\"n\": len(BIG)}\n"
	if ans := s2.request(t, initLine(code)); ans != `{"ok": true}` {
		t.Fatalf("init: %s", ans)
	}
	quiesce(t, uc2)
	got, err := uc2.MemoryRuns(false)
	if err != nil {
		t.Fatal(err)
	}
	tracked := uc2.track.ranges()
	var spans [][2]uint64
	for _, v := range uc2.k.as.snapshotVMAs() {
		spans = append(spans, [2]uint64{v.start, v.end})
	}
	for _, r := range tracked {
		spans = append(spans, [2]uint64{r.start, r.end})
	}
	pm, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Close()
	want, err := diffRunsPagemap(pm, uc2.Memory(), mergeSpans(spans), tracked)
	if err != nil {
		t.Fatal(err)
	}
	var zero, data uint64
	for _, r := range want {
		if r.Zero {
			zero += r.Pages
		} else {
			data += r.Pages
		}
	}
	if len(tracked) == 0 || zero == 0 || data < 3000000/PageSize {
		t.Fatalf("%d remapped ranges, %d zero and %d data pages: the test proves nothing", len(tracked), zero, data)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("MemoryRuns %d runs, pagemap %d runs", len(got), len(want))
	}
}
