package snapshots

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/unikernel"
)

// recycledResidueMB sums the residue of the recycled VMs kept, each rounded up to MB.
func recycledResidueMB(e *Executor) (n, mb int) {
	e.shells.mu.Lock()
	defer e.shells.mu.Unlock()
	for _, l := range e.shells.recycled {
		for _, r := range l {
			n++
			mb += residueMB(r.vm)
		}
	}
	return n, mb
}

// TestRecycledCharged: a recycled VM's residue is charged to the memory budget while it
// is kept (Stats.RecycledMB), the charge is released when a restore takes the VM, and a
// VM whose residue does not fit the budget is closed, not kept.
func TestRecycledCharged(t *testing.T) {
	dir := t.TempDir()
	e := newExec(t, Config{SnapshotDir: dir})
	run(t, e, pyJob("boot", counterPy, "1"), activation.PathBoot, 1)
	run(t, e, pyJob("a", counterPy, "1"), activation.PathCold, 1)
	e.DropIdle()
	e.WaitSnapshots()
	st := e.Stats()
	n, mb := recycledResidueMB(e)
	t.Logf("after a's UC was recycled: %d VMs, %d MB of residue; %+v", n, mb, st)
	if n != 1 || mb == 0 || st.RecycledMB != mb || st.ReservedMB != 0 {
		t.Fatalf("%d recycled VMs with %d MB of residue: %d MB charged, %d MB reserved", n, mb, st.RecycledMB, st.ReservedMB)
	}
	run(t, e, pyJob("b", counterPy, "1"), activation.PathCold, 1)
	st = e.Stats()
	if st.Recycled != 1 || st.RecycledMB != 0 || st.ReservedMB != 256 {
		t.Fatalf("b restored into the recycled VM: %d recycled restores, %d MB still charged, %d MB reserved", st.Recycled, st.RecycledMB, st.ReservedMB)
	}
	e.Close()
	if st := e.Stats(); st.RecycledMB != 0 {
		t.Fatalf("closed, %d MB still charged", st.RecycledMB)
	}

	// One UC's limit is the whole budget: a new UC's reservation (Run's first step)
	// evicts a, whose VM, recycled, finds no room for its residue and no restore waiting
	// for it (one would take it uncharged).
	e = newExec(t, Config{SnapshotDir: dir, MemoryBudgetMB: 256})
	defer e.Close()
	run(t, e, pyJob("a", counterPy, "1"), activation.PathWarm, 1)
	if err := e.reserve(256); err != nil {
		t.Fatal(err)
	}
	e.WaitSnapshots()
	st = e.Stats()
	n, _ = recycledResidueMB(e)
	t.Logf("budget 256 MB: %+v", st)
	if n != 0 || st.RecycledMB != 0 || st.ReservedMB != 256 || st.Live != 0 {
		t.Fatalf("a's VM kept with no room for it: %d recycled VMs, %d MB charged, %d MB reserved, %d live", n, st.RecycledMB, st.ReservedMB, st.Live)
	}
	e.pool.Release(256)
	// With the room back, b's W restores into a fresh shell and its VM is kept when b
	// goes (DropIdle), charged.
	run(t, e, pyJob("b", counterPy, "1"), activation.PathWarm, 1)
	e.DropIdle()
	e.WaitSnapshots()
	st = e.Stats()
	if n, mb := recycledResidueMB(e); n != 1 || st.RecycledMB != mb || mb == 0 {
		t.Fatalf("b's VM: %d recycled with %d MB of residue, %d MB charged", n, mb, st.RecycledMB)
	}
}

// TestRecycledDroppedForRoom: with the budget nearly full of recycled VMs (Prepare's
// warmed VMs), a new UC's reservation closes recycled VMs to make room rather than fail,
// and the UCs' reservations plus the recycled VMs' charge never exceed the budget
// through a run of new functions.
func TestRecycledDroppedForRoom(t *testing.T) {
	const budget = 256
	e := newExec(t, Config{SnapshotDir: t.TempDir(), MemoryBudgetMB: budget})
	defer e.Close()
	if err := e.Prepare(context.Background(), "python:3.11"); err != nil {
		t.Fatal(err)
	}
	st := e.Stats()
	n, _ := recycledResidueMB(e)
	t.Logf("after Prepare: %d recycled VMs, %+v", n, st)
	if st.RecycledMB == 0 || st.RecycledMB > budget {
		t.Fatalf("Prepare's warmed VMs charged %d MB", st.RecycledMB)
	}
	// A limit that fits only if some recycled VMs go.
	limit := budget - st.RecycledMB + 1
	for i := 0; i < 12; i++ {
		j := pyJob(fmt.Sprint("f", i), counterPy, "1")
		j.Limits.MemoryMB = limit
		out, err := e.Run(context.Background(), j)
		if err != nil {
			t.Fatalf("f%d (limit %d MB): %v (%+v)", i, limit, err, e.Stats())
		}
		if out.RunStatus != 200 || out.Path != activation.PathCold {
			t.Fatalf("f%d: %s %d %s", i, out.Path, out.RunStatus, out.RunResponse)
		}
		for _, when := range []string{"after Run", "after WaitSnapshots"} {
			st := e.Stats()
			if st.ReservedMB < 0 || st.RecycledMB < 0 || st.ReservedMB+st.RecycledMB > budget {
				t.Fatalf("f%d %s: %d MB reserved + %d MB charged for recycled VMs, budget %d", i, when, st.ReservedMB, st.RecycledMB, budget)
			}
			if _, mb := recycledResidueMB(e); when != "after Run" && mb != st.RecycledMB {
				t.Fatalf("f%d: recycled VMs hold %d MB of residue, %d MB charged", i, mb, st.RecycledMB)
			}
			e.WaitSnapshots()
		}
	}
	t.Logf("%+v", e.Stats())
}

// TestRecycledHandedToWaiter: a VM recycled while a restore waits for one goes to that
// restore, even when the budget has no room to keep it (the restore's UC reserved its
// own limit); with no restore waiting it is closed.
func TestRecycledHandedToWaiter(t *testing.T) {
	requireUC(t, "python:3.11")
	p := newShellPool(4<<20, 1)
	charged := 0
	p.charge = func(mb int) bool { charged++; return false }
	p.uncharge = func(int) { t.Error("uncharged a VM never charged") }
	rt := &RuntimeSnapshot{}
	p.track(rt)
	newVM := func() *unikernel.VM {
		vm, err := newShell(4<<20, 1)
		if err != nil {
			t.Fatal(err)
		}
		return vm
	}
	if p.putMapped(rt, newVM()) || charged != 1 {
		t.Fatalf("a VM kept with no room and nobody waiting (%d charges)", charged)
	}
	p.recycleStart(rt)
	got := make(chan *unikernel.VM)
	go func() {
		vm, _ := p.takeRecycled(rt, time.Minute)
		got <- vm
	}()
	for {
		p.mu.Lock()
		n := len(p.waiters[rt])
		p.mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	vm := newVM()
	if !p.putMapped(rt, vm) {
		t.Fatal("not handed to the waiting restore")
	}
	p.recycleDone(rt)
	if v := <-got; v != vm || charged != 1 || p.chargedMB() != 0 {
		t.Fatalf("the waiting restore got %p, want %p (%d charges, %d MB charged)", v, vm, charged, p.chargedMB())
	}
	vm.Close()
	p.close()
}
