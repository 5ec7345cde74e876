package unikernel

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"
)

// Capture and restore of whole UCs. The state is VMState (state.go); memory is read here
// as page runs and written back through GuestMemory, while package snapshots owns the
// files. Quiescence: a UC is captured paused, with every thread that is inside a system
// call asleep in a restartable wait (Kernel.asleep); such a thread is saved with the
// call's entry registers and RIP on its port write, so the restored thread simply makes
// the call again.

// WaitQuiescent pauses the UC once every thread is asleep inside a system call (for the
// launchers: blocked reading fd 0 for the next request). It looks without disturbing the
// guest whenever a thread falls asleep (sleepCount) and, for changes that wake nobody (a
// thread ending), every quiesceFallback; it pauses only when the UC looks idle, then
// checks again paused. On success the UC is left paused.
func (uc *UC) WaitQuiescent(ctx context.Context) error {
	wake := uc.k.sleeping.watch()
	defer uc.k.sleeping.unwatch()
	var tick <-chan time.Time
	for {
		if uc.looksIdle() {
			if err := uc.Pause(); err != nil {
				return err
			}
			ok, err := uc.idle()
			if err != nil {
				uc.Resume()
				return err
			}
			if ok {
				return nil
			}
			if err := uc.Resume(); err != nil {
				return err
			}
		}
		if tick == nil {
			t := time.NewTicker(quiesceFallback)
			defer t.Stop()
			tick = t.C
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("unikernel: wait for quiescence: %w", context.Cause(ctx))
		case <-uc.done:
			return fmt.Errorf("%w: the UC ended while waiting for quiescence", ErrState)
		case <-wake:
		case <-tick:
		}
	}
}

// quiesceFallback is how often WaitQuiescent looks without being woken: a safety net
// for changes that count no thread asleep (a thread ending, a spurious miss); a variable
// so that a test can take it away.
var quiesceFallback = 3 * time.Millisecond

// looksIdle reports, without pausing, whether every thread seems asleep in a call.
func (uc *UC) looksIdle() bool {
	uc.mu.Lock()
	n := len(uc.threads)
	in := 0
	for _, t := range uc.threads {
		if t.inCall.Load() {
			in++
		}
	}
	uc.mu.Unlock()
	return in == n && int(uc.k.sleeping.Load()) == n
}

// idle reports whether every thread of a paused UC is asleep in a system call. A thread
// still finishing a call (it will park) is waited for briefly.
func (uc *UC) idle() (bool, error) {
	for spin := 0; spin < 200; spin++ {
		uc.mu.Lock()
		if uc.state != StatePaused {
			st := uc.state
			uc.mu.Unlock()
			return false, fmt.Errorf("%w: UC %s while waiting for quiescence", ErrState, st)
		}
		inCall := 0
		for _, t := range uc.threads {
			if t.inCall.Load() {
				inCall++
			}
		}
		n := len(uc.threads)
		uc.mu.Unlock()
		asleep := int(uc.k.sleeping.Load())
		if inCall == n && asleep == n {
			return true, nil
		}
		if inCall == asleep {
			return false, nil // some thread is parked outside a call: it has work to do
		}
		time.Sleep(10 * time.Microsecond)
	}
	return false, nil
}

// Capture saves a paused UC whose threads are each parked or asleep in a restartable
// call (WaitQuiescent). Memory contents are read separately (MemoryRuns, Memory).
func (uc *UC) Capture() (*VMState, error) {
	uc.mu.Lock()
	if uc.state != StatePaused {
		st := uc.state
		uc.mu.Unlock()
		return nil, fmt.Errorf("%w: capture in state %s", ErrState, st)
	}
	threads := append([]*Thread(nil), uc.threads...)
	uc.mu.Unlock()
	inCall := 0
	for _, t := range threads {
		if t.inCall.Load() {
			inCall++
		}
	}
	if int(uc.k.sleeping.Load()) != inCall {
		return nil, fmt.Errorf("%w: capture: a thread is inside a system call that cannot be restarted", ErrState)
	}
	st := &VMState{AddressSpace: uc.vm.Size, Mode: uc.vm.host.mode, Memory: uc.k.as.save()}
	for _, t := range threads {
		ts, err := t.save(uc.vm.mem)
		if err != nil {
			return nil, err
		}
		st.VCPU = append(st.VCPU, ts)
	}
	var err error
	if st.LibOS, err = uc.k.saveLibOS(uc.stdin); err != nil {
		return nil, fmt.Errorf("unikernel: capture: %w", err)
	}
	return st, nil
}

