package unikernel

import (
	"encoding/binary"
	"sort"
	"sync"

	"golang.org/x/sys/unix"
)

// vma is one mapped range of the guest address space [start, end), page aligned.
type vma struct {
	start, end uint64
	prot       int
	shared     bool
	// file is the guest path of a file-backed mapping ("" for anonymous); off its offset.
	// Saved by snapshots so that a restored UC can map the same runtime text again.
	file string
	off  int64
}

func (v *vma) committed() bool {
	return v.prot&unix.PROT_WRITE != 0 && !v.shared || v.file == "" && v.prot != 0
}

// addrSpace is a UC's memory map. Guest virtual = guest physical, and the page tables are
// static, so the map is only bookkeeping for the library OS: it decides where mmap and brk
// place things, which guest pointers are valid (EFAULT otherwise) and what counts against the
// memory limit. Protections are recorded but not enforced by hardware (all user pages are RW X).
type addrSpace struct {
	// mem is the host view of guest memory; index = guest address.
	mem  []byte
	size uint64

	mu        sync.Mutex
	vmas      []vma // sorted, non-overlapping
	committed uint64
	limit     uint64
	brkStart  uint64
	brk       uint64
	mmapTop   uint64
	// reset maps fresh anonymous memory over [addr, addr+n) of the host view (nil in
	// tests that run without a host mapping they may replace).
	reset func(addr, n uint64) error
	// mapFile maps a host fd MAP_PRIVATE over [addr, addr+n) of the host view.
	mapFile func(addr, n uint64, fd int, off int64) error
}

const stackSize = 8 << 20

func pageDown(a uint64) uint64 { return a &^ (pageSize - 1) }
func pageUp(a uint64) uint64   { return (a + pageSize - 1) &^ (pageSize - 1) }

func newAddrSpace(mem []byte, limit uint64) *addrSpace {
	size := uint64(len(mem))
	return &addrSpace{mem: mem, size: size, limit: limit, mmapTop: size - stackSize - 16*pageSize}
}

// find returns the index of the first vma with end > addr.
func (as *addrSpace) find(addr uint64) int {
	return sort.Search(len(as.vmas), func(i int) bool { return as.vmas[i].end > addr })
}

// check reports whether [addr, addr+n) lies inside mappings that allow prot.
func (as *addrSpace) check(addr, n uint64, prot int) bool {
	if n == 0 {
		return addr <= as.size
	}
	end := addr + n
	if end < addr || addr < userBase || end > as.size {
		return false
	}
	as.mu.Lock()
	defer as.mu.Unlock()
	i := as.find(addr)
	for a := addr; a < end; i++ {
		if i >= len(as.vmas) || as.vmas[i].start > a || as.vmas[i].prot&prot != prot || as.vmas[i].prot == 0 {
			return false
		}
		a = as.vmas[i].end
	}
	return true
}

// slice returns guest memory [addr, addr+n) if mapped with prot, or EFAULT.
func (as *addrSpace) slice(addr, n uint64, prot int) ([]byte, unix.Errno) {
	if n > as.size || !as.check(addr, n, prot) {
		return nil, unix.EFAULT
	}
	return as.mem[addr : addr+n : addr+n], 0
}

func (as *addrSpace) in(addr, n uint64) ([]byte, unix.Errno) {
	return as.slice(addr, n, unix.PROT_READ)
}
func (as *addrSpace) out(addr, n uint64) ([]byte, unix.Errno) {
	return as.slice(addr, n, unix.PROT_WRITE)
}

func (as *addrSpace) readU64(addr uint64) (uint64, unix.Errno) {
	b, e := as.in(addr, 8)
	if e != 0 {
		return 0, e
	}
	return binary.LittleEndian.Uint64(b), 0
}

func (as *addrSpace) writeU64(addr, v uint64) unix.Errno {
	b, e := as.out(addr, 8)
	if e != 0 {
		return e
	}
	binary.LittleEndian.PutUint64(b, v)
	return 0
}

func (as *addrSpace) writeU32(addr uint64, v uint32) unix.Errno {
	b, e := as.out(addr, 4)
	if e != 0 {
		return e
	}
	binary.LittleEndian.PutUint32(b, v)
	return 0
}

func (as *addrSpace) copyOut(addr uint64, data []byte) unix.Errno {
	b, e := as.out(addr, uint64(len(data)))
	if e != 0 {
		return e
	}
	copy(b, data)
	return 0
}

// readString reads a NUL-terminated string of at most max bytes (ENAMETOOLONG past it).
func (as *addrSpace) readString(addr uint64, max int) (string, unix.Errno) {
	var out []byte
	for len(out) <= max {
		// Read up to the end of the page so that a string ending before an unmapped
		// page is accepted.
		n := pageUp(addr+1) - addr
		b, e := as.in(addr, n)
		if e != 0 {
			return "", e
		}
		for i, c := range b {
			if c == 0 {
				out = append(out, b[:i]...)
				if len(out) > max {
					return "", unix.ENAMETOOLONG
				}
				return string(out), 0
			}
		}
		out = append(out, b...)
		addr += n
	}
	return "", unix.ENAMETOOLONG
}

