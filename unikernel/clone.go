package unikernel

import (
	"fmt"

	"github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"
)

// Guest threads.
//
// Design: one vCPU per guest thread. A thread is a goroutine locked to an OS thread that
// loops on KVM_RUN with its own vCPU; its system-call handlers run on that goroutine and
// block there (futex, epoll, read). So the host scheduler time-slices busy guest threads
// like any other threads, a thread that computes without calling in is preempted by the
// host kernel (no VMM timer needed), and kicks (immediate_exit + SIGURG) stop every thread
// for exit_group, Kill, timeouts and Pause. Multiplexing several guest threads on one vCPU
// would save vCPUs but would need a VMM scheduler with a preemption timer, an exit per
// switch (~20-30 µs here) and register swaps through ioctls; Node's threads are mostly
// asleep in futex waits, where a vCPU costs nothing but a parked OS thread. vCPUs of
// exited threads are kept in the VM and reused by later clones (KVM cannot destroy a single
// vCPU). For snapshots, a thread's whole state is its vCPU (registers, sregs, XSAVE, FS/GS
// base mirrored in Thread) plus threadState; at a quiescent point every thread is either
// parked before KVM_RUN or blocked in a handler.

// cloneFlags the library OS supports: a thread in the same process, as glibc's
// pthread_create asks (CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|
// CLONE_SYSVSEM|CLONE_SETTLS|CLONE_PARENT_SETTID|CLONE_CHILD_CLEARTID).
const (
	cloneVM            = 0x100
	cloneFS            = 0x200
	cloneFiles         = 0x400
	cloneSighand       = 0x800
	clonePidfd         = 0x1000
	cloneVfork         = 0x4000
	cloneParent        = 0x8000
	cloneThread        = 0x10000
	cloneSysvsem       = 0x40000
	cloneSettls        = 0x80000
	cloneParentSettid  = 0x100000
	cloneChildCleartid = 0x200000
	cloneDetached      = 0x400000
	cloneChildSettid   = 0x1000000

	cloneThreadFlags = cloneVM | cloneFS | cloneFiles | cloneSighand | cloneThread
	cloneAllowed     = cloneThreadFlags | cloneSysvsem | cloneSettls | cloneParentSettid |
		cloneChildCleartid | cloneDetached | cloneChildSettid
)

// DefaultMaxThreads is the default of Config.MaxThreads.
const DefaultMaxThreads = 64

// threadOps is what the library OS needs from the VMM to create and end threads; the UC
// implements it (tests of the system-call layer run without one).
type threadOps interface {
	clone(parent sysThread, flags, stack, ptid, ctid, tls uint64) (int, unix.Errno)
	exitThread(t sysThread, status int)
	// thread returns the live thread with this id, or nil.
	thread(tid int) sysThread
}

func sysClone(k *Kernel, t sysThread, a *[6]uint64) (uint64, unix.Errno) {
	// x86-64 argument order: flags, newsp, parent_tid, child_tid, tls.
	flags, stack, ptid, ctid, tls := a[0], a[1], a[2], a[3], a[4]
	if flags&cloneThreadFlags != cloneThreadFlags {
		// fork, vfork, posix_spawn: a UC is one process.
		return 0, unix.ENOSYS
	}
	if flags&0xff != 0 || flags&^(cloneAllowed|0xff) != 0 {
		return 0, unix.EINVAL
	}
	if k.threads == nil {
		return 0, unix.ENOSYS
	}
	tid, e := k.threads.clone(t, flags, stack, ptid, ctid, tls)
	return uint64(tid), e
}

// sysClone3: glibc falls back to clone when clone3 says ENOSYS.
func sysClone3(*Kernel, sysThread, *[6]uint64) (uint64, unix.Errno) { return 0, unix.ENOSYS }

func sysExitThread(k *Kernel, t sysThread, a *[6]uint64) (uint64, unix.Errno) {
	st := t.state()
	st.exiting = true
	st.exitStatus = int(a[0] & 0xff)
	// CLONE_CHILD_CLEARTID / set_tid_address: zero the word and wake one waiter
	// (pthread_join). A bad address is ignored, as Linux does.
	if st.clearTID != 0 {
		if k.as.writeU32(st.clearTID, 0) == 0 {
			k.futexWake(st.clearTID, 1, ^uint32(0))
		}
	}
	if k.threads == nil {
		k.exitGroup(st.exitStatus)
		return 0, 0
	}
	k.threads.exitThread(t, st.exitStatus)
	return 0, 0
}

