package unikernel

import (
	"sync"
	"sync/atomic"
)

// asleep blocks until ch is closed (true) or the UC stops (false), counting the calling
// thread as asleep meanwhile. Blocking handlers use it (or the same count around their own
// select) only where nothing has been done yet that re-running the call would repeat: a
// snapshot captures a thread asleep here with the registers of the call's entry and the
// restored thread runs the call again, as Linux restarts an interrupted call.
func (k *Kernel) asleep(ch <-chan struct{}) bool {
	k.sleeping.Add(1)
	defer k.sleeping.Add(-1)
	select {
	case <-ch:
		return true
	case <-k.stopped:
		return false
	}
}

// sleepCount is the number of threads asleep in a restartable wait, and tells a waiter
// for quiescence (UC.WaitQuiescent) when a thread falls asleep: the last thread to fall
// asleep is what makes a UC quiescent (a thread is inside its call, inCall, before it
// counts here). Polling instead cost up to a millisecond per capture: on an otherwise
// idle Go process a sub-millisecond timer sleeps about 1 ms. Cheap when nobody waits:
// one atomic load per sleep.
type sleepCount struct {
	n atomic.Int32
	// waiters counts WaitQuiescent calls in progress; wake is made (once) before the
	// first one counts, so a sleeper that sees waiters > 0 sees wake.
	waiters atomic.Int32
	once    sync.Once
	wake    chan struct{} // one token: a waiter looks again after any sleep
}

// Add changes the count; a thread falling asleep (d > 0) wakes a waiter.
func (s *sleepCount) Add(d int32) int32 {
	v := s.n.Add(d)
	if d > 0 && s.waiters.Load() > 0 {
		select {
		case s.wake <- struct{}{}:
		default: // a token is pending already: the waiter looks at everything anyway
		}
	}
	return v
}

// Load is the number of threads asleep.
func (s *sleepCount) Load() int32 { return s.n.Load() }

// watch registers a waiter and returns the channel that receives a token after a thread
// falls asleep; the caller must call unwatch. Register before looking at the threads:
// a thread counted after the look then leaves a token (the count and the waiter flag
// are both sequentially consistent atomics, so one side sees the other).
func (s *sleepCount) watch() <-chan struct{} {
	s.once.Do(func() { s.wake = make(chan struct{}, 1) })
	s.waiters.Add(1)
	return s.wake
}

func (s *sleepCount) unwatch() { s.waiters.Add(-1) }
