package snapshots

import (
	"context"
	"fmt"
	"testing"

	"github.com/seuss-go/seuss/activation"
)

// TestSpareRecycledVM: once the VMs Prepare warmed are taken, every C still finds a
// recycled VM ready, recycled ahead from an idle UC, instead of waiting for one to be
// recycled on its critical path; the action run last stays hot.
func TestSpareRecycledVM(t *testing.T) {
	// A budget the idle UCs do not fill: with 2048 MB, 7 idle UCs and a recycled VM's
	// residue fill it, and every C's reservation evicts an idle UC whose VM is ready
	// (recycled by then) for the next C: nothing is left to recycle ahead.
	const budget = 4096
	e := newExec(t, Config{SnapshotDir: t.TempDir(), MemoryBudgetMB: budget})
	defer e.Close()
	if err := e.Prepare(context.Background(), "python:3.11"); err != nil {
		t.Fatal(err)
	}
	const n = maxRecycled + 5
	var last *activation.Job
	for i := 0; i < n; i++ {
		last = pyJob(fmt.Sprint("s", i), counterPy, "1")
		run(t, e, last, activation.PathCold, 1)
		// Whatever was started in the background (the capture's write, recycling) is
		// done before the next C: a timing-free count of ready against waited.
		e.WaitSnapshots()
	}
	st := e.Stats()
	t.Logf("%+v", st)
	if st.RecycledReady != n || st.RecycledWaited != 0 || st.Mapped+st.Fresh != 0 {
		t.Fatalf("%d of %d C restores found a recycled VM ready (%d waited, %d fresh shells)", st.RecycledReady, n, st.RecycledWaited, st.Mapped+st.Fresh)
	}
	if st.Spares == 0 {
		t.Fatal("no idle UC was recycled ahead")
	}
	if st.ReservedMB+st.RecycledMB > budget || st.Live > n {
		t.Fatalf("over the budget: %+v", st)
	}
	run(t, e, last, activation.PathHot, 2)
	run(t, e, last, activation.PathHot, 3)
}

// TestRepeatStaysHot: an action run again and again keeps its UC (H) when no recycled
// VM is left: recycling ahead never takes the most recently used idle UC, and a repeat
// (H) recycles nothing ahead.
func TestRepeatStaysHot(t *testing.T) {
	e := newExec(t, Config{SnapshotDir: t.TempDir()})
	defer e.Close()
	run(t, e, pyJob("boot", counterPy, "1"), activation.PathBoot, 1)
	a, b := pyJob("a", counterPy, "1"), pyJob("b", counterPy, "1")
	run(t, e, a, activation.PathCold, 1) // into a fresh shell: none recycled yet
	e.WaitSnapshots()
	for i := 2; i <= 4; i++ {
		run(t, e, a, activation.PathHot, i)
		e.WaitSnapshots()
	}
	// b's C takes a's VM (evictIdleOf, as before): then b alone is hot, and stays so.
	run(t, e, b, activation.PathCold, 1)
	e.WaitSnapshots()
	for i := 2; i <= 4; i++ {
		run(t, e, b, activation.PathHot, i)
		e.WaitSnapshots()
	}
	if st := e.Stats(); st.Spares != 0 {
		t.Fatalf("an idle UC was recycled ahead: %+v", st)
	}
}