// Memory is the guest's memory as a host slice, index = guest address. Read it only while
// the UC is paused (or ended); never write it.
func (uc *UC) Memory() []byte { return uc.vm.mem }

// Restored reports whether the UC was restored from a snapshot (RestoreOnVM).
func (uc *UC) Restored() bool { return uc.track != nil }

// PageRun is a run of guest pages a snapshot stores: Pages pages from Addr, all zero
// (Zero) or with the contents of Memory()[Addr:Addr+Pages*PageSize].
type PageRun struct {
	Addr, Pages uint64
	Zero        bool
}

// PageSize is the granularity of snapshots.
const PageSize = pageSize

// UserBase is the lowest guest address the guest owns: everything below is the system
// area every VM shell writes for itself, never part of a snapshot.
const UserBase = userBase

// MemoryRuns lists, sorted, what a snapshot of a paused UC must store:
//   - full (a booted UC, for a runtime snapshot): every non-zero page of every mapping:
//     the anonymous pages the guest touched and all pages of file mappings (runtime text
//     included, so that the snapshot alone is the memory); no Zero runs.
//   - diff (a restored UC, for a function snapshot over its parent): the pages that differ
//     from the parent: those written since the restore (private in the host's page tables,
//     read from /proc/self/pagemap: the kernel's own copy-on-write record, which also sees
//     the library OS's writes that KVM dirty logging would miss), ranges remapped since
//     (anonymous: Zero where untouched; files: their pages), zero pages as Zero runs.
func (uc *UC) MemoryRuns(full bool) ([]PageRun, error) {
	if st := uc.State(); st != StatePaused && st != StateExited {
		return nil, fmt.Errorf("%w: memory runs in state %s", ErrState, st)
	}
	if full == uc.Restored() {
		if full {
			return nil, fmt.Errorf("%w: a full memory image is taken of a booted UC, not a restored one", ErrState)
		}
		return nil, fmt.Errorf("%w: a memory diff is taken of a restored UC", ErrState)
	}
	vmas := uc.k.as.snapshotVMAs()
	pm, err := selfPagemap()
	if err != nil {
		return nil, fmt.Errorf("unikernel: memory runs: %w", err)
	}
	mem := uc.vm.mem
	var b runBuilder
	if full {
		for _, v := range vmas {
			if v.file != "" {
				for a := v.start; a < v.end; a += pageSize {
					b.page(a, isZero(mem[a:a+pageSize]), true)
				}
				continue
			}
			if err := scanPagemap(pm, mem, v.start, v.end, true, func(a, e uint64) {
				if e&pmPresent != 0 && !isZero(mem[a:a+pageSize]) {
					b.page(a, false, true)
				}
			}); err != nil {
				return nil, err
			}
		}
		return b.runs, nil
	}
	tracked := uc.track.ranges()
	// Every mapping and every remapped range, in address order.
	var spans [][2]uint64
	for _, v := range vmas {
		spans = append(spans, [2]uint64{v.start, v.end})
	}
	for _, r := range tracked {
		spans = append(spans, [2]uint64{r.start, r.end})
	}
	spans = mergeSpans(spans)
	if len(spans) == 0 {
		return nil, nil
	}
	// One PAGEMAP_SCAN over the spans' hull finds the UC's own pages; the remapped ranges
	// need nothing more (a fresh anonymous page not among them reads as zero, a remapped
	// file is stored whole). One ioctl instead of one per span, and no pagemap entries
	// read for the remapped ranges.
	var own [][2]uint64
	err = scanPrivate(pm, mem, spans[0][0], spans[len(spans)-1][1], func(lo, hi uint64) {
		if n := len(own); n > 0 && own[n-1][1] == lo {
			own[n-1][1] = hi
			return
		}
		own = append(own, [2]uint64{lo, hi})
	})
	if errors.Is(err, errNoPageScan) {
		return diffRunsPagemap(pm, mem, spans, tracked)
	}
	if err != nil {
		return nil, err
	}
	oi := 0
	content := func(lo, hi uint64) {
		for a := lo; a < hi; a += pageSize {
			b.page(a, isZero(mem[a:a+pageSize]), false)
		}
	}
	zero := func(lo, hi uint64) { b.add(lo, (hi-lo)/pageSize, true) }
	skip := func(lo, hi uint64) {}
	// ownIn calls in for the runs of the UC's own pages in [lo, hi) and gap for the runs
	// between, in order; calls come in address order, so own is walked once.
	ownIn := func(lo, hi uint64, in, gap func(lo, hi uint64)) {
		for oi < len(own) && own[oi][1] <= lo {
			oi++
		}
		a := lo
		for j := oi; j < len(own) && own[j][0] < hi; j++ {
			if a < own[j][0] {
				gap(a, own[j][0])
			}
			a = max(a, own[j][0])
			e := min(own[j][1], hi)
			in(a, e)
			a = e
		}
		if a < hi {
			gap(a, hi)
		}
	}
	segment := func(lo, hi uint64, kind int) {
		switch kind {
		case remapFile: // another file mapped here: every page
			content(lo, hi)
		case remapZero: // fresh memory: zero but for the pages the UC made its own
			ownIn(lo, hi, content, zero)
		default: // the parent's pages but for those the UC made its own
			ownIn(lo, hi, content, skip)
		}
	}
	for _, s := range spans {
		a := s[0]
		for _, r := range tracked {
			if r.end <= a || r.start >= s[1] {
				continue
			}
			if a < r.start {
				segment(a, r.start, remapNone)
				a = r.start
			}
			end := min(r.end, s[1])
			segment(a, end, r.kind)
			a = end
		}
		if a < s[1] {
			segment(a, s[1], remapNone)
		}
	}
	return b.runs, nil
}

