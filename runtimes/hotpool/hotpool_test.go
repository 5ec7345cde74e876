package hotpool

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var (
	errFull   = errors.New("test: budget full")
	errClosed = errors.New("test: closed")
)

type inst struct {
	name string
	kind string
	mb   int
}

func newPool(budget int, ttl time.Duration, expire func(*inst)) *Pool[string, *inst] {
	if expire == nil {
		expire = func(*inst) {}
	}
	return New[string, *inst](Config[*inst]{BudgetMB: budget, IdleTTL: ttl, Expire: expire, ErrNoCapacity: errFull, ErrClosed: errClosed})
}

// start reserves and adds a busy instance.
func start(t *testing.T, p *Pool[string, *inst], key, name string, mb int) *inst {
	t.Helper()
	if v, err := p.Reserve(mb); err != nil || len(v) != 0 {
		t.Fatalf("reserve %s: %v %v", name, v, err)
	}
	i := &inst{name: name, kind: "k", mb: mb}
	p.Add(i, key, mb)
	return i
}

// park parks in order: lastUsed must differ for the LRU order to be defined.
func park(t *testing.T, p *Pool[string, *inst], is ...*inst) {
	t.Helper()
	for _, i := range is {
		time.Sleep(time.Millisecond)
		if ok, _ := p.Park(i); !ok {
			t.Fatalf("park %s refused", i.name)
		}
	}
}

func names(is []*inst) []string {
	var s []string
	for _, i := range is {
		s = append(s, i.name)
	}
	return s
}

func anyInst(*inst) bool { return true }

func TestTakeIdleMostRecent(t *testing.T) {
	p := newPool(1000, time.Hour, nil)
	a, b, c := start(t, p, "k1", "a", 100), start(t, p, "k1", "b", 100), start(t, p, "k1", "c", 200)
	o := start(t, p, "k2", "o", 100)
	park(t, p, a, b, c, o)
	if i, ok := p.TakeIdle("k1", func(i *inst) bool { return i.mb == 100 }); !ok || i != b {
		t.Fatalf("took %v, want b (most recent with 100 MB)", i)
	}
	if i, ok := p.TakeIdle("k1", anyInst); !ok || i != c {
		t.Fatalf("took %v, want c", i)
	}
	if i, ok := p.TakeIdle("k1", anyInst); !ok || i != a {
		t.Fatalf("took %v, want a", i)
	}
	if i, ok := p.TakeIdle("k1", anyInst); ok {
		t.Fatalf("took %v from an empty key", i)
	}
	if s := p.Stats(); s != (Stats{Live: 4, Idle: 1, ReservedMB: 500}) {
		t.Fatalf("stats %+v", s)
	}
	// Parked again, a is the most recent.
	park(t, p, c, a)
	if i, _ := p.TakeIdle("k1", anyInst); i != a {
		t.Fatalf("took %v, want a", i)
	}
}

func TestReserveEvictsLeastRecentAcrossKeys(t *testing.T) {
	p := newPool(400, time.Hour, nil)
	a, b, c := start(t, p, "k1", "a", 100), start(t, p, "k2", "b", 100), start(t, p, "k1", "c", 100)
	busy := start(t, p, "k3", "busy", 100)
	park(t, p, b, a, c)
	v, err := p.Reserve(100)
	if err != nil || !slices.Equal(names(v), []string{"b"}) {
		t.Fatalf("victims %v, %v; want [b]", names(v), err)
	}
	v, err = p.Reserve(200)
	if err != nil || !slices.Equal(names(v), []string{"a", "c"}) {
		t.Fatalf("victims %v, %v; want [a c]", names(v), err)
	}
	if s := p.Stats(); s != (Stats{Live: 1, Idle: 0, ReservedMB: 400}) {
		t.Fatalf("stats %+v", s)
	}
	if p.Remove(a) || !p.Remove(busy) || p.Remove(busy) {
		t.Fatal("Remove: a victim or a removed instance is live")
	}
	p.Release(300)
	if s := p.Stats(); s != (Stats{}) {
		t.Fatalf("stats %+v", s)
	}
}

