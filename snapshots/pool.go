package snapshots

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/seuss-go/seuss/unikernel"
)

// recycledVM is a recycled VM and what it is charged against the memory budget: its
// residue (the pages its earlier UC made private, still the process's own after the
// copy back), rounded up to MB.
type recycledVM struct {
	vm  *unikernel.VM
	mb  int
	seq uint64
}

// residueMB is the charge of a recycled VM: its residue rounded up to MB.
func residueMB(vm *unikernel.VM) int {
	return int((vm.ResidueBytes() + 1<<20 - 1) >> 20)
}

// shellPool keeps VM shells of one size ready: KVM_CREATE_VM, the memory slot
// (~0.6-0.8 ms per GiB here), the system area and one vCPU are paid ahead, not on the
// restore path. A shell serves one UC and is closed with it.
type shellPool struct {
	size uint64
	ch   chan *unikernel.VM
	kick chan struct{}
	// vcpus is how many vCPUs a shell gets ahead: the most threads a restored snapshot
	// had (node: V8's workers and libuv's), so that no restore creates vCPUs itself.
	vcpus atomic.Int32
	// recycledHits counts restores into recycled VMs; of those taken by takeRecycled,
	// recycledReady found one ready and recycledWaited waited for one being recycled.
	recycledHits                  atomic.Int64
	recycledReady, recycledWaited atomic.Int64
	// spares counts idle UCs recycled ahead of the restore that takes their VM
	// (Executor.recycleAhead).
	spares atomic.Int64
	// mappedHits and freshShells count restores into pre-mapped fresh shells and into
	// shells mapped on the restore path.
	mappedHits, freshShells atomic.Int64

	// mapped holds shells with a runtime snapshot's memory file already mapped, by
	// runtime snapshot: a restore of that snapshot skips the mapping (0.3-0.8 ms here).
	mu     sync.Mutex
	mapped map[*RuntimeSnapshot]chan *unikernel.VM
	// recycled holds VMs of idle UCs reset to a runtime snapshot (taken first), each
	// list least recently recycled first.
	recycled map[*RuntimeSnapshot][]recycledVM
	// recycledMB is what the recycled VMs are charged against the memory budget (the sum
	// of their mb); seq orders them by when they were kept.
	recycledMB int
	seq        uint64
	// charge reserves mb against the memory budget without making room (false when it
	// does not fit), uncharge gives it back; nil: recycled VMs are not charged.
	charge   func(mb int) bool
	uncharge func(mb int)
	// recycling counts VMs of each runtime snapshot being recycled; changed is closed
	// (and replaced) when one is done.
	recycling map[*RuntimeSnapshot]int
	changed   chan struct{}
	// waiters holds, by runtime snapshot, the restores waiting in takeRecycled (oldest
	// first), each with a channel (buffered, 1) putMapped hands a recycled VM over by.
	waiters map[*RuntimeSnapshot][]chan *unikernel.VM

	once   sync.Once
	cancel context.CancelFunc
	done   chan struct{}
}

func newShellPool(size uint64, n int) *shellPool {
	p := &shellPool{size: size, ch: make(chan *unikernel.VM, max(n, 1)), kick: make(chan struct{}, 1), done: make(chan struct{}),
		mapped: map[*RuntimeSnapshot]chan *unikernel.VM{}, recycled: map[*RuntimeSnapshot][]recycledVM{},
		recycling: map[*RuntimeSnapshot]int{}, changed: make(chan struct{}), waiters: map[*RuntimeSnapshot][]chan *unikernel.VM{}}
	p.vcpus.Store(1)
	return p
}

// want raises the number of vCPUs shells are prepared with.
func (p *shellPool) want(n int) {
	for {
		cur := p.vcpus.Load()
		if int32(n) <= cur || n > 64 || p.vcpus.CompareAndSwap(cur, int32(n)) {
			return
		}
	}
}

