package unikernel

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Signals, as far as runtimes need them.
//
// To another thread (tgkill): see sendThread.
//
// A UC is one process with no other process to signal it, so signals come only from the
// guest itself (raise, abort, kill(getpid()), tgkill to one of its threads) and from faults.
// A self-sent signal is delivered synchronously, at the return of the system call that
// sent it, to the calling thread (or left pending while that thread blocks it, and
// delivered when a later rt_sigprocmask or rt_sigreturn unblocks it): the handler runs on
// an rt_sigframe built as Linux builds it (on the alternate stack with SA_ONSTACK), and
// returns through its SA_RESTORER trampoline into rt_sigreturn. Because delivery happens
// only at a system-call return, where RCX and R11 are dead and the FPU state is the
// caller's to save, the frame carries no FPU state (fpstate = NULL) and a sigreturn gives
// back RCX = RIP and R11 = RFLAGS. Default actions: ignore for SIGCHLD, SIGCONT, SIGURG
// and SIGWINCH, otherwise the UC ends with status 128+signal. A hardware fault (page
// fault, #GP, #UD...) ends the UC with ErrGuestFault and the fault described, handler or
// not: runtimes install SIGSEGV handlers only to report the crash.
//
// State: the actions are Kernel.sigactions; per thread, threadState.sigmask, altstack and
// sigPending (all plain values, saved by snapshots with the thread).

const (
	saNodefer   = 0x40000000
	saResethand = 0x80000000
	saOnstack   = 0x08000000
	saRestorer  = 0x04000000
	saSiginfo   = 0x4
	ssOnstack   = 1
	ssDisable   = 2
	siUser      = 0
	siTkill     = -6

	// rt_sigframe: pretcode, struct ucontext (304 bytes), struct siginfo (128 bytes).
	ucontextSize = 304
	siginfoSize  = 128
	sigframeSize = 8 + ucontextSize + siginfoSize
	ucMcontext   = 40  // offset of uc_mcontext (struct sigcontext) in struct ucontext
	ucSigmask    = 296 // offset of uc_sigmask

	unblockable = 1<<(unix.SIGKILL-1) | 1<<(unix.SIGSTOP-1)
)

func sigBit(sig uint64) uint64 { return 1 << (sig - 1) }

// defaultIgnored: signals whose default action is to do nothing.
func defaultIgnored(sig uint64) bool {
	switch sig {
	case uint64(unix.SIGCHLD), uint64(unix.SIGCONT), uint64(unix.SIGURG), uint64(unix.SIGWINCH):
		return true
	}
	return false
}

// sigaction returns a signal's handler, flags, restorer and mask.
func (k *Kernel) sigaction(sig uint64) (handler, flags, restorer, mask uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	a := k.sigactions[sig][:]
	le := binary.LittleEndian
	return le.Uint64(a), le.Uint64(a[8:]), le.Uint64(a[16:]), le.Uint64(a[24:])
}

// sendSelf is kill/tgkill of the calling thread's own process or thread.
func (k *Kernel) sendSelf(t sysThread, sig uint64, code int32) (uint64, unix.Errno) {
	if sig == 0 {
		return 0, 0
	}
	if sig > 64 {
		return 0, unix.EINVAL
	}
	st := t.state()
	handler, _, _, _ := k.sigaction(sig)
	if handler == 1 || handler == 0 && defaultIgnored(sig) {
		return 0, 0
	}
	if st.sigmask&sigBit(sig) != 0 && sig != uint64(unix.SIGKILL) && sig != uint64(unix.SIGSTOP) {
		atomic.OrUint64(&st.sigPending, sigBit(sig))
		return 0, 0
	}
	k.deliver(t, sig, code, 0)
	return 0, 0
}

// terminate ends the UC as a fatal signal does.
func (k *Kernel) terminate(t sysThread, sig uint64) {
	st := t.state()
	st.exiting = true
	st.exitStatus = 128 + int(sig)
	k.exitGroup(128 + int(sig))
}

