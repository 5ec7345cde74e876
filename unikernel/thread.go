package unikernel

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"
)

// Thread is one guest thread: a vCPU, the goroutine (locked to an OS thread) that runs it,
// and the per-thread state the library OS keeps. Registers live in the vCPU while it runs;
// FS and GS bases are mirrored here so that a snapshot can read them without an ioctl.
type Thread struct {
	uc     *UC
	tid    int
	cpu    *vcpu
	fsBase uint64
	gsBase uint64
	ts     threadState
	osTid  atomic.Int32

	// inGuest is true while the thread may be in KVM_RUN (guarded by uc.mu).
	inGuest bool
	// inCall is true while the library OS serves one of the thread's system calls; the
	// synced registers then hold the call's entry state (snapshots re-run the call).
	inCall atomic.Bool
	// gone: the thread called exit while others live on (its vCPU is reused).
	gone bool
}

// TID implements sysThread.
func (t *Thread) TID() int { return t.tid }

func (t *Thread) state() *threadState { return &t.ts }

func (t *Thread) fsBaseValue() uint64 { return t.fsBase }

// setFSBase implements arch_prctl(ARCH_SET_FS): the thread is outside KVM_RUN, so the MSR
// write takes effect at the next entry.
func (t *Thread) setFSBase(v uint64) error {
	if err := setMSRs(t.cpu.fd, map[uint32]uint64{msrFSBase: v}); err != nil {
		return err
	}
	t.fsBase = v
	return nil
}

func (t *Thread) setGSBase(v uint64) error {
	if err := setMSRs(t.cpu.fd, map[uint32]uint64{msrGSBase: v}); err != nil {
		return err
	}
	t.gsBase = v
	return nil
}

// kick makes the thread leave KVM_RUN soon: immediate_exit covers the window before the
// next entry, the signal (SIGURG, which the Go runtime tolerates) interrupts a running guest.
func (t *Thread) kick() {
	if t.cpu == nil || t.cpu.run == nil {
		return
	}
	t.cpu.run.setImmediateExit(1)
	if tid := t.osTid.Load(); tid != 0 {
		_ = unix.Tgkill(unix.Getpid(), int(tid), unix.SIGURG)
	}
}

// loop runs the guest thread until the UC stops.
func (t *Thread) loop() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	t.osTid.Store(int32(unix.Gettid()))
	defer t.osTid.Store(0)
	defer t.uc.threadDone()
	uc := t.uc
	run := t.cpu.run
	for {
		// Reset immediate_exit before looking at the flags (see kick).
		run.setImmediateExit(0)
		uc.mu.Lock()
		for uc.pauseReq {
			t.inGuest = false
			uc.cond.Broadcast()
			uc.cond.Wait()
		}
		select {
		case <-uc.stopCh:
			t.inGuest = false
			uc.cond.Broadcast()
			uc.mu.Unlock()
			return
		default:
		}
		t.inGuest = true
		uc.mu.Unlock()

		run.setValid(syncX86Regs)
		t0 := time.Now()
		err := kvmRun(t.cpu.fd)
		t1 := time.Now()
		uc.runNanos.Add(int64(t1.Sub(t0)))
		uc.exits.Add(1)
		uc.mu.Lock()
		t.inGuest = false
		uc.cond.Broadcast()
		uc.mu.Unlock()
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			uc.stop(fmt.Errorf("%w: KVM_RUN: %v", ErrVMExit, err), 128+int(unix.SIGKILL))
			return
		}
		ok := t.handleExit(run)
		uc.handlerNanos.Add(int64(time.Since(t1)))
		if !ok {
			if t.gone {
				uc.threadGone(t)
			}
			return
		}
	}
}

// handleExit serves one exit. It returns false when the thread must stop.
func (t *Thread) handleExit(run *runMap) bool {
	uc := t.uc
	switch reason := run.exitReason(); reason {
	case exitIO:
		dir, _, port, _, _ := run.io()
		if dir == 1 && port == SyscallPort {
			if !uc.cfg.NoVDSO {
				uc.refreshTime(t.cpu, false)
			}
			t.inCall.Store(true)
			t.syscall(run)
			t.inCall.Store(false)
			return !t.ts.exiting
		}
		if dir == 1 && port == exceptionPort {
			t.exception(run.regs())
			return false
		}
		uc.stop(fmt.Errorf("%w: I/O to port %#x", ErrVMExit, port), 128+int(unix.SIGSYS))
	case exitIntr:
		return true
	case exitShutdown:
		uc.stop(fmt.Errorf("%w: shutdown (triple fault) at rip %#x", ErrVMExit, run.regs().RIP), 128+int(unix.SIGSEGV))
	case exitMMIO:
		uc.stop(fmt.Errorf("%w: access outside guest memory at rip %#x", ErrGuestFault, run.regs().RIP), 128+int(unix.SIGSEGV))
	default:
		uc.stop(fmt.Errorf("%w: exit reason %d at rip %#x", ErrVMExit, reason, run.regs().RIP), 128+int(unix.SIGKILL))
	}
	return false
}

