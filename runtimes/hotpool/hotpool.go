// Package hotpool keeps the live runtime instances of an executor and its hot pool: the
// idle instances kept per action for reuse (path H), their idle time-to-live, and the
// memory budget the instances' limits are reserved against, idle ones evicted least
// recently used first to make room. Both executors use it, runtimes/process (host
// processes) and snapshots (unikernel contexts).
//
// It knows nothing of what an instance is or how one ends: the pool only takes instances
// out of its accounting and hands them back (Reserve's victims, EvictOldest, DropIdle,
// Close, and the Config.Expire callback); the executor ends them.
//
// # Locking
//
// A Pool has its own mutex and is safe for concurrent use. The functions given to it
// (the match arguments) are called with that mutex held: they must only read what does
// not change while an instance is live (its kind, its memory limit, its runtime
// snapshot) and must not call the pool. Config.Expire is called without it. An executor
// may call the pool while holding its own locks, provided no function it gives the pool
// takes those locks: the pool's mutex is always the innermost.
package hotpool

import (
	"fmt"
	"sync"
	"time"
)

// Config configures a Pool.
type Config[T any] struct {
	// BudgetMB bounds the memory reserved for live instances (and those being started).
	BudgetMB int
	// IdleTTL is how long an instance stays idle before it expires.
	IdleTTL time.Duration
	// Expire is called, without the pool's lock, with an idle instance whose IdleTTL ran
	// out; the pool has let go of it (it is no longer live, its memory is released).
	Expire func(T)
	// ErrNoCapacity is what Reserve wraps when busy instances fill the budget; ErrClosed
	// what it returns after Close (the executor's own errors).
	ErrNoCapacity, ErrClosed error
}

// Pool holds an executor's live instances of type T, the idle ones by action key K.
type Pool[K comparable, T comparable] struct {
	cfg Config[T]

	mu       sync.Mutex
	live     map[T]*entry[K]
	idle     map[K][]T // most recently used last
	reserved int       // MB of live instances and of reservations not yet Added
	closed   bool
}

// entry is what the pool knows of a live instance.
type entry[K comparable] struct {
	key      K
	mb       int
	idle     bool
	lastUsed time.Time
	timer    *time.Timer // made at the first Park, stopped while the instance is busy
}

// New returns an empty pool.
func New[K comparable, T comparable](cfg Config[T]) *Pool[K, T] {
	return &Pool[K, T]{cfg: cfg, live: map[T]*entry[K]{}, idle: map[K][]T{}}
}

// Stats is a snapshot of a pool's size.
type Stats struct {
	Live, Idle int
	ReservedMB int
}

// Stats reports the pool's size.
func (p *Pool[K, T]) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.idle {
		n += len(l)
	}
	return Stats{Live: len(p.live), Idle: n, ReservedMB: p.reserved}
}

// Live returns the live instances, busy and idle.
func (p *Pool[K, T]) Live() []T {
	p.mu.Lock()
	defer p.mu.Unlock()
	all := make([]T, 0, len(p.live))
	for t := range p.live {
		all = append(all, t)
	}
	return all
}

// Closed reports whether Close was called.
func (p *Pool[K, T]) Closed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// Reserve makes room for a new instance of mb, taking idle instances out of the pool,
// least recently used first (across all keys), while the reserved memory plus mb
// exceeds the budget. The caller ends the victims, then either Adds the new instance or
// Releases mb. It fails with Config.ErrClosed after Close, and with Config.ErrNoCapacity
// when busy instances alone leave no room; victims taken before the room ran out are out
// of the pool all the same and are returned with the error.
func (p *Pool[K, T]) Reserve(mb int) (victims []T, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, p.cfg.ErrClosed
	}
	for p.reserved+mb > p.cfg.BudgetMB {
		var victim T
		var ve *entry[K]
		for _, l := range p.idle {
			if e := p.live[l[0]]; ve == nil || e.lastUsed.Before(ve.lastUsed) {
				victim, ve = l[0], e
			}
		}
		if ve == nil {
			return victims, fmt.Errorf("%w: %d MB reserved of %d, %d MB more needed", p.cfg.ErrNoCapacity, p.reserved, p.cfg.BudgetMB, mb)
		}
		p.dropLocked(victim, ve)
		victims = append(victims, victim)
	}
	p.reserved += mb
	return victims, nil
}

// TryReserve reserves mb when it fits the budget as it is, evicting nothing: for memory
// worth holding only while there is room (the snapshots executor charges its recycled
// VMs this way). False when it does not fit, or after Close. Release gives it back.
func (p *Pool[K, T]) TryReserve(mb int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.reserved+mb > p.cfg.BudgetMB {
		return false
	}
	p.reserved += mb
	return true
}

// Release gives back mb reserved for an instance that was not started (or by TryReserve).
func (p *Pool[K, T]) Release(mb int) {
	p.mu.Lock()
	p.reserved -= mb
	p.mu.Unlock()
}