// deliver runs sig's action on t at the return of its current system call, whose result
// the interrupted context gets back (rax) when the handler returns.
func (k *Kernel) deliver(t sysThread, sig uint64, code int32, rax uint64) {
	handler, flags, restorer, mask := k.sigaction(sig)
	switch {
	case handler == 1:
		return
	case handler == 0:
		if !defaultIgnored(sig) {
			k.terminate(t, sig)
		}
		return
	}
	th, ok := t.(*Thread)
	if !ok || flags&saRestorer == 0 {
		// No way back from the handler (or no vCPU, in unit tests): as if unhandled.
		k.warnOnce("sig-norestorer", "unikernel: signal handler without SA_RESTORER, terminating", "signal", sig)
		k.terminate(t, sig)
		return
	}
	st := t.state()
	r := th.cpu.run.regs()
	// Where the interrupted code resumes: after the system call, with RAX = 0.
	retRIP, retFlags := r.RIP, r.RFLAGS
	if r.RIP == addrStub+2 {
		retRIP, retFlags = r.RCX, r.R11&userFlags|0x2
	}
	sp := r.RSP
	le := binary.LittleEndian
	ssSP := le.Uint64(st.altstack[0:])
	ssFlags := le.Uint32(st.altstack[8:])
	ssSize := le.Uint64(st.altstack[16:])
	onAlt := ssSize > 0 && sp > ssSP && sp <= ssSP+ssSize
	if flags&saOnstack != 0 && ssFlags&ssDisable == 0 && ssSize > 0 && !onAlt {
		sp = ssSP + ssSize
	} else {
		sp -= 128 // the red zone
	}
	sp = (sp-sigframeSize)&^15 - 8 // as after a call: (sp+8) is 16-byte aligned
	frame, e := k.as.out(sp, sigframeSize)
	if e != 0 {
		// No room for the frame: Linux forces SIGSEGV.
		k.terminate(t, uint64(unix.SIGSEGV))
		return
	}
	clear(frame)
	le.PutUint64(frame[0:], restorer)
	uc := frame[8 : 8+ucontextSize]
	copy(uc[16:40], st.altstack[:])
	if onAlt {
		le.PutUint32(uc[24:], ssOnstack)
	}
	mc := uc[ucMcontext:]
	for i, v := range []uint64{r.R8, r.R9, r.R10, r.R11, r.R12, r.R13, r.R14, r.R15, r.RDI, r.RSI,
		r.RBP, r.RBX, r.RDX, rax, retRIP, r.RSP, retRIP, retFlags} {
		le.PutUint64(mc[8*i:], v)
	}
	le.PutUint16(mc[144:], selUserCS)
	le.PutUint16(mc[150:], selUserDS)
	le.PutUint64(mc[176:], st.sigmask) // oldmask
	le.PutUint64(uc[ucSigmask:], st.sigmask)
	info := frame[8+ucontextSize:]
	le.PutUint32(info[0:], uint32(sig))
	le.PutUint32(info[8:], uint32(code))
	le.PutUint32(info[16:], uint32(k.pid))
	le.PutUint32(info[20:], 1000)

	st.sigmask |= mask
	if flags&saNodefer == 0 {
		st.sigmask |= sigBit(sig)
	}
	st.sigmask &^= unblockable
	if flags&saResethand != 0 {
		k.mu.Lock()
		k.sigactions[sig] = [32]byte{}
		k.mu.Unlock()
	}
	// Thread.syscall resumes at RCX (stub) or RIP (patched site) with RFLAGS from R11 or
	// RFLAGS: set both pairs. RAX (the call's result) is 0.
	r.RSP = sp
	r.RIP, r.RCX = handler, handler
	r.RFLAGS, r.R11 = retFlags&^0x400, retFlags&^0x400 // DF clear, as the ABI wants
	r.RDI = sig
	r.RSI = sp + 8 + ucontextSize
	r.RDX = sp + 8
}

// deliverPending delivers the lowest pending signal the thread no longer blocks, at the
// return of the current system call whose result is rax. It returns what RAX must be:
// rax, or 0 when a handler runs first (the frame keeps rax for rt_sigreturn).
func (k *Kernel) deliverPending(t sysThread, rax uint64) uint64 {
	st := t.state()
	ready := atomic.LoadUint64(&st.sigPending) &^ st.sigmask
	if ready == 0 {
		return rax
	}
	for sig := uint64(1); sig <= 64; sig++ {
		if ready&sigBit(sig) != 0 {
			atomic.AndUint64(&st.sigPending, ^sigBit(sig))
			handler, _, _, _ := k.sigaction(sig)
			k.deliver(t, sig, siTkill, rax)
			if handler > 1 {
				return 0
			}
			return rax
		}
	}
	return rax
}