// detectMode returns the host's mode (probed at start), recording it for the UC's stats.
func (t *Thread) detectMode() Mode {
	uc := t.uc
	if m := Mode(uc.mode.Load()); m != ModeUnknown {
		return m
	}
	m := uc.vm.host.mode
	uc.mode.Store(int32(m))
	return m
}

// syscall serves the system call in the synced registers and arranges the return.
//
// Two ways in. The `syscall` instruction lands in the entry stub, whose port write exits
// (RIP = stub+2). Under PVM that costs two traps to the hypervisor (the syscall, then the
// port write), so the first call from each site rewrites that site's 2-byte `syscall`
// (0f 05) into the 2-byte `out %al, $SyscallPort` (e6 f0), which the TSS I/O bitmap lets
// CPL3 execute: later calls from that site exit directly, in one trap. The site is known to
// hold a real syscall instruction because the CPU just executed it (RCX-2). A patched site
// exits with RIP after the out; RCX and R11 are then set as `syscall` would have.
func (t *Thread) syscall(run *runMap) {
	r := run.regs()
	uc := t.uc
	a := [6]uint64{r.RDI, r.RSI, r.RDX, r.R10, r.R8, r.R9}
	if r.RIP != addrStub+2 {
		// A patched site (or the guest's own out to the port: same thing).
		r.RAX = uc.k.dispatch(t, r.RAX, &a)
		r.RCX = r.RIP
		r.R11 = r.RFLAGS
		run.setDirty(syncX86Regs)
		return
	}
	mode := t.detectMode()
	site := r.RCX // before dispatch: signal delivery and rt_sigreturn rewrite RCX
	r.RAX = uc.k.dispatch(t, r.RAX, &a)
	if !uc.cfg.NoSyscallPatching {
		t.patchSite(site)
	}
	if mode == ModePVM {
		// `syscall` stayed at CPL3: return to the caller ourselves.
		r.RIP = r.RCX
		// R11 is what `syscall` saved, unless the guest jumped into the stub itself with a
		// crafted R11: keep only flags CPL3 may set (never IOPL, NT, VM or TF).
		r.RFLAGS = r.R11&userFlags | 0x2
	}
	// Under VMX the stub's sysretq returns to RCX with RFLAGS = R11 at CPL3.
	if mode == ModeVMX && r.RCX >= 1<<47 {
		uc.stop(fmt.Errorf("%w: non-canonical return address %#x", ErrGuestFault, r.RCX), 128+int(unix.SIGSEGV))
		t.ts.exiting = true
		return
	}
	run.setDirty(syncX86Regs)
}

// userFlags are the RFLAGS bits a CPL3 guest may set itself: CF, PF, AF, ZF, SF, IF, DF,
// OF, AC, ID.
const userFlags = 0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x200 | 0x400 | 0x800 | 0x40000 | 0x200000

// patchSite rewrites the syscall instruction that ends at ret (see syscall).
func (t *Thread) patchSite(ret uint64) {
	mem := t.uc.vm.mem
	if ret < userBase+2 || ret > uint64(len(mem)) {
		return
	}
	site := mem[ret-2 : ret]
	if site[0] == 0x0f && site[1] == 0x05 {
		site[0], site[1] = 0xe6, SyscallPort
		t.uc.patched.Add(1)
	}
}

// exception ends the UC on a guest exception (issue: signal delivery comes later).
func (t *Thread) exception(r *kvm.Regs) {
	uc := t.uc
	mem := uc.vm.mem
	sp := r.RSP
	if sp < addrKStack || sp+56 > kstackTop {
		uc.stop(fmt.Errorf("%w: exception with a bad stack %#x", ErrVMExit, sp), 128+int(unix.SIGSEGV))
		return
	}
	le := binary.LittleEndian
	vec := le.Uint64(mem[sp:])
	code := le.Uint64(mem[sp+8:])
	rip := le.Uint64(mem[sp+16:])
	var cr2 uint64
	if s, err := retry(func() (*kvm.Sregs, error) { return kvm.GetSregs(t.cpu.fd) }); err == nil {
		cr2 = s.CR2
	}
	sig, name := unix.SIGSEGV, fmt.Sprintf("vector %d", vec)
	switch vec {
	case 0:
		sig, name = unix.SIGFPE, "divide error"
	case 1, 3:
		sig, name = unix.SIGTRAP, "breakpoint"
	case 6:
		sig, name = unix.SIGILL, "invalid opcode"
	case 13:
		name = "general protection"
	case 14:
		name = fmt.Sprintf("page fault at %#x", cr2)
	case 16, 19:
		sig, name = unix.SIGFPE, "floating-point exception"
	}
	uc.stop(fmt.Errorf("%w: %s (error code %#x) at rip %#x", ErrGuestFault, name, code, rip), 128+int(sig))
}