// removeLocked drops [start, end) from the map, splitting vmas, and gives back the
// commit charge. It does not touch memory.
func (as *addrSpace) removeLocked(start, end uint64) {
	var out []vma
	for _, v := range as.vmas {
		if v.end <= start || v.start >= end {
			out = append(out, v)
			continue
		}
		if v.committed() {
			lo, hi := max(v.start, start), min(v.end, end)
			as.committed -= hi - lo
		}
		if v.start < start {
			l := v
			l.end = start
			out = append(out, l)
		}
		if v.end > end {
			r := v
			if r.file != "" {
				r.off += int64(end - r.start)
			}
			r.start = end
			out = append(out, r)
		}
	}
	as.vmas = out
}

func (as *addrSpace) insertLocked(v vma) {
	i := as.find(v.start)
	as.vmas = append(as.vmas, vma{})
	copy(as.vmas[i+1:], as.vmas[i:])
	as.vmas[i] = v
	if v.committed() {
		as.committed += v.end - v.start
	}
}

// charge reports whether n more committed bytes fit the limit, counting what [start,end)
// already holds.
func (as *addrSpace) fitsLocked(start, end uint64, v vma) bool {
	if !v.committed() {
		return true
	}
	var freed uint64
	for _, w := range as.vmas {
		if w.end <= start || w.start >= end || !w.committed() {
			continue
		}
		freed += min(w.end, end) - max(w.start, start)
	}
	return as.committed-freed+(end-start) <= as.limit
}

// freeLocked finds the highest free range of n bytes below mmapTop and above the brk area.
func (as *addrSpace) freeLocked(n uint64) (uint64, bool) {
	top := as.mmapTop
	floor := max(as.brk, userBase) + 64<<20 // keep room for the heap to grow
	if as.brk == 0 {
		floor = userBase
	}
	for i := len(as.vmas) - 1; i >= -1; i-- {
		lo := uint64(userBase)
		if i >= 0 {
			lo = as.vmas[i].end
		}
		if lo >= top {
			if i >= 0 {
				top = min(top, as.vmas[i].start)
			}
			continue
		}
		if top-lo >= n && top-n >= floor {
			return top - n, true
		}
		if i >= 0 {
			top = min(top, as.vmas[i].start)
		}
	}
	if floor != userBase {
		// Past the heap reserve: try anywhere.
		save := as.brk
		as.brk = 0
		a, ok := as.freeLocked(n)
		as.brk = save
		return a, ok
	}
	return 0, false
}

// mmap places a mapping. With fixed, addr is used (existing mappings there are replaced);
// otherwise addr is a hint. fd < 0 means anonymous.
func (as *addrSpace) mmap(addr, length uint64, prot int, fixed, noReplace, shared bool, fd int, file string, off int64, fileSize int64) (uint64, unix.Errno) {
	if length == 0 || addr%pageSize != 0 || off%pageSize != 0 || off < 0 {
		return 0, unix.EINVAL
	}
	n := pageUp(length)
	if n < length || n > as.size {
		return 0, unix.ENOMEM
	}
	as.mu.Lock()
	defer as.mu.Unlock()
	if fixed || noReplace || addr != 0 {
		if addr < userBase || addr+n > as.mmapTop+16*pageSize+stackSize || addr+n < addr {
			if fixed || noReplace {
				return 0, unix.ENOMEM
			}
			addr = 0
		} else if !fixed {
			// A hint (or MAP_FIXED_NOREPLACE): only if free.
			i := as.find(addr)
			if i < len(as.vmas) && as.vmas[i].start < addr+n {
				if noReplace {
					return 0, unix.EEXIST
				}
				addr = 0
			}
		}
	}
	if addr == 0 {
		a, ok := as.freeLocked(n)
		if !ok {
			return 0, unix.ENOMEM
		}
		addr = a
	}
	v := vma{start: addr, end: addr + n, prot: prot, shared: shared && fd >= 0}
	if fd >= 0 {
		v.file, v.off = file, off
	}
	if !as.fitsLocked(addr, addr+n, v) {
		return 0, unix.ENOMEM
	}
	// Replace the memory first: zeroes for anonymous mappings, the file's pages (as far
	// as the file goes, zero pages after it) for file mappings.
	if err := as.populateLocked(addr, n, fd, off, fileSize); err != 0 {
		return 0, err
	}
	as.removeLocked(addr, addr+n)
	as.insertLocked(v)
	return addr, 0
}