// diffRunsPagemap is MemoryRuns' diff from /proc/self/pagemap entries, for kernels
// without PAGEMAP_SCAN (before Linux 6.7).
func diffRunsPagemap(pm *os.File, mem []byte, spans [][2]uint64, tracked []remapRange) ([]PageRun, error) {
	var b runBuilder
	ti := 0
	visit := func(a, e uint64) {
		for ti < len(tracked) && tracked[ti].end <= a {
			ti++
		}
		kind := remapNone
		if ti < len(tracked) && tracked[ti].start <= a {
			kind = tracked[ti].kind
		}
		present, filePage := e&pmPresent != 0, e&pmFile != 0
		switch {
		case e&pmSwapped != 0, present && !filePage:
			// Swapped out pages are the UC's own too (reading them swaps them in).
			b.page(a, isZero(mem[a:a+pageSize]), false)
		case kind == remapFile:
			b.page(a, isZero(mem[a:a+pageSize]), false)
		case kind == remapZero && !present:
			b.page(a, true, false)
		case kind == remapZero:
			b.page(a, isZero(mem[a:a+pageSize]), false)
		}
	}
	for _, s := range spans {
		a := s[0]
		for _, r := range tracked {
			if r.end <= a || r.start >= s[1] {
				continue
			}
			if a < r.start {
				if err := scanPagemap(pm, mem, a, r.start, true, visit); err != nil {
					return nil, err
				}
				a = r.start
			}
			end := min(r.end, s[1])
			if err := scanPagemap(pm, mem, a, end, false, visit); err != nil {
				return nil, err
			}
			a = end
		}
		if a < s[1] {
			if err := scanPagemap(pm, mem, a, s[1], true, visit); err != nil {
				return nil, err
			}
		}
	}
	return b.runs, nil
}