// run refills the pool until ctx ends (the executor's one background goroutine per pool).
func (p *shellPool) run(ctx context.Context) {
	defer close(p.done)
	for {
		for len(p.ch) < cap(p.ch) {
			vm, err := newShell(p.size, int(p.vcpus.Load()))
			if err != nil {
				break // the next get creates its own and reports the error
			}
			select {
			case p.ch <- vm:
			case <-ctx.Done():
				vm.Close()
				return
			}
		}
		p.mu.Lock()
		var rts []*RuntimeSnapshot
		for rt, ch := range p.mapped {
			if len(ch) < cap(ch) {
				rts = append(rts, rt)
			}
		}
		p.mu.Unlock()
		for _, rt := range rts {
			vm, err := newShell(p.size, int(p.vcpus.Load()))
			if err != nil {
				break
			}
			if err := mapRuntime(vm.GuestMemory(), rt); err != nil {
				vm.Close()
				continue
			}
			p.mu.Lock()
			ch := p.mapped[rt]
			if ch == nil || len(ch) == cap(ch) {
				vm.Close()
			} else {
				ch <- vm
			}
			p.mu.Unlock()
			select {
			case p.kick <- struct{}{}: // look again: more may be wanted
			default:
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
		}
	}
}

func newShell(size uint64, vcpus int) (*unikernel.VM, error) {
	vm, err := unikernel.NewVM(size)
	if err != nil {
		return nil, err
	}
	if err := vm.PrepareVCPUs(vcpus); err != nil {
		vm.Close()
		return nil, err
	}
	return vm, nil
}

// get returns a ready shell, or makes one now.
func (p *shellPool) get() (*unikernel.VM, error) {
	select {
	case p.kick <- struct{}{}:
	default:
	}
	select {
	case vm := <-p.ch:
		return vm, nil
	default:
	}
	return newShell(p.size, int(p.vcpus.Load()))
}

// getMapped returns a shell with rt's memory already mapped, if one is ready, and asks
// for more. ok is false when the caller has to map it itself.
func (p *shellPool) getMapped(rt *RuntimeSnapshot) (vm *unikernel.VM, ok bool, err error) {
	p.mu.Lock()
	if vm = p.popRecycledLocked(rt); vm != nil {
		p.mu.Unlock()
		p.recycledHits.Add(1)
		return vm, true, nil
	}
	ch := p.mapped[rt]
	if ch == nil {
		ch = make(chan *unikernel.VM, cap(p.ch))
		p.mapped[rt] = ch
	}
	select {
	case vm = <-ch:
		ok = true
	default:
	}
	p.mu.Unlock()
	if ok && rt.size() != vm.Size {
		vm.Close()
		ok = false
	}
	if ok {
		p.mappedHits.Add(1)
		select {
		case p.kick <- struct{}{}:
		default:
		}
		return vm, true, nil
	}
	p.freshShells.Add(1)
	vm, err = p.get()
	return vm, false, err
}

// putMapped offers a shell that holds rt's memory (a recycled VM) to the pool: to a
// restore waiting for one (takeRecycled) as it is, or kept, its residue charged to the
// memory budget. It is closed when the pool has no room, or the budget none for the
// charge (kept is false). A recycled VM waits for a restore that may never come: it
// does not make room for itself by evicting idle UCs.
func (p *shellPool) putMapped(rt *RuntimeSnapshot, vm *unikernel.VM) (kept bool) {
	mb := residueMB(vm)
	p.mu.Lock()
	_, ok := p.mapped[rt]
	if l := p.waiters[rt]; ok && len(l) > 0 {
		// Uncharged: the restore takes it now, and its UC has reserved its own limit.
		l[0] <- vm
		p.unwaitLocked(rt, l[0])
		p.mu.Unlock()
		return true
	}
	if ok && len(p.recycled[rt]) < maxRecycled && (p.charge == nil || p.charge(mb)) {
		p.seq++
		p.recycled[rt] = append(p.recycled[rt], recycledVM{vm: vm, mb: mb, seq: p.seq})
		p.recycledMB += mb
		kept = true
	}
	p.mu.Unlock()
	if !kept {
		vm.Close()
	}
	return kept
}

// popRecycledLocked takes the most recently recycled VM of rt out of the pool, its
// charge released (the restore's UC reserves its own memory limit); nil when none.
func (p *shellPool) popRecycledLocked(rt *RuntimeSnapshot) *unikernel.VM {
	l := p.recycled[rt]
	if len(l) == 0 {
		return nil
	}
	r := l[len(l)-1]
	p.recycled[rt] = l[:len(l)-1]
	p.unchargeLocked(r.mb)
	return r.vm
}

// unchargeLocked gives back the charge of a recycled VM leaving the pool.
func (p *shellPool) unchargeLocked(mb int) {
	p.recycledMB -= mb
	if p.uncharge != nil {
		p.uncharge(mb)
	}
}

// dropOldestLocked takes the least recently recycled VM (of any runtime snapshot) out of
// the pool, its charge released; the caller closes it. nil when none is left.
func (p *shellPool) dropOldestLocked() *unikernel.VM {
	var old *RuntimeSnapshot
	for rt, l := range p.recycled {
		if len(l) > 0 && (old == nil || l[0].seq < p.recycled[old][0].seq) {
			old = rt
		}
	}
	if old == nil {
		return nil
	}
	l := p.recycled[old]
	r := l[0]
	p.recycled[old] = append(l[:0], l[1:]...)
	p.unchargeLocked(r.mb)
	return r.vm
}

// chargedMB is what the recycled VMs are charged against the memory budget.
func (p *shellPool) chargedMB() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.recycledMB
}