func (as *addrSpace) populateLocked(addr, n uint64, fd int, off int64, fileSize int64) unix.Errno {
	fileLen := uint64(0)
	if fd >= 0 && fileSize > off {
		fileLen = min(n, pageUp(uint64(fileSize-off)))
	}
	if fileLen > 0 {
		if as.mapFile == nil {
			return unix.ENODEV
		}
		if err := as.mapFile(addr, fileLen, fd, off); err != nil {
			return unix.ENOMEM
		}
	}
	if fileLen < n {
		if err := as.zero(addr+fileLen, n-fileLen); err != nil {
			return unix.ENOMEM
		}
	}
	return 0
}

func (as *addrSpace) zero(addr, n uint64) error {
	if as.reset != nil {
		return as.reset(addr, n)
	}
	clear(as.mem[addr : addr+n])
	return nil
}

func (as *addrSpace) munmap(addr, length uint64) unix.Errno {
	if addr%pageSize != 0 || length == 0 {
		return unix.EINVAL
	}
	n := pageUp(length)
	if addr < userBase || addr+n > as.size || addr+n < addr {
		return unix.EINVAL
	}
	as.mu.Lock()
	defer as.mu.Unlock()
	if err := as.zero(addr, n); err != nil {
		return unix.ENOMEM
	}
	as.removeLocked(addr, addr+n)
	return 0
}

func (as *addrSpace) mprotect(addr, length uint64, prot int) unix.Errno {
	if addr%pageSize != 0 {
		return unix.EINVAL
	}
	n := pageUp(length)
	if n == 0 {
		return 0
	}
	as.mu.Lock()
	defer as.mu.Unlock()
	end := addr + n
	if addr < userBase || end > as.size || end < addr {
		return unix.ENOMEM
	}
	// Every page must be mapped.
	var parts []vma
	i := as.find(addr)
	for a := addr; a < end; i++ {
		if i >= len(as.vmas) || as.vmas[i].start > a {
			return unix.ENOMEM
		}
		p := as.vmas[i]
		p.start, p.end = max(p.start, addr), min(p.end, end)
		if p.file != "" {
			p.off += int64(p.start - as.vmas[i].start)
		}
		p.prot = prot
		parts = append(parts, p)
		a = as.vmas[i].end
	}
	var before, after uint64
	for _, p := range parts {
		q := p
		q.prot = as.protAtLocked(p.start)
		if q.committed() {
			before += p.end - p.start
		}
		if p.committed() {
			after += p.end - p.start
		}
	}
	if after > before && as.committed+after-before > as.limit {
		return unix.ENOMEM
	}
	as.removeLocked(addr, end)
	for _, p := range parts {
		as.insertLocked(p)
	}
	return 0
}

func (as *addrSpace) protAtLocked(a uint64) int {
	i := as.find(a)
	if i < len(as.vmas) && as.vmas[i].start <= a {
		return as.vmas[i].prot
	}
	return 0
}

// madviseDontNeed drops pages: anonymous memory reads back as zero, private file
// mappings revert to the file, as on Linux.
func (as *addrSpace) dontNeed(addr, length uint64, hostMadvise func(addr, n uint64) error) unix.Errno {
	n := pageUp(length)
	if addr%pageSize != 0 || addr < userBase || addr+n > as.size || addr+n < addr {
		return unix.EINVAL
	}
	if hostMadvise != nil {
		if err := hostMadvise(addr, n); err != nil {
			return unix.EINVAL
		}
		return 0
	}
	as.mu.Lock()
	defer as.mu.Unlock()
	clear(as.mem[addr : addr+n])
	return 0
}

// setBrk implements brk(2): it returns the new (or unchanged) break.
func (as *addrSpace) setBrk(want uint64) uint64 {
	as.mu.Lock()
	defer as.mu.Unlock()
	if want < as.brkStart || want > as.size {
		return as.brk
	}
	oldTop, newTop := pageUp(as.brk), pageUp(want)
	switch {
	case newTop > oldTop:
		v := vma{start: oldTop, end: newTop, prot: unix.PROT_READ | unix.PROT_WRITE}
		i := as.find(oldTop)
		if i < len(as.vmas) && as.vmas[i].start < newTop {
			return as.brk // would run into a mapping
		}
		if newTop > as.mmapTop || !as.fitsLocked(oldTop, newTop, v) {
			return as.brk
		}
		if as.zero(oldTop, newTop-oldTop) != nil {
			return as.brk
		}
		as.insertLocked(v)
	case newTop < oldTop:
		if as.zero(newTop, oldTop-newTop) != nil {
			return as.brk
		}
		as.removeLocked(newTop, oldTop)
	}
	as.brk = want
	return as.brk
}

// snapshotVMAs returns a copy of the map (for stats, tests and snapshots).
func (as *addrSpace) snapshotVMAs() []vma {
	as.mu.Lock()
	defer as.mu.Unlock()
	return append([]vma(nil), as.vmas...)
}