// runBuilder appends pages to runs, merging neighbours of the same kind.
type runBuilder struct{ runs []PageRun }

func (b *runBuilder) page(a uint64, zero, dropZero bool) {
	if zero && dropZero {
		return
	}
	b.add(a, 1, zero)
}

// add appends n pages from a, all zero or all data.
func (b *runBuilder) add(a, n uint64, zero bool) {
	if k := len(b.runs); k > 0 {
		r := &b.runs[k-1]
		if r.Zero == zero && r.Addr+r.Pages*pageSize == a {
			r.Pages += n
			return
		}
	}
	b.runs = append(b.runs, PageRun{Addr: a, Pages: n, Zero: zero})
}

func mergeSpans(s [][2]uint64) [][2]uint64 {
	if !slices.IsSortedFunc(s, cmpSpan) {
		slices.SortFunc(s, cmpSpan)
	}
	var out [][2]uint64
	for _, x := range s {
		if n := len(out); n > 0 && x[0] <= out[n-1][1] {
			out[n-1][1] = max(out[n-1][1], x[1])
			continue
		}
		out = append(out, x)
	}
	return out
}

func cmpSpan(a, b [2]uint64) int { return cmp.Compare(a[0], b[0]) }

func isZero(p []byte) bool {
	for i := 0; i < len(p); i += 8 {
		if binary.LittleEndian.Uint64(p[i:]) != 0 {
			return false
		}
	}
	return true
}

// /proc/self/pagemap bits.
const (
	pmPresent = 1 << 63
	pmSwapped = 1 << 62 // a private page swapped out
	pmFile    = 1 << 61 // file page or shared anonymous: not the process's private copy
)

// scanPagemap calls f for each page of [start, end) of mem with its pagemap entry; with
// sparse, only for pages present or swapped out.
func scanPagemap(pm *os.File, mem []byte, start, end uint64, sparse bool, f func(addr, entry uint64)) error {
	base := uint64(hostAddr(mem))
	buf := make([]byte, 8*8192)
	for a := start; a < end; {
		n := min((end-a)/pageSize, 8192)
		if _, err := pm.ReadAt(buf[:8*n], int64((base+a)/pageSize*8)); err != nil {
			return fmt.Errorf("unikernel: read pagemap: %w", err)
		}
		for i := uint64(0); i < n; i++ {
			e := binary.LittleEndian.Uint64(buf[8*i:])
			if sparse && e&(pmPresent|pmSwapped) == 0 {
				continue
			}
			f(a+i*pageSize, e)
		}
		a += n * pageSize
	}
	return nil
}

// Kinds of remapped ranges a restored UC tracks.
const (
	remapNone = iota
	remapZero // fresh anonymous memory (mmap, munmap, brk, madvise)
	remapFile // a file mapped since the restore
)

type remapRange struct {
	start, end uint64
	kind       int
}

// remapTracker records what a restored UC remaps, later ranges overriding earlier ones.
type remapTracker struct {
	mu sync.Mutex
	rs []remapRange // sorted, disjoint
}

func (t *remapTracker) add(start, end uint64, kind int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []remapRange
	for _, r := range t.rs {
		if r.end <= start || r.start >= end {
			out = append(out, r)
			continue
		}
		if r.start < start {
			out = append(out, remapRange{r.start, start, r.kind})
		}
		if r.end > end {
			out = append(out, remapRange{end, r.end, r.kind})
		}
	}
	out = append(out, remapRange{start, end, kind})
	sort.Slice(out, func(i, j int) bool { return out[i].start < out[j].start })
	t.rs = out
}

