package unikernel

import (
	"encoding/binary"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Futexes. One process, so private and shared futexes are the same: a waiter is keyed by
// the guest address of its word. The table is plain data (address -> waiters in FIFO
// order); a waiter is a blocked handler, so at a quiescent point (snapshot) each waiter is
// a thread inside futex(FUTEX_WAIT*), whose system call restarts from its registers.

// futexTable holds futex waiters by guest address.
type futexTable struct {
	mu      sync.Mutex
	waiters map[uint64][]*futexWaiter
}

type futexWaiter struct {
	addr   uint64 // current key (FUTEX_REQUEUE moves waiters), guarded by futexTable.mu
	bitset uint32
	ch     chan struct{} // closed by the waker
	woken  bool          // guarded by futexTable.mu
}

const (
	futexWait          = 0
	futexWake          = 1
	futexRequeue       = 3
	futexCmpRequeue    = 4
	futexWakeOp        = 5
	futexWaitBitset    = 9
	futexWakeBitset    = 10
	futexPrivateFlag   = 128
	futexClockRealtime = 256
)

func sysFutex(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	addr, op, val := a[0], a[1]&^(futexPrivateFlag|futexClockRealtime), uint32(a[2])
	if addr%4 != 0 {
		return 0, unix.EINVAL
	}
	switch op {
	case futexWait, futexWaitBitset:
		bitset := ^uint32(0)
		if op == futexWaitBitset {
			bitset = uint32(a[5])
			if bitset == 0 {
				return 0, unix.EINVAL
			}
		}
		if op == futexWait && a[1]&futexClockRealtime != 0 {
			return 0, unix.ENOSYS
		}
		var timeout time.Duration = -1
		if a[3] != 0 {
			d, e := k.getTimespec(a[3])
			if e != 0 {
				return 0, e
			}
			timeout = d
			if op == futexWaitBitset {
				// Absolute, on CLOCK_MONOTONIC unless FUTEX_CLOCK_REALTIME.
				clock := uint64(unix.CLOCK_MONOTONIC)
				if a[1]&futexClockRealtime != 0 {
					clock = unix.CLOCK_REALTIME
				}
				now, _ := k.now(clock)
				timeout = max(d-time.Duration(now.Nano()), 0)
			}
		}
		return 0, k.futexWait(addr, val, bitset, timeout)
	case futexWake, futexWakeBitset:
		bitset := ^uint32(0)
		if op == futexWakeBitset {
			bitset = uint32(a[5])
			if bitset == 0 {
				return 0, unix.EINVAL
			}
		}
		return uint64(k.futexWake(addr, int(min(val, 1<<30)), bitset)), 0
	case futexRequeue, futexCmpRequeue:
		// val waiters woken, up to val2 (the timeout argument) moved to uaddr2 (a[4]).
		n2 := int(min(uint32(a[3]), 1<<30))
		if int32(a[2]) < 0 || int32(a[3]) < 0 {
			return 0, unix.EINVAL
		}
		if a[4]%4 != 0 {
			return 0, unix.EINVAL
		}
		return k.futexRequeue(addr, a[4], int(val), n2, op == futexCmpRequeue, uint32(a[5]))
	case futexWakeOp:
		return k.futexWakeOp(addr, a[4], int(val), int(min(uint32(a[3]), 1<<30)), uint32(a[5]))
	}
	return 0, unix.ENOSYS
}

func (k *Kernel) futexWait(addr uint64, val, bitset uint32, timeout time.Duration) unix.Errno {
	k.futexes.mu.Lock()
	b, e := k.as.in(addr, 4)
	if e != 0 {
		k.futexes.mu.Unlock()
		return e
	}
	if binary.LittleEndian.Uint32(b) != val {
		k.futexes.mu.Unlock()
		return unix.EAGAIN
	}
	w := &futexWaiter{addr: addr, bitset: bitset, ch: make(chan struct{})}
	k.futexes.waiters[addr] = append(k.futexes.waiters[addr], w)
	k.futexes.mu.Unlock()
	var tc <-chan time.Time
	if timeout >= 0 {
		tm := time.NewTimer(timeout)
		defer tm.Stop()
		tc = tm.C
	}
	// Nothing is done before the wait, so re-running the call is safe (see asleep).
	k.sleeping.Add(1)
	defer k.sleeping.Add(-1)
	select {
	case <-w.ch:
		return 0
	case <-tc:
		if k.futexRemove(w) {
			return unix.ETIMEDOUT
		}
		return 0 // woken as the timer fired
	case <-k.stopped:
		k.futexRemove(w)
		return unix.EINTR
	}
}

// futexRemove takes w off its queue; false when a waker got to it first.
func (k *Kernel) futexRemove(w *futexWaiter) bool {
	k.futexes.mu.Lock()
	defer k.futexes.mu.Unlock()
	if w.woken {
		return false
	}
	ws := k.futexes.waiters[w.addr]
	for i, x := range ws {
		if x == w {
			ws = append(ws[:i:i], ws[i+1:]...)
			break
		}
	}
	k.setWaitersLocked(w.addr, ws)
	return true
}

func (k *Kernel) setWaitersLocked(addr uint64, ws []*futexWaiter) {
	if len(ws) == 0 {
		delete(k.futexes.waiters, addr)
	} else {
		k.futexes.waiters[addr] = ws
	}
}

func (k *Kernel) futexWake(addr uint64, n int, bitset uint32) int {
	k.futexes.mu.Lock()
	defer k.futexes.mu.Unlock()
	return k.futexWakeLocked(addr, n, bitset)
}

func (k *Kernel) futexWakeLocked(addr uint64, n int, bitset uint32) int {
	ws := k.futexes.waiters[addr]
	woke := 0
	var keep []*futexWaiter
	for _, w := range ws {
		if woke < n && w.bitset&bitset != 0 {
			w.woken = true
			close(w.ch)
			woke++
			continue
		}
		keep = append(keep, w)
	}
	k.setWaitersLocked(addr, keep)
	return woke
}

// futexRequeue wakes up to nWake waiters of addr and moves up to nMove of the rest to
// addr2; with cmp, only if the word at addr still holds val3 (else EAGAIN).
func (k *Kernel) futexRequeue(addr, addr2 uint64, nWake, nMove int, cmp bool, val3 uint32) (uint64, unix.Errno) {
	k.futexes.mu.Lock()
	defer k.futexes.mu.Unlock()
	if cmp {
		b, e := k.as.in(addr, 4)
		if e != 0 {
			return 0, e
		}
		if binary.LittleEndian.Uint32(b) != val3 {
			return 0, unix.EAGAIN
		}
	}
	woke := k.futexWakeLocked(addr, nWake, ^uint32(0))
	if addr == addr2 {
		return uint64(woke), 0
	}
	ws := k.futexes.waiters[addr]
	m := min(nMove, len(ws))
	moved := ws[:m]
	for _, w := range moved {
		w.addr = addr2
	}
	k.futexes.waiters[addr2] = append(k.futexes.waiters[addr2], moved...)
	k.setWaitersLocked(addr, append([]*futexWaiter(nil), ws[m:]...))
	return uint64(woke + m), 0
}

// futexWakeOp: atomically *addr2 = op(*addr2, oparg); wake nWake on addr, and nWake2 on
// addr2 if the old value passes the comparison. Guest threads run concurrently, so the
// update is a compare-and-swap loop on guest memory.
func (k *Kernel) futexWakeOp(addr, addr2 uint64, nWake, nWake2 int, enc uint32) (uint64, unix.Errno) {
	if addr2%4 != 0 {
		return 0, unix.EINVAL
	}
	op, cmp := enc>>28&0xf, enc>>24&0xf
	oparg, cmparg := enc>>12&0xfff, enc&0xfff
	if op&8 != 0 {
		op &^= 8
		if oparg >= 32 {
			return 0, unix.EINVAL
		}
		oparg = 1 << oparg
	}
	k.futexes.mu.Lock()
	defer k.futexes.mu.Unlock()
	b, e := k.as.out(addr2, 4)
	if e != 0 {
		return 0, e
	}
	var old uint32
	for {
		old = atomicLoad32(b)
		var nv uint32
		switch op {
		case 0:
			nv = oparg
		case 1:
			nv = old + oparg
		case 2:
			nv = old | oparg
		case 3:
			nv = old &^ oparg
		case 4:
			nv = old ^ oparg
		default:
			return 0, unix.ENOSYS
		}
		if atomicCAS32(b, old, nv) {
			break
		}
	}
	woke := k.futexWakeLocked(addr, nWake, ^uint32(0))
	var ok bool
	o, c := int32(old), int32(cmparg<<20)>>20
	switch cmp {
	case 0:
		ok = o == c
	case 1:
		ok = o != c
	case 2:
		ok = o < c
	case 3:
		ok = o <= c
	case 4:
		ok = o > c
	case 5:
		ok = o >= c
	default:
		return 0, unix.ENOSYS
	}
	if ok {
		woke += k.futexWakeLocked(addr2, nWake2, ^uint32(0))
	}
	return uint64(woke), 0
}