// clone implements threadOps: a new guest thread resuming after the parent's system call
// with RAX = 0, on stack with FS base tls (CLONE_SETTLS).
func (uc *UC) clone(p sysThread, flags, stack, ptid, ctid, tls uint64) (int, unix.Errno) {
	parent, ok := p.(*Thread)
	if !ok {
		return 0, unix.ENOSYS
	}
	k := uc.k
	if flags&cloneParentSettid != 0 && !k.as.check(ptid, 4, unix.PROT_WRITE) {
		return 0, unix.EFAULT
	}
	if flags&(cloneChildSettid|cloneChildCleartid) != 0 && !k.as.check(ctid, 4, unix.PROT_WRITE) {
		return 0, unix.EFAULT
	}
	if flags&cloneSettls != 0 && tls >= 1<<47 {
		return 0, unix.EPERM
	}
	// The child resumes where the parent's system call returns (see Thread.syscall).
	pr := parent.cpu.run.regs()
	regs := *pr
	if pr.RIP == addrStub+2 {
		regs.RIP = pr.RCX
		regs.RFLAGS = pr.R11&userFlags | 0x2
	}
	regs.RCX = regs.RIP
	regs.R11 = regs.RFLAGS
	regs.RAX = 0
	if stack != 0 {
		regs.RSP = stack
	}
	fs := parent.fsBase
	if flags&cloneSettls != 0 {
		fs = tls
	}

	uc.mu.Lock()
	if uc.stopping || uc.state == StateExited || uc.state == StateClosed {
		uc.mu.Unlock()
		return 0, unix.EAGAIN
	}
	if uc.live >= uc.cfg.MaxThreads {
		uc.mu.Unlock()
		k.warnOnce("threads", "unikernel: thread limit reached, clone returns EAGAIN", "limit", uc.cfg.MaxThreads)
		return 0, unix.EAGAIN
	}
	uc.live++
	k.nextTID++
	tid := k.nextTID
	uc.mu.Unlock()

	cpu, err := uc.vm.takeVCPU(regs.RIP, regs.RSP, fs)
	if err == nil {
		err = copyFPU(parent.cpu, cpu)
	}
	if err == nil {
		_, err = retry(func() (int, error) { return 0, kvm.SetRegs(cpu.fd, &regs) })
	}
	if err == nil && parent.gsBase != 0 {
		err = setMSRs(cpu.fd, map[uint32]uint64{msrGSBase: parent.gsBase})
	}
	if err != nil {
		if cpu != nil {
			uc.vm.putVCPU(cpu)
		}
		uc.mu.Lock()
		uc.live--
		uc.mu.Unlock()
		k.warnOnce("vcpu", "unikernel: cannot create a vCPU for a new thread", "err", err)
		return 0, unix.EAGAIN
	}
	t := &Thread{uc: uc, tid: tid, cpu: cpu, fsBase: fs, gsBase: parent.gsBase}
	t.ts.sigmask = parent.ts.sigmask
	if flags&cloneChildCleartid != 0 {
		t.ts.clearTID = ctid
	}
	if flags&cloneParentSettid != 0 {
		k.as.writeU32(ptid, uint32(tid))
	}
	if flags&cloneChildSettid != 0 {
		k.as.writeU32(ctid, uint32(tid))
	}

	uc.mu.Lock()
	if uc.stopping {
		uc.live--
		uc.mu.Unlock()
		uc.vm.putVCPU(cpu)
		return 0, unix.EAGAIN
	}
	uc.threads = append(uc.threads, t)
	uc.alive++
	uc.created++
	uc.peak = max(uc.peak, uc.live)
	uc.mu.Unlock()
	go t.loop()
	return tid, 0
}

// exitThread implements threadOps: the calling thread ends (its loop returns once the
// handler does); the last one to exit ends the UC with its status, as Linux does.
func (uc *UC) exitThread(t sysThread, status int) {
	uc.mu.Lock()
	uc.live--
	last := uc.live <= 0
	if th, ok := t.(*Thread); ok && !last {
		th.gone = true
	}
	uc.mu.Unlock()
	if last {
		uc.exitGroup(status)
	}
}

// threadGone removes an exited thread and gives its vCPU back to the VM (called from the
// thread's own loop after its last KVM_RUN).
func (uc *UC) threadGone(t *Thread) {
	uc.mu.Lock()
	for i, x := range uc.threads {
		if x == t {
			uc.threads = append(uc.threads[:i:i], uc.threads[i+1:]...)
			break
		}
	}
	uc.mu.Unlock()
	uc.vm.putVCPU(t.cpu)
}

// copyFPU gives a new thread its parent's x87/SSE/AVX state (control words included), as
// clone does.
func copyFPU(from, to *vcpu) error {
	x, err := getXSAVE(from.fd)
	if err != nil {
		return err
	}
	return setXSAVE(to.fd, x)
}

// takeVCPU returns a vCPU set up for CPL3 at rip/rsp with FS base fs: a free one of an
// exited thread, or a new one.
func (vm *VM) takeVCPU(rip, rsp, fs uint64) (*vcpu, error) {
	vm.mu.Lock()
	if vm.closed {
		vm.mu.Unlock()
		return nil, fmt.Errorf("unikernel: VM closed")
	}
	if n := len(vm.free); n > 0 {
		c := vm.free[n-1]
		vm.free = vm.free[:n-1]
		vm.mu.Unlock()
		// The last thread's exit left its registers marked dirty in kvm_run: KVM would
		// load them over ours at the next entry.
		c.run.setDirty(0)
		if err := vm.setupVCPU(c, rip, rsp, fs); err != nil {
			vm.putVCPU(c)
			return nil, err
		}
		return c, nil
	}
	vm.mu.Unlock()
	return vm.newVCPU(rip, rsp, fs)
}

// putVCPU returns a vCPU no thread runs on to the free list.
func (vm *VM) putVCPU(c *vcpu) {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if !vm.closed {
		vm.free = append(vm.free, c)
	}
}

// warnOnce logs a warning the first time key is seen in this UC.
func (k *Kernel) warnOnce(key, msg string, args ...any) {
	if _, dup := k.warned.LoadOrStore(key, true); dup || k.log == nil {
		return
	}
	k.log.Warn(msg, args...)
}

// thread implements threadOps.
func (uc *UC) thread(tid int) sysThread {
	uc.mu.Lock()
	defer uc.mu.Unlock()
	for _, t := range uc.threads {
		if t.tid == tid && !t.gone {
			return t
		}
	}
	return nil
}