func (t *remapTracker) ranges() []remapRange {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]remapRange(nil), t.rs...)
}

// GuestMemory is how a snapshot loader fills a restored UC's memory before it runs.
type GuestMemory struct{ vm *VM }

// Size is the guest's size.
func (g *GuestMemory) Size() uint64 { return g.vm.Size }

func (g *GuestMemory) check(addr, n uint64) error {
	if addr%pageSize != 0 || n%pageSize != 0 || addr < userBase || addr+n > g.vm.Size || addr+n < addr {
		return fmt.Errorf("unikernel: guest range [%#x, +%#x) outside [%#x, %#x) or unaligned", addr, n, userBase, g.vm.Size)
	}
	return nil
}

// MapFile maps fd at off over [addr, addr+n) copy-on-write (MAP_PRIVATE): the pages stay
// the file's, shared with every other mapping of it, until written.
func (g *GuestMemory) MapFile(addr, n uint64, fd int, off int64) error {
	if err := g.check(addr, n); err != nil {
		return err
	}
	return mmapFixed(hostAddr(g.vm.mem)+uintptr(addr), uintptr(n), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_NORESERVE, fd, off)
}

// Zero maps fresh anonymous memory over [addr, addr+n).
func (g *GuestMemory) Zero(addr, n uint64) error {
	if err := g.check(addr, n); err != nil {
		return err
	}
	return mmapFixed(hostAddr(g.vm.mem)+uintptr(addr), uintptr(n), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE, -1, 0)
}

// Bytes returns [addr, addr+n) of guest memory to copy pages into.
func (g *GuestMemory) Bytes(addr, n uint64) ([]byte, error) {
	if err := g.check(addr, n); err != nil {
		return nil, err
	}
	return g.vm.mem[addr : addr+n : addr+n], nil
}

// PrepareVCPUs creates n vCPUs ahead of a restore (for VM shells kept in a pool): a restore
// takes them in order instead of creating its own.
func (vm *VM) PrepareVCPUs(n int) error {
	for i := 0; i < n; i++ {
		if _, err := vm.newVCPU(0, 0, 0); err != nil {
			return err
		}
	}
	return nil
}

