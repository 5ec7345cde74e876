package unikernel

import (
	"errors"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// PAGEMAP_SCAN (Linux 6.7): the kernel walks the page tables and returns only the ranges
// whose pages match, instead of 8 bytes per page read through /proc/self/pagemap. For a
// UC's private pages over a 1-2.3 GiB guest that is a few dozen ranges instead of 2-5 MB
// of entries to read and look at.
const (
	pmScanIoctl      = 0xC0606610 // _IOWR('f', 16, struct pm_scan_arg)
	pageIsPresent    = 1 << 3
	pageIsSwapped    = 1 << 4
	pageIsFile       = 1 << 2
	pmScanRegionsMax = 512
)

type pmScanArg struct {
	size, flags, start, end, walkEnd, vec, vecLen, maxPages uint64
	categoryInverted, categoryMask, categoryAnyofMask       uint64
	returnMask                                              uint64
}

type pageRegion struct{ start, end, categories uint64 }

// noPageScan is set once PAGEMAP_SCAN turned out to be missing (the pagemap fallback).
var noPageScan atomic.Bool

var errNoPageScan = errors.New("unikernel: PAGEMAP_SCAN unavailable")

// selfPagemap is /proc/self/pagemap, opened once for the process (the scans on the
// recycle and capture paths each opened and closed it). Never closed.
var selfPagemap = sync.OnceValues(func() (*os.File, error) { return os.Open("/proc/self/pagemap") })

// scanVecs holds output vectors for scanPrivate (12 KiB each: one allocation less per
// scan on the recycle and capture paths).
var scanVecs = sync.Pool{New: func() any { return new([pmScanRegionsMax]pageRegion) }}

// scanPrivate calls f, in address order, for each range of [start, end) of mem (guest
// addresses) whose pages are the process's own: present and not a file page (copied on
// write, anonymous, or the zero page), or swapped out. The same pages as scanPagemap's
// entries with pmSwapped, or pmPresent without pmFile. errNoPageScan when the kernel has
// no PAGEMAP_SCAN.
func scanPrivate(pm *os.File, mem []byte, start, end uint64, f func(lo, hi uint64)) error {
	if noPageScan.Load() {
		return errNoPageScan
	}
	if start >= end {
		return nil
	}
	base := uint64(hostAddr(mem))
	vp := scanVecs.Get().(*[pmScanRegionsMax]pageRegion) // on the heap: the kernel writes through a plain address
	defer scanVecs.Put(vp)
	vec := vp[:]
	a := base + start
	for a < base+end {
		arg := pmScanArg{
			size: uint64(unsafe.Sizeof(pmScanArg{})), start: a, end: base + end,
			vec: uint64(uintptr(unsafe.Pointer(&vec[0]))), vecLen: pmScanRegionsMax,
			// FILE inverted and required: not a file page; and present or swapped.
			categoryInverted: pageIsFile, categoryMask: pageIsFile,
			categoryAnyofMask: pageIsPresent | pageIsSwapped, returnMask: pageIsPresent | pageIsSwapped,
		}
		n, _, errno := unix.Syscall(unix.SYS_IOCTL, pm.Fd(), pmScanIoctl, uintptr(unsafe.Pointer(&arg)))
		if errno != 0 {
			if errno == unix.ENOTTY || errno == unix.EINVAL {
				noPageScan.Store(true)
				return errNoPageScan
			}
			return &os.SyscallError{Syscall: "ioctl PAGEMAP_SCAN", Err: errno}
		}
		runtime.KeepAlive(vec)
		for _, r := range vec[:n] {
			f(r.start-base, r.end-base)
		}
		if arg.walkEnd <= a {
			break
		}
		a = arg.walkEnd
	}
	return nil
}