// Add makes t live, busy, for key with the mb Reserve made room for.
func (p *Pool[K, T]) Add(t T, key K, mb int) {
	p.mu.Lock()
	p.live[t] = &entry[K]{key: key, mb: mb}
	p.mu.Unlock()
}

// Remove takes t out of the pool, idle or busy, and releases its memory; false when it
// was not live (removed already, or never Added). The caller ends it.
func (p *Pool[K, T]) Remove(t T) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.live[t]
	if e == nil {
		return false
	}
	p.dropLocked(t, e)
	return true
}

// TakeIdle takes the most recently used idle instance of key that match accepts, busy
// from now on; false when there is none.
func (p *Pool[K, T]) TakeIdle(key K, match func(T) bool) (T, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.idle[key]
	for i := len(l) - 1; i >= 0; i-- {
		if t := l[i]; match(t) {
			p.unidleLocked(t, p.live[t])
			return t, true
		}
	}
	var zero T
	return zero, false
}

// Park makes a busy instance idle, the most recently used of its key, and (re)starts
// its idle time-to-live. ok is false when the pool is closed or t is not live: the
// caller ends it. first is true at the first Park of t.
func (p *Pool[K, T]) Park(t T) (ok, first bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.live[t]
	if p.closed || e == nil {
		return false, false
	}
	e.lastUsed = time.Now()
	e.idle = true
	p.idle[e.key] = append(p.idle[e.key], t)
	first = e.timer == nil
	if first {
		e.timer = time.AfterFunc(p.cfg.IdleTTL, func() { p.expire(t, e) })
	} else {
		e.timer.Reset(p.cfg.IdleTTL)
	}
	return true, first
}

// expire lets go of t when it has been idle for IdleTTL, and hands it to Config.Expire.
func (p *Pool[K, T]) expire(t T, e *entry[K]) {
	p.mu.Lock()
	if p.live[t] != e || !e.idle {
		p.mu.Unlock()
		return
	}
	if left := p.cfg.IdleTTL - time.Since(e.lastUsed); left > 0 {
		// A stale firing: the instance was taken and parked again meanwhile.
		e.timer.Reset(left)
		p.mu.Unlock()
		return
	}
	p.dropLocked(t, e)
	p.mu.Unlock()
	p.cfg.Expire(t)
}

// EvictOldest takes out of the pool the least recently used idle instance that match
// accepts, provided more than keep idle instances match; false when not, or when the
// pool is closed. Its memory is released; the caller ends it.
func (p *Pool[K, T]) EvictOldest(match func(T) bool, keep int) (T, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var victim T
	var ve *entry[K]
	n := 0
	if !p.closed {
		for _, l := range p.idle {
			for _, t := range l {
				if !match(t) {
					continue
				}
				n++
				if e := p.live[t]; ve == nil || e.lastUsed.Before(ve.lastUsed) {
					victim, ve = t, e
				}
			}
		}
	}
	if ve == nil || n <= keep {
		var zero T
		return zero, false
	}
	p.dropLocked(victim, ve)
	return victim, true
}

// DropIdle takes every idle instance out of the pool and returns them; the caller ends
// them.
func (p *Pool[K, T]) DropIdle() []T {
	p.mu.Lock()
	defer p.mu.Unlock()
	var all []T
	for _, l := range p.idle {
		all = append(all, l...)
	}
	for _, t := range all {
		p.dropLocked(t, p.live[t])
	}
	return all
}

// Close refuses further reservations and parks, empties the pool and returns every
// instance that was live, busy or idle; the caller ends them. Idle timers are stopped.
// The memory reserved is left as it is (a Run under way may still Release its share).
func (p *Pool[K, T]) Close() []T {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	all := make([]T, 0, len(p.live))
	for t, e := range p.live {
		all = append(all, t)
		if e.timer != nil {
			e.timer.Stop()
		}
	}
	p.live = map[T]*entry[K]{}
	p.idle = map[K][]T{}
	return all
}

// dropLocked takes a live instance out of the pool: out of its idle list, not live, its
// memory released.
func (p *Pool[K, T]) dropLocked(t T, e *entry[K]) {
	if e.idle {
		p.unidleLocked(t, e)
	}
	delete(p.live, t)
	p.reserved -= e.mb
}

// unidleLocked takes an idle instance out of its key's list and stops its timer.
func (p *Pool[K, T]) unidleLocked(t T, e *entry[K]) {
	l := p.idle[e.key]
	for i, x := range l {
		if x == t {
			l = append(l[:i:i], l[i+1:]...)
			break
		}
	}
	if len(l) == 0 {
		delete(p.idle, e.key)
	} else {
		p.idle[e.key] = l
	}
	e.idle = false
	e.timer.Stop()
}