func TestReserveNoCapacity(t *testing.T) {
	p := newPool(300, time.Hour, nil)
	start(t, p, "k1", "busy", 150)
	idle := start(t, p, "k2", "idle", 100)
	park(t, p, idle)
	v, err := p.Reserve(200)
	if !errors.Is(err, errFull) || err.Error() != "test: budget full: 150 MB reserved of 300, 200 MB more needed" {
		t.Fatalf("err %v", err)
	}
	if !slices.Equal(names(v), []string{"idle"}) {
		t.Fatalf("victims %v, want [idle] (out of the pool all the same)", names(v))
	}
	if s := p.Stats(); s != (Stats{Live: 1, ReservedMB: 150}) {
		t.Fatalf("stats %+v", s)
	}
	if v, err := p.Reserve(150); err != nil || len(v) != 0 {
		t.Fatalf("reserve to the budget: %v %v", v, err)
	}
}

func TestExpire(t *testing.T) {
	const ttl = 30 * time.Millisecond
	var n atomic.Int32
	got := make(chan *inst, 10)
	var p *Pool[string, *inst]
	p = newPool(1000, ttl, func(i *inst) {
		n.Add(1)
		if p.Remove(i) {
			t.Error("an expired instance is still live")
		}
		got <- i
	})
	a := start(t, p, "k", "a", 100)
	park(t, p, a)
	if i := <-got; i != a {
		t.Fatalf("expired %v", i)
	}
	time.Sleep(3 * ttl)
	if n.Load() != 1 {
		t.Fatalf("Expire called %d times", n.Load())
	}
	if s := p.Stats(); s != (Stats{}) {
		t.Fatalf("stats %+v", s)
	}
	if ok, _ := p.Park(a); ok {
		t.Fatal("an expired instance parked again")
	}
}

func TestTakenDoesNotExpire(t *testing.T) {
	const ttl = 50 * time.Millisecond
	got := make(chan *inst, 10)
	p := newPool(1000, ttl, func(i *inst) { got <- i })
	a, b := start(t, p, "k", "a", 100), start(t, p, "k", "b", 100)
	if ok, first := p.Park(a); !ok || !first {
		t.Fatalf("first park: %v %v", ok, first)
	}
	if i, _ := p.TakeIdle("k", anyInst); i != a {
		t.Fatalf("took %v", i)
	}
	park(t, p, b)
	if ok, first := p.Park(a); !ok || first {
		t.Fatalf("second park: %v %v", ok, first)
	}
	p.TakeIdle("k", anyInst) // a again, busy for good
	// b expires; a, taken, does not, however long it stays busy.
	if i := <-got; i != b {
		t.Fatalf("expired %v, want b", i)
	}
	time.Sleep(3 * ttl)
	select {
	case i := <-got:
		t.Fatalf("%s expired while busy", i.name)
	default:
	}
	if s := p.Stats(); s != (Stats{Live: 1, ReservedMB: 100}) {
		t.Fatalf("stats %+v", s)
	}
}

func TestEvictOldest(t *testing.T) {
	p := newPool(1000, time.Hour, nil)
	a, b, c := start(t, p, "k1", "a", 100), start(t, p, "k2", "b", 100), start(t, p, "k1", "c", 100)
	a.kind, c.kind = "x", "x"
	park(t, p, a, b, c)
	isX := func(i *inst) bool { return i.kind == "x" }
	if i, ok := p.EvictOldest(isX, 2); ok {
		t.Fatalf("evicted %v with only 2 idle", i.name)
	}
	if i, ok := p.EvictOldest(isX, 1); !ok || i != a {
		t.Fatalf("evicted %v, want a", i)
	}
	if i, ok := p.EvictOldest(isX, 1); ok {
		t.Fatalf("evicted %v, the last one kept", i.name)
	}
	if i, ok := p.EvictOldest(isX, 0); !ok || i != c {
		t.Fatalf("evicted %v, want c", i)
	}
	if s := p.Stats(); s != (Stats{Live: 1, Idle: 1, ReservedMB: 100}) {
		t.Fatalf("stats %+v", s)
	}
}