// RestoreOnVM builds a UC from a captured state in a fresh VM shell of the state's size.
// load fills guest memory (package snapshots maps the snapshot files); cfg supplies the
// restored UC's stdio, limits and root (which must be the captured UC's root). The UC is
// returned in state created, loaded: Start runs it. The caller closes vm after the UC.
//
// The order of the steps is the one place restore ordering lives; each says why.
func RestoreOnVM(vm *VM, cfg Config, st *VMState, load func(*GuestMemory) error) (*UC, error) {
	if err := st.Validate(); err != nil {
		return nil, err
	}
	if st.AddressSpace != vm.Size {
		return nil, fmt.Errorf("unikernel: restore: snapshot of a %d MiB guest into a %d MiB VM", st.AddressSpace>>20, vm.Size>>20)
	}
	if st.Mode != ModeUnknown && st.Mode != vm.host.mode {
		return nil, fmt.Errorf("unikernel: restore: captured under %s, this host is %s", st.Mode, vm.host.mode)
	}
	pre := len(vm.vcpus) // vCPUs prepared ahead (PrepareVCPUs); NewOnVM refuses a used VM
	uc, err := NewOnVM(vm, cfg)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*UC, error) {
		uc.Close()
		return nil, fmt.Errorf("unikernel: restore: %w", err)
	}
	// 1. Memory before anything reads it, and before tracking starts: the tracker must see
	// only the guest's own remaps.
	if err := load(&GuestMemory{vm: vm}); err != nil {
		return fail(fmt.Errorf("load memory: %w", err))
	}
	// 2. The memory map, checked against the new commit limit.
	if err := uc.k.as.restore(st.Memory); err != nil {
		return fail(err)
	}
	// 3. The library OS: files are reopened in the root NewOnVM opened; out files bind to
	// this Config's writers, fd 0 to its Stdin.
	if err := uc.restoreLibOS(&st.LibOS); err != nil {
		return fail(err)
	}
	// 4. Threads. Each vCPU already has CPUID, the static segments and XCR0 (setupVCPU):
	// KVM checks an XSAVE image against them, so XSAVE comes after; the FS/GS MSRs next;
	// the general registers last, through KVM_SET_REGS (the loop only marks the sync area
	// valid, never dirty, so KVM keeps what we set).
	for i, ts := range st.VCPU {
		var c *vcpu
		if i < pre {
			c = vm.vcpus[i]
		} else if c, err = vm.newVCPU(0, 0, 0); err != nil {
			return fail(err)
		}
		c.run.setDirty(0) // the general registers come from KVM_SET_REGS below
		x := &kvmXSAVE{}
		var xs [4096]byte
		copy(xs[:], ts.XSAVE) // saved without its trailing zeros
		for j := range x.Region {
			x.Region[j] = binary.LittleEndian.Uint32(xs[4*j:])
		}
		if err := setXSAVE(c.fd, x); err != nil {
			return fail(err)
		}
		if err := setMSRs(c.fd, map[uint32]uint64{msrFSBase: ts.FSBase, msrGSBase: ts.GSBase}); err != nil {
			return fail(err)
		}
		if ts.KernelMode {
			s, err := retry(func() (*kvm.Sregs, error) { return kvm.GetSregs(c.fd) })
			if err != nil {
				return fail(err)
			}
			s.CS = kvm.Segment{Limit: 0xffffffff, Selector: selKernelCS, Typ: 0xb, Present: 1, S: 1, L: 1, G: 1}
			s.SS = kvm.Segment{Limit: 0xffffffff, Selector: selKernelDS, Typ: 0x3, Present: 1, S: 1, DB: 1, G: 1}
			if _, err := retry(func() (int, error) { return 0, kvm.SetSregs(c.fd, s) }); err != nil {
				return fail(err)
			}
		}
		g := ts.GPRs
		regs := &kvm.Regs{RAX: g[0], RBX: g[1], RCX: g[2], RDX: g[3], RSI: g[4], RDI: g[5], RSP: g[6], RBP: g[7],
			R8: g[8], R9: g[9], R10: g[10], R11: g[11], R12: g[12], R13: g[13], R14: g[14], R15: g[15], RIP: g[16], RFLAGS: g[17]&userFlags | 0x2}
		if _, err := retry(func() (int, error) { return 0, kvm.SetRegs(c.fd, regs) }); err != nil {
			return fail(err)
		}
		t := &Thread{uc: uc, tid: ts.TID, cpu: c, fsBase: ts.FSBase, gsBase: ts.GSBase}
		t.ts.clearTID, t.ts.robustList, t.ts.sigmask, t.ts.rseq = ts.ClearTID, ts.RobustList, ts.Sigmask, ts.Rseq
		t.ts.sigPending = ts.SigPending
		copy(t.ts.altstack[:], ts.Altstack)
		uc.threads = append(uc.threads, t)
	}
	uc.live = len(uc.threads)
	// 5. Track the guest's remaps from now on (MemoryRuns of a function snapshot). In a
	// restored UC, madvise(MADV_DONTNEED) of anonymous memory must read back as zeros, not
	// as the snapshot file's page: it maps fresh memory instead.
	uc.track = &remapTracker{}
	as := uc.k.as
	reset, mapFile := as.reset, as.mapFile
	as.reset = func(addr, n uint64) error {
		uc.track.add(addr, addr+n, remapZero)
		return reset(addr, n)
	}
	as.mapFile = func(addr, n uint64, fd int, off int64) error {
		uc.track.add(addr, addr+n, remapFile)
		return mapFile(addr, n, fd, off)
	}
	uc.k.hostMadvise = func(addr, n uint64) error {
		for _, v := range as.snapshotVMAs() {
			lo, hi := max(v.start, addr), min(v.end, addr+n)
			if lo >= hi {
				continue
			}
			if v.file != "" {
				// Reverts to the snapshot's page of the file mapping (Linux: the file's).
				if err := madvise(hostAddr(vm.mem)+uintptr(lo), uintptr(hi-lo), unix.MADV_DONTNEED); err != nil {
					return err
				}
				uc.track.add(lo, hi, remapFile)
				continue
			}
			if err := as.reset(lo, hi-lo); err != nil {
				return err
			}
		}
		return nil
	}
	// 6. The vDSO's time page belongs to this VM's system area: calibrate it against this
	// VM's TSC before any thread runs (the captured page was the old VM's).
	uc.refreshTimePage()
	uc.loaded = true
	return uc, nil
}