// recycleStart says a VM of rt is being recycled; recycleDone that it is back (or not).
func (p *shellPool) recycleStart(rt *RuntimeSnapshot) {
	p.mu.Lock()
	p.recycling[rt]++
	p.mu.Unlock()
}

func (p *shellPool) recycleDone(rt *RuntimeSnapshot) {
	p.mu.Lock()
	if p.recycling[rt]--; p.recycling[rt] <= 0 {
		delete(p.recycling, rt)
	}
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// takeRecycled returns a recycled VM of rt, waiting up to d while some are being
// recycled; ok is false when none came. While it waits, a VM recycled for rt is handed
// to it (putMapped), never charged: the room it would take may already be the restore's.
func (p *shellPool) takeRecycled(rt *RuntimeSnapshot, d time.Duration) (vm *unikernel.VM, ok bool) {
	var t *time.Timer
	var w chan *unikernel.VM
	expired := false
	for {
		p.mu.Lock()
		if w != nil {
			select {
			case vm = <-w:
			default:
			}
		}
		if vm == nil {
			vm = p.popRecycledLocked(rt)
		}
		if vm != nil || expired || p.recycling[rt] == 0 || d <= 0 {
			p.unwaitLocked(rt, w)
			p.mu.Unlock()
			if t != nil {
				t.Stop()
			}
			if vm == nil {
				return nil, false
			}
			p.recycledHits.Add(1)
			if t != nil {
				p.recycledWaited.Add(1)
			} else {
				p.recycledReady.Add(1)
			}
			return vm, true
		}
		if w == nil {
			w = make(chan *unikernel.VM, 1)
			p.waiters[rt] = append(p.waiters[rt], w)
		}
		ch := p.changed
		p.mu.Unlock()
		if t == nil {
			t = time.NewTimer(d)
		}
		select {
		case <-ch:
		case <-t.C:
			expired = true // look once more: a VM may have been handed over meanwhile
		}
	}
}

// unwaitLocked takes a restore's channel out of rt's waiters (nothing is sent to it
// afterwards); w may be nil.
func (p *shellPool) unwaitLocked(rt *RuntimeSnapshot, w chan *unikernel.VM) {
	if w == nil {
		return
	}
	l := p.waiters[rt]
	for i, x := range l {
		if x == w {
			l = append(l[:i:i], l[i+1:]...)
			break
		}
	}
	if len(l) == 0 {
		delete(p.waiters, rt)
	} else {
		p.waiters[rt] = l
	}
}

// recyclingCount is how many VMs of rt are being recycled.
func (p *shellPool) recyclingCount(rt *RuntimeSnapshot) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.recycling[rt]
}