func TestDropIdleAndClose(t *testing.T) {
	p := newPool(1000, time.Hour, nil)
	a, b, busy := start(t, p, "k1", "a", 100), start(t, p, "k2", "b", 100), start(t, p, "k1", "busy", 100)
	park(t, p, a, b)
	d := names(p.DropIdle())
	slices.Sort(d)
	if !slices.Equal(d, []string{"a", "b"}) {
		t.Fatalf("dropped %v", d)
	}
	if s := p.Stats(); s != (Stats{Live: 1, ReservedMB: 100}) {
		t.Fatalf("stats %+v", s)
	}
	park(t, p, busy)
	if all := p.Close(); !slices.Equal(names(all), []string{"busy"}) {
		t.Fatalf("closed %v", names(all))
	}
	if !p.Closed() {
		t.Fatal("not closed")
	}
	if _, err := p.Reserve(1); err != errClosed {
		t.Fatalf("reserve after close: %v", err)
	}
	c := &inst{name: "c"}
	p.Add(c, "k1", 0)
	if ok, _ := p.Park(c); ok {
		t.Fatal("parked after close")
	}
	if _, ok := p.TakeIdle("k1", anyInst); ok {
		t.Fatal("took after close")
	}
}

// TestConcurrent runs activations against a small budget from many goroutines (with
// go test -race) and checks the accounting at the end.
func TestConcurrent(t *testing.T) {
	var expired atomic.Int32
	p := newPool(1000, 50*time.Microsecond, func(*inst) { expired.Add(1) })
	var ended atomic.Int32
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 300; j++ {
				key := fmt.Sprint(j % 5)
				mb := 100 + 100*(j%3)
				i, ok := p.TakeIdle(key, func(i *inst) bool { return i.mb == mb })
				if !ok {
					v, err := p.Reserve(mb)
					ended.Add(int32(len(v)))
					if err != nil {
						if !errors.Is(err, errFull) {
							t.Error(err)
						}
						continue
					}
					i = &inst{name: key, mb: mb}
					p.Add(i, key, mb)
				}
				switch j % 7 {
				case 0:
					if !p.Remove(i) {
						t.Error("a busy instance was not live")
					}
				case 3:
					if _, ok := p.EvictOldest(func(x *inst) bool { return x.mb == 100 }, 1); ok {
						ended.Add(1)
					}
					fallthrough
				default:
					if ok, _ := p.Park(i); !ok {
						t.Error("park refused")
					}
				}
			}
		}()
	}
	wg.Wait()
	s := p.Stats()
	sum := 0
	for _, i := range p.Live() {
		sum += i.mb
	}
	if s.ReservedMB != sum || s.ReservedMB > 1000 || s.Live != s.Idle {
		t.Fatalf("stats %+v, live instances hold %d MB", s, sum)
	}
	n := len(p.DropIdle())
	if s2 := p.Stats(); s2 != (Stats{}) || n != s.Idle {
		t.Fatalf("after DropIdle: %+v (%d dropped of %d)", s2, n, s.Idle)
	}
	t.Logf("%d evicted, %d expired, %d dropped", ended.Load(), expired.Load(), n)
}

// TestTryReserve: TryReserve takes only the room left, evicting no idle instance, and
// refuses after Close; what it reserved counts against Reserve until Released.
func TestTryReserve(t *testing.T) {
	p := newPool(1000, time.Minute, nil)
	a := start(t, p, "a", "a1", 600)
	park(t, p, a)
	if p.TryReserve(500) {
		t.Fatal("TryReserve took 500 MB with 400 left")
	}
	if st := p.Stats(); st.Idle != 1 || st.ReservedMB != 600 {
		t.Fatalf("TryReserve evicted or reserved: %+v", st)
	}
	if !p.TryReserve(400) {
		t.Fatal("TryReserve refused 400 MB with 400 left")
	}
	// Reserve makes room by evicting the idle instance only: the 400 MB stay reserved.
	if v, err := p.Reserve(100); err != nil || len(v) != 1 {
		t.Fatalf("Reserve(100) with 400 MB held by TryReserve: %v %v", names(v), err)
	}
	if v, err := p.Reserve(600); !errors.Is(err, errFull) || len(v) != 0 {
		t.Fatalf("Reserve(600): %v %v", names(v), err)
	}
	p.Release(400)
	if v, err := p.Reserve(600); err != nil || len(v) != 0 {
		t.Fatalf("Reserve(600) after Release: %v %v", names(v), err)
	}
	p.Release(600)
	p.Close()
	if p.TryReserve(1) {
		t.Fatal("TryReserve after Close")
	}
}