// GuestMemory returns a VM shell's memory for loading ahead of a restore (a pool maps a
// runtime snapshot's memory file into shells before they are needed). Use it only on a
// shell no UC runs in yet.
func (vm *VM) GuestMemory() *GuestMemory { return &GuestMemory{vm: vm} }

// DirtyRange is a range of a recycled VM's guest memory that may differ from what the
// restore loaded: pages the UC made its own or remapped (File: it mapped another file
// there).
type DirtyRange struct {
	Start, End uint64
	File       bool
}

// RecycleVM takes the VM of a closed UC that was restored from a snapshot and makes it a
// shell again, for another restore of the same runtime snapshot: reset is given every
// range of guest memory that may differ from what the restore loaded (pages the UC made
// its own, from the host's page tables, and every range it remapped) and must put the
// runtime image back there; the vCPUs are reset. What the UC never wrote stays mapped,
// so the host's and (when reset changes no mapping) the hypervisor's page tables stay
// filled: the next guest finds the runtime's pages without faulting them in again. Only
// a UC that ended by Close while every thread was parked or asleep in a call (an idle UC)
// may be recycled.
func (uc *UC) RecycleVM(reset func(g *GuestMemory, dirty []DirtyRange) error) (*VM, error) {
	uc.mu.Lock()
	st := uc.state
	uc.mu.Unlock()
	if st != StateClosed || uc.track == nil || uc.ownVM {
		return nil, fmt.Errorf("%w: recycle the VM of a UC in state %s (restored %v)", ErrState, st, uc.track != nil)
	}
	vm := uc.vm
	dirty, err := uc.dirtyRanges()
	if err != nil {
		return nil, err
	}
	if err := reset(&GuestMemory{vm: vm}, dirty); err != nil {
		return nil, err
	}
	vm.mu.Lock()
	vcpus := append([]*vcpu(nil), vm.vcpus...)
	vm.mu.Unlock()
	for _, c := range vcpus {
		if err := resetVCPU(c); err != nil {
			return nil, err
		}
	}
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.closed {
		return nil, fmt.Errorf("%w: VM closed", ErrState)
	}
	vm.used = false
	vm.free = nil
	vm.residue = vm.residue[:0]
	for _, d := range dirty {
		if !d.File {
			vm.residue = append(vm.residue, [2]uint64{d.Start, d.End})
		}
	}
	return vm, nil
}

