package snapshots

import (
	"context"
	"sync"

	"github.com/seuss-go/seuss/unikernel"
)

// shellPool keeps VM shells of one size ready: KVM_CREATE_VM, the memory slot
// (~0.6-0.8 ms per GiB here), the system area and one vCPU are paid ahead, not on the
// restore path. A shell serves one UC and is closed with it.
type shellPool struct {
	size uint64
	ch   chan *unikernel.VM
	kick chan struct{}

	once   sync.Once
	cancel context.CancelFunc
	done   chan struct{}
}

func newShellPool(size uint64, n int) *shellPool {
	return &shellPool{size: size, ch: make(chan *unikernel.VM, max(n, 1)), kick: make(chan struct{}, 1), done: make(chan struct{})}
}

// run refills the pool until ctx ends (the executor's one background goroutine per pool).
func (p *shellPool) run(ctx context.Context) {
	defer close(p.done)
	for {
		for len(p.ch) < cap(p.ch) {
			vm, err := newShell(p.size)
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
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
		}
	}
}

func newShell(size uint64) (*unikernel.VM, error) {
	vm, err := unikernel.NewVM(size)
	if err != nil {
		return nil, err
	}
	if err := vm.PrepareVCPUs(1); err != nil {
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
	return newShell(p.size)
}

// close stops the refill and closes the shells left.
func (p *shellPool) close() {
	if p.cancel != nil {
		p.cancel()
		<-p.done
	}
	for {
		select {
		case vm := <-p.ch:
			vm.Close()
		default:
			return
		}
	}
}
