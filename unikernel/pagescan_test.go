package unikernel

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"
)

// PAGEMAP_SCAN finds the same private pages as reading /proc/self/pagemap entry by entry:
// written anonymous pages, the zero page, pages copied on write from a file, but not a
// file's page-cache pages that were only read.
func TestScanPrivateMatchesPagemap(t *testing.T) {
	const n = 64
	mem, err := unix.Mmap(-1, 0, n*pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, make([]byte, 16*pageSize), 0o600); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(path, unix.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := unix.MmapPtr(fd, 0, unsafePointer(&mem[30*pageSize]), 10*pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_FIXED); err != nil {
		t.Fatal(err)
	}
	for _, p := range []int{3, 4, 10, 33, 39, 63} {
		mem[p*pageSize] = 1
	}
	var sink byte
	for _, p := range []int{20, 31, 32} {
		sink += mem[p*pageSize]
	}
	_ = sink
	pm, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Close()
	var want, got [][2]uint64
	add := func(l *[][2]uint64, lo, hi uint64) {
		if k := len(*l); k > 0 && (*l)[k-1][1] == lo {
			(*l)[k-1][1] = hi
			return
		}
		*l = append(*l, [2]uint64{lo, hi})
	}
	if err := scanPagemap(pm, mem, 0, n*pageSize, true, func(a, e uint64) {
		if e&pmSwapped != 0 || e&pmFile == 0 {
			add(&want, a, a+pageSize)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := scanPrivate(pm, mem, 0, n*pageSize, func(lo, hi uint64) { add(&got, lo, hi) }); err == errNoPageScan {
		t.Skip("no PAGEMAP_SCAN")
	} else if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) || len(want) == 0 {
		t.Fatalf("PAGEMAP_SCAN %v, pagemap %v", got, want)
	}
}
