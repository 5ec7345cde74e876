package unikernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"golang.org/x/sys/unix"
)

// The memory guard.
//
// The guest's page tables map its whole address space read-write (the library OS's
// protections are bookkeeping), and the address space is much larger than the memory
// limit (runtimes reserve address space they never commit). So a guest could touch memory
// it never committed: unmapped gaps, PROT_NONE reservations, or copy-on-write pages of
// read-only file mappings, each costing host memory past Config.Memory. The guard samples,
// every memGuardPeriod while the UC runs, the host pages behind those ranges that are its
// own (resident by mincore, then present and not a file page by /proc/self/pagemap: the
// guest's memory may be a copy-on-write mapping of a snapshot file) and stops the UC
// with ErrMemory once they exceed memGuardSlack. A well-behaved program keeps (nearly) none
// there: Linux would fault it. This bounds a UC's host memory to about Memory + slack +
// what the guest can touch in one period (first touches cost ~8-11 µs a page under PVM,
// so ~100 MiB per 250 ms at most).

// ErrMemory: the guest used host memory outside what it committed (see memguard.go).
var ErrMemory = errors.New("unikernel: memory outside the guest's mappings")

const (
	memGuardPeriod = 250 * time.Millisecond
	memGuardSlack  = 32 << 20
)

// startMemGuard arms the guard (Start calls it; a restored UC's start must too).
func (uc *UC) startMemGuard() {
	var tick func()
	tick = func() {
		select {
		case <-uc.stopCh:
			return
		default:
		}
		// An idle UC (no exit since the last look, no thread in the guest) cannot have
		// touched anything new.
		exits := uc.exits.Load()
		uc.mu.Lock()
		busy := exits != uc.guardExits
		for _, t := range uc.threads {
			busy = busy || t.inGuest
		}
		uc.guardExits = exits
		uc.mu.Unlock()
		if !busy {
			uc.mu.Lock()
			if !uc.stopping {
				uc.guard = time.AfterFunc(memGuardPeriod, tick)
			}
			uc.mu.Unlock()
			return
		}
		if n := uc.uncommittedResident(); n > memGuardSlack {
			uc.stop(fmt.Errorf("%w: it touched %d MiB of memory it never mapped or committed (limit %d MiB)",
				ErrMemory, n>>20, uc.cfg.Memory>>20), 128+int(unix.SIGKILL))
			return
		}
		uc.mu.Lock()
		if !uc.stopping {
			uc.guard = time.AfterFunc(memGuardPeriod, tick)
		}
		uc.mu.Unlock()
	}
	uc.mu.Lock()
	uc.guard = time.AfterFunc(memGuardPeriod, tick)
	uc.mu.Unlock()
}

// stopMemGuard disarms the guard (stop calls it with uc.mu held).
func (uc *UC) stopMemGuardLocked() {
	if uc.guard != nil {
		uc.guard.Stop()
	}
}

// uncommittedResident returns the bytes of host memory behind guest ranges that are not
// committed: gaps and uncommitted anonymous mappings (resident pages), and file mappings
// (their private, copied-on-write pages).
func (uc *UC) uncommittedResident() uint64 {
	// Hold the VM's lock so that Close cannot unmap guest memory under the scan.
	uc.vm.mu.Lock()
	defer uc.vm.mu.Unlock()
	mem := uc.vm.mem
	if mem == nil || uc.vm.closed {
		return 0
	}
	vmas := uc.k.as.snapshotVMAs()
	residue := uc.vm.residue
	base := hostAddr(mem)
	var total uint64
	pm, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return 0
	}
	defer pm.Close()
	buf := make([]byte, 8*4096)
	// private counts the copied-on-write pages of [lo, hi): present, not a file page.
	private := func(lo, hi uint64) {
		for p := lo / pageSize; p < hi/pageSize; {
			n := min(hi/pageSize-p, 4096)
			if _, err := pm.ReadAt(buf[:8*n], int64((uint64(base)/pageSize+p)*8)); err != nil {
				return
			}
			for j := uint64(0); j < n; j++ {
				if e := binary.LittleEndian.Uint64(buf[8*j:]); e&(1<<63) != 0 && e&(1<<61) == 0 && !inResidue(residue, (p+j)*pageSize) {
					total += pageSize
				}
			}
			p += n
		}
	}
	vec := make([]byte, 0)
	// scan counts the private pages of [lo, hi): mincore finds the resident ones cheaply
	// (for a file-backed range, also pages that are only in the page cache), pagemap says
	// which of those are the process's own (present, not a file page).
	scan := func(lo, hi uint64) {
		for lo < hi {
			n := min((hi-lo)/pageSize, 1<<16)
			if uint64(cap(vec)) < n {
				vec = make([]byte, n)
			}
			v := vec[:n]
			if mincore(base+uintptr(lo), v) == nil {
				for k := uint64(0); k < n; {
					if v[k]&1 == 0 {
						k++
						continue
					}
					e := k
					for e < n && v[e]&1 != 0 {
						e++
					}
					private(lo+k*pageSize, lo+e*pageSize)
					k = e
				}
			}
			lo += n * pageSize
		}
	}
	next := uint64(userBase)
	for _, v := range vmas {
		if v.start > next {
			scan(next, v.start)
		}
		if !v.committed() {
			scan(v.start, v.end)
		}
		next = max(next, v.end)
	}
	if next < uint64(len(mem)) {
		scan(next, uint64(len(mem)))
	}
	return total
}

// inResidue reports whether guest address a lies in one of the sorted ranges r.
func inResidue(r [][2]uint64, a uint64) bool {
	i := sort.Search(len(r), func(i int) bool { return r[i][1] > a })
	return i < len(r) && r[i][0] <= a
}