// spareWanted reports whether no recycled VM of rt is ready or on its way.
func (p *shellPool) spareWanted(rt *RuntimeSnapshot) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.recycled[rt]) == 0 && p.recycling[rt] == 0
}

// track makes rt's pools (pre-mapped shells, recycled VMs) exist, as the first
// getMapped does: putMapped keeps VMs only for runtime snapshots in use.
func (p *shellPool) track(rt *RuntimeSnapshot) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mapped[rt] == nil {
		p.mapped[rt] = make(chan *unikernel.VM, cap(p.ch))
	}
}

// recycledCount is how many recycled VMs of rt are ready.
func (p *shellPool) recycledCount(rt *RuntimeSnapshot) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.recycled[rt])
}

// maxRecycled bounds the recycled VMs kept per runtime snapshot.
const maxRecycled = 8

// forget drops the mapped shells of a runtime snapshot that is gone.
func (p *shellPool) forget(rt *RuntimeSnapshot) {
	p.mu.Lock()
	ch := p.mapped[rt]
	delete(p.mapped, rt)
	rec := p.recycled[rt]
	delete(p.recycled, rt)
	for _, r := range rec {
		p.unchargeLocked(r.mb)
	}
	p.mu.Unlock()
	drain(ch)
	for _, r := range rec {
		r.vm.Close()
	}
}

func drain(ch chan *unikernel.VM) {
	for ch != nil {
		select {
		case vm := <-ch:
			vm.Close()
		default:
			return
		}
	}
}

// close stops the refill and closes the shells left.
func (p *shellPool) close() {
	if p.cancel != nil {
		p.cancel()
		<-p.done
	}
	p.mu.Lock()
	for rt, ch := range p.mapped {
		drain(ch)
		delete(p.mapped, rt)
	}
	for rt, l := range p.recycled {
		for _, r := range l {
			p.unchargeLocked(r.mb)
			r.vm.Close()
		}
		delete(p.recycled, rt)
	}
	p.mu.Unlock()
	for {
		select {
		case vm := <-p.ch:
			vm.Close()
		default:
			return
		}
	}
}

// mapRuntime maps a runtime snapshot's memory file into a fresh shell (MapRanges).
func mapRuntime(g *unikernel.GuestMemory, rt *RuntimeSnapshot) error {
	for _, m := range rt.MapRanges() {
		if err := g.MapFile(m[0], m[1]-m[0], rt.MemoryFd(), int64(m[0])); err != nil {
			return fmt.Errorf("map runtime memory: %w", err)
		}
	}
	return nil
}

// inflight counts background jobs (snapshot writes, VM recycling). Unlike a WaitGroup,
// jobs may start while someone waits (activations never stop arriving).
type inflight struct {
	mu   sync.Mutex
	cond *sync.Cond
	n    int
}

func (f *inflight) add() {
	f.mu.Lock()
	f.n++
	f.mu.Unlock()
}

func (f *inflight) done() {
	f.mu.Lock()
	f.n--
	if f.n == 0 && f.cond != nil {
		f.cond.Broadcast()
	}
	f.mu.Unlock()
}

// wait returns once no job is running.
func (f *inflight) wait() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cond == nil {
		f.cond = sync.NewCond(&f.mu)
	}
	for f.n > 0 {
		f.cond.Wait()
	}
}