// sysRtSigreturn restores the context a handler interrupted from the frame at RSP (the
// handler's `ret` popped pretcode, so RSP points at the ucontext).
func sysRtSigreturn(k *Kernel, t sysThread, _ *[6]uint64) (uint64, unix.Errno) {
	th, ok := t.(*Thread)
	if !ok {
		return 0, unix.ENOSYS
	}
	r := th.cpu.run.regs()
	uc, e := k.as.in(r.RSP, ucontextSize)
	if e != 0 {
		k.terminate(t, uint64(unix.SIGSEGV))
		return 0, 0
	}
	le := binary.LittleEndian
	mc := uc[ucMcontext:]
	g := func(i int) uint64 { return le.Uint64(mc[8*i:]) }
	rip, rflags := g(16), g(17)&userFlags|0x2
	if rip >= 1<<47 {
		k.warnOnce("sigreturn-rip", "unikernel: rt_sigreturn to a non-canonical address", "rip", fmt.Sprintf("%#x", rip))
		k.terminate(t, uint64(unix.SIGSEGV))
		return 0, 0
	}
	r.R8, r.R9, r.R10, r.R12, r.R13, r.R14, r.R15 = g(0), g(1), g(2), g(4), g(5), g(6), g(7)
	r.RDI, r.RSI, r.RBP, r.RBX, r.RDX = g(8), g(9), g(10), g(11), g(12)
	rax := g(13)
	r.RSP = g(15)
	r.RIP, r.RCX = rip, rip
	r.RFLAGS, r.R11 = rflags, rflags
	st := t.state()
	st.sigmask = le.Uint64(uc[ucSigmask:]) &^ unblockable
	// A signal it unblocked runs now; dispatch would see it too, but with rax as the
	// result of the call.
	return k.deliverPending(t, rax), 0
}

func sysTgkillSelf(k *Kernel, t sysThread, a *[6]uint64) (uint64, unix.Errno) {
	if int32(a[0]) != int32(k.pid) {
		return 0, unix.ESRCH
	}
	if int(a[1]) != t.TID() {
		return k.sendThread(int(a[1]), a[2])
	}
	return k.sendSelf(t, a[2], siTkill)
}

// sendThread is tgkill of another thread of the UC: a signal with a handler waits in the
// target's pending set and runs when the target's current or next system call returns (a
// thread blocked in a long wait sees it late: the wait is not interrupted); one whose
// action is to terminate ends the UC at once, as it would end the process.
func (k *Kernel) sendThread(tid int, sig uint64) (uint64, unix.Errno) {
	if sig > 64 {
		return 0, unix.EINVAL
	}
	if k.threads == nil {
		return 0, unix.ESRCH
	}
	target := k.threads.thread(tid)
	if target == nil {
		return 0, unix.ESRCH
	}
	if sig == 0 {
		return 0, 0
	}
	handler, _, _, _ := k.sigaction(sig)
	switch {
	case handler == 1 || handler == 0 && defaultIgnored(sig):
	case handler == 0:
		k.exitGroup(128 + int(sig))
	default:
		atomic.OrUint64(&target.state().sigPending, sigBit(sig))
	}
	return 0, 0
}

func sysTkillSelf(k *Kernel, t sysThread, a *[6]uint64) (uint64, unix.Errno) {
	if int(a[0]) != t.TID() {
		return k.sendThread(int(a[0]), a[1])
	}
	return k.sendSelf(t, a[1], siTkill)
}

func sysKillSelf(k *Kernel, t sysThread, a *[6]uint64) (uint64, unix.Errno) {
	if p := int32(a[0]); p != int32(k.pid) && p != 0 && p != -1 && p != -int32(k.pid) {
		return 0, unix.ESRCH
	}
	return k.sendSelf(t, a[1], siUser)
}

// sysRtSigprocmaskDeliver is rt_sigprocmask followed by the delivery of a pending signal
// it unblocked.
func sysRtSigprocmaskDeliver(k *Kernel, t sysThread, a *[6]uint64) (uint64, unix.Errno) {
	// dispatch delivers a pending signal this unblocked, as the call returns.
	return sysRtSigprocmask(k, t, a)
}

// Host signals.
//
// A signal from outside the UC (UC.Signal, as kill(2) from another process) has no
// asynchronous way in: a thread running guest code is never interrupted to run a handler.
// It reaches a thread waiting for it in rt_sigtimedwait (sigwait, sigwaitinfo,
// sigtimedwait), which a runtime that wants host signals keeps asleep for them: the
// launchers' log flush request (runtimes/doc.go). A waiter costs nothing while it
// sleeps, and is asleep in the quiesce sense (a restored thread waits again).

// sigWaiter is a thread asleep in rt_sigtimedwait for the signals in set.
type sigWaiter struct {
	set uint64
	ch  chan struct{} // closed by UC.Signal, once sig is set
	sig uint64
}

// sigWaits holds each kernel's waiters (kept here, not in Kernel: only while one waits).
var sigWaits struct {
	mu sync.Mutex
	m  map[*Kernel][]*sigWaiter
}

func (k *Kernel) addSigWaiter(w *sigWaiter) {
	sigWaits.mu.Lock()
	if sigWaits.m == nil {
		sigWaits.m = map[*Kernel][]*sigWaiter{}
	}
	sigWaits.m[k] = append(sigWaits.m[k], w)
	sigWaits.mu.Unlock()
}