// dirtyRanges lists, sorted, the ranges of a restored UC's guest memory that may differ
// from what its restore loaded (RecycleVM): the pages the UC made its own, found by one
// PAGEMAP_SCAN over the whole guest (the guest's page tables map all of it: a guest can
// write outside its mappings too), and the ranges it remapped.
func (uc *UC) dirtyRanges() ([]DirtyRange, error) {
	vm := uc.vm
	pm, err := selfPagemap()
	if err != nil {
		return nil, err
	}
	var own, files [][2]uint64
	err = scanPrivate(pm, vm.mem, userBase, vm.Size, func(lo, hi uint64) {
		if n := len(own); n > 0 && own[n-1][1] == lo {
			own[n-1][1] = hi
			return
		}
		own = append(own, [2]uint64{lo, hi})
	})
	if errors.Is(err, errNoPageScan) {
		err = scanPagemap(pm, vm.mem, userBase, vm.Size, true, func(a, e uint64) {
			if e&pmSwapped == 0 && e&pmFile != 0 {
				return
			}
			if n := len(own); n > 0 && own[n-1][1] == a {
				own[n-1][1] = a + pageSize
				return
			}
			own = append(own, [2]uint64{a, a + pageSize})
		})
	}
	if err != nil {
		return nil, err
	}
	for _, r := range uc.track.ranges() {
		if r.kind == remapFile {
			files = append(files, [2]uint64{r.start, r.end})
		} else {
			own = append(own, [2]uint64{r.start, r.end})
		}
	}
	files = mergeSpans(files)
	var dirty []DirtyRange
	for _, f := range files {
		dirty = append(dirty, DirtyRange{Start: f[0], End: f[1], File: true})
	}
	// The rest, with the file ranges carved out (those are remapped whole).
	for _, o := range mergeSpans(own) {
		a := o[0]
		for _, f := range files {
			if f[1] <= a || f[0] >= o[1] {
				continue
			}
			if a < f[0] {
				dirty = append(dirty, DirtyRange{Start: a, End: f[0]})
			}
			a = max(a, f[1])
		}
		if a < o[1] {
			dirty = append(dirty, DirtyRange{Start: a, End: o[1]})
		}
	}
	slices.SortFunc(dirty, func(a, b DirtyRange) int { return cmp.Compare(a.Start, b.Start) })
	return dirty, nil
}

// resetVCPU puts back what a CPL3 guest can change outside the state a restore writes
// (GPRs, XSAVE, FS/GS bases): its segment registers. CPUID and XCR0 cannot change (and
// KVM refuses KVM_SET_CPUID2 once a vCPU has run); MSRs other than the FS/GS bases and
// control registers are out of CPL3's reach.
func resetVCPU(c *vcpu) error {
	// The last thread on it may have left registers marked dirty in kvm_run's sync area
	// (a call's result written as the UC stopped): KVM would load them at the next entry.
	c.run.setDirty(0)
	s, err := retry(func() (*kvm.Sregs, error) { return kvm.GetSregs(c.fd) })
	if err != nil {
		return fmt.Errorf("KVM_GET_SREGS: %w", err)
	}
	code := kvm.Segment{Base: 0, Limit: 0xffffffff, Selector: selUserCS, Typ: 0xb, Present: 1, DPL: 3, S: 1, L: 1, G: 1}
	data := kvm.Segment{Base: 0, Limit: 0xffffffff, Selector: selUserDS, Typ: 0x3, Present: 1, DPL: 3, S: 1, DB: 1, G: 1}
	s.CS = code
	s.SS, s.DS, s.ES, s.FS, s.GS = data, data, data, data, data
	if _, err := retry(func() (int, error) { return 0, kvm.SetSregs(c.fd, s) }); err != nil {
		return fmt.Errorf("KVM_SET_SREGS: %w", err)
	}
	regs := &kvm.Regs{RFLAGS: 0x2}
	if _, err := retry(func() (int, error) { return 0, kvm.SetRegs(c.fd, regs) }); err != nil {
		return fmt.Errorf("KVM_SET_REGS: %w", err)
	}
	return nil
}

// HostRange is where guest memory lies in this process's address space [lo, hi) (for
// the kernel's accounting of it, /proc/self/smaps).
func (uc *UC) HostRange() (lo, hi uintptr) {
	lo = hostAddr(uc.vm.mem)
	return lo, lo + uintptr(len(uc.vm.mem))
}
