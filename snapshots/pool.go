package snapshots

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/seuss-go/seuss/unikernel"
)

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
	// recycled holds VMs of idle UCs reset to a runtime snapshot (taken first).
	recycled map[*RuntimeSnapshot][]*unikernel.VM
	// recycling counts VMs of each runtime snapshot being recycled; changed is closed
	// (and replaced) when one is done.
	recycling map[*RuntimeSnapshot]int
	changed   chan struct{}

	once   sync.Once
	cancel context.CancelFunc
	done   chan struct{}
}

func newShellPool(size uint64, n int) *shellPool {
	p := &shellPool{size: size, ch: make(chan *unikernel.VM, max(n, 1)), kick: make(chan struct{}, 1), done: make(chan struct{}),
		mapped: map[*RuntimeSnapshot]chan *unikernel.VM{}, recycled: map[*RuntimeSnapshot][]*unikernel.VM{},
		recycling: map[*RuntimeSnapshot]int{}, changed: make(chan struct{})}
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
	if l := p.recycled[rt]; len(l) > 0 {
		vm = l[len(l)-1]
		p.recycled[rt] = l[:len(l)-1]
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

// putMapped offers a shell that holds rt's memory (a recycled VM) to the pool; it is
// closed when the pool has no room.
func (p *shellPool) putMapped(rt *RuntimeSnapshot, vm *unikernel.VM) {
	p.mu.Lock()
	if _, ok := p.mapped[rt]; ok && len(p.recycled[rt]) < maxRecycled {
		p.recycled[rt] = append(p.recycled[rt], vm)
		vm = nil
	}
	p.mu.Unlock()
	if vm != nil {
		vm.Close()
	}
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
// recycled; ok is false when none came.
func (p *shellPool) takeRecycled(rt *RuntimeSnapshot, d time.Duration) (vm *unikernel.VM, ok bool) {
	var t *time.Timer
	for {
		p.mu.Lock()
		if l := p.recycled[rt]; len(l) > 0 {
			vm = l[len(l)-1]
			p.recycled[rt] = l[:len(l)-1]
			p.mu.Unlock()
			p.recycledHits.Add(1)
			if t != nil {
				t.Stop()
				p.recycledWaited.Add(1)
			} else {
				p.recycledReady.Add(1)
			}
			return vm, true
		}
		if p.recycling[rt] == 0 || d <= 0 {
			p.mu.Unlock()
			if t != nil {
				t.Stop()
			}
			return nil, false
		}
		ch := p.changed
		p.mu.Unlock()
		if t == nil {
			t = time.NewTimer(d)
		}
		select {
		case <-ch:
		case <-t.C:
			return nil, false
		}
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
	p.mu.Unlock()
	drain(ch)
	for _, vm := range rec {
		vm.Close()
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
		for _, vm := range l {
			vm.Close()
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