// dropSigWaiter removes w (if a signal has not already) and returns the signal it got.
func (k *Kernel) dropSigWaiter(w *sigWaiter) uint64 {
	sigWaits.mu.Lock()
	defer sigWaits.mu.Unlock()
	l := sigWaits.m[k]
	for i, x := range l {
		if x == w {
			l = append(l[:i:i], l[i+1:]...)
			break
		}
	}
	if len(l) == 0 {
		delete(sigWaits.m, k)
	} else {
		sigWaits.m[k] = l
	}
	return w.sig
}

// Signal sends sig to the UC from the host. It wakes one thread waiting for sig in
// rt_sigtimedwait and reports whether there was one; otherwise the signal is dropped
// (there is no asynchronous delivery: see Host signals in signal.go).
func (uc *UC) Signal(sig int) bool {
	if sig <= 0 || sig > 64 {
		return false
	}
	b := sigBit(uint64(sig))
	sigWaits.mu.Lock()
	defer sigWaits.mu.Unlock()
	l := sigWaits.m[uc.k]
	for i, w := range l {
		if w.set&b != 0 {
			w.sig = uint64(sig)
			close(w.ch)
			l = append(l[:i:i], l[i+1:]...)
			if len(l) == 0 {
				delete(sigWaits.m, uc.k)
			} else {
				sigWaits.m[uc.k] = l
			}
			return true
		}
	}
	return false
}

// sysRtSigtimedwait takes a pending signal of the set (raised by the thread while it
// blocked it), or waits for one from the host (UC.Signal), at most the timeout when there
// is one. The wait is restartable: a snapshot taken meanwhile restores a thread that waits
// again (a timeout starts over).
func sysRtSigtimedwait(k *Kernel, t sysThread, a *[6]uint64) (uint64, unix.Errno) {
	if a[3] != 8 {
		return 0, unix.EINVAL
	}
	set, e := k.as.readU64(a[0])
	if e != 0 {
		return 0, e
	}
	set &^= unblockable
	var timeout time.Duration = -1
	if a[2] != 0 {
		ts, e := k.as.in(a[2], 16)
		if e != 0 {
			return 0, e
		}
		sec, nsec := int64(binary.LittleEndian.Uint64(ts)), int64(binary.LittleEndian.Uint64(ts[8:]))
		if sec < 0 || nsec < 0 || nsec >= 1e9 {
			return 0, unix.EINVAL
		}
		timeout = time.Duration(sec)*time.Second + time.Duration(nsec)
		if sec > 1<<32 {
			timeout = 1 << 62
		}
	}
	st := t.state()
	var sig uint64
	if p := atomic.LoadUint64(&st.sigPending) & set; p != 0 {
		sig = uint64(bits.TrailingZeros64(p)) + 1
		atomic.AndUint64(&st.sigPending, ^sigBit(sig))
	} else {
		if timeout == 0 || set == 0 && timeout < 0 {
			if timeout < 0 {
				k.asleep(nil) // nothing can come: as pause(2)
				return 0, unix.EINTR
			}
			return 0, unix.EAGAIN
		}
		w := &sigWaiter{set: set, ch: make(chan struct{})}
		k.addSigWaiter(w)
		var expired <-chan time.Time
		if timeout > 0 {
			tm := time.NewTimer(timeout)
			defer tm.Stop()
			expired = tm.C
		}
		k.sleeping.Add(1)
		select {
		case <-w.ch:
		case <-expired:
		case <-k.stopped:
		}
		k.sleeping.Add(-1)
		if sig = k.dropSigWaiter(w); sig == 0 {
			select {
			case <-k.stopped:
				return 0, unix.EINTR
			default:
				return 0, unix.EAGAIN
			}
		}
	}
	if a[1] != 0 {
		info, e := k.as.out(a[1], siginfoSize)
		if e != 0 {
			return 0, e
		}
		clear(info)
		binary.LittleEndian.PutUint32(info[0:], uint32(sig))
		binary.LittleEndian.PutUint32(info[8:], siUser)
	}
	return sig, 0
}

func init() {
	for nr, h := range map[uint64]handler{
		unix.SYS_RT_SIGTIMEDWAIT: sysRtSigtimedwait,
		unix.SYS_TGKILL:          sysTgkillSelf,
		unix.SYS_TKILL:           sysTkillSelf,
		unix.SYS_KILL:            sysKillSelf,
		unix.SYS_RT_SIGRETURN:    sysRtSigreturn,
		unix.SYS_RT_SIGPROCMASK:  sysRtSigprocmaskDeliver,
	} {
		syscallTable[nr] = h
	}
}
