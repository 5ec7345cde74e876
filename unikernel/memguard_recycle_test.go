package unikernel

import (
	"context"

	"strings"
	"testing"
	"time"
)

// TestMemGuardRecycledResidue: pages an earlier UC made its own stay the process's own
// when its VM is recycled (the image is copied back into them). A UC restored into that
// VM, whose snapshot does not map them, must not be stopped by the memory guard for
// "memory it never mapped" it never touched: here life 1 writes 48 MiB (more than the
// guard's slack) of a mapping and ends; life 2, restored into the recycled VM, computes
// for 800 ms while the guard looks at it every 250 ms.
func TestMemGuardRecycledResidue(t *testing.T) {
	requireKVM(t)
	root := testRoot(t, "residue")
	cfg, g := regionsConfig(root)
	uc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	if err := uc.Load([]string{"/residue"}); err != nil {
		t.Fatal(err)
	}
	if err := uc.Start(); err != nil {
		t.Fatal(err)
	}
	g.wait(t, "^ready")
	st, memFile, img, f := captureImage(t, uc)

	cfg1, g1 := regionsConfig(root)
	life1 := restoreFrom(t, st, memFile, nil, cfg1)
	g1.in.Write([]byte("touch\n"))
	g1.wait(t, "^touched")
	if err := life1.Close(); err != nil {
		t.Fatal(err)
	}
	vm, err := life1.RecycleVM(func(gm *GuestMemory, dirty []DirtyRange) error {
		return resetFromImage(gm, dirty, img, int(f.Fd()))
	})
	if err != nil {
		t.Fatal(err)
	}

	cfg2, g2 := regionsConfig(root)
	life2, err := RestoreOnVM(vm, cfg2, st, func(*GuestMemory) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer life2.Close()
	// Without the residue, the guard would count life 1's pages against life 2.
	life2.vm.mu.Lock()
	residue := life2.vm.residue
	life2.vm.residue = nil
	life2.vm.mu.Unlock()
	if n := life2.uncommittedResident(); n < 40<<20 {
		t.Fatalf("the recycled VM holds %d MiB of life 1's pages outside life 2's mappings: the test proves nothing", n>>20)
	}
	life2.vm.mu.Lock()
	life2.vm.residue = residue
	life2.vm.mu.Unlock()
	if n := life2.uncommittedResident(); n > memGuardSlack {
		t.Fatalf("with the residue, the guard still counts %d MiB", n>>20)
	}
	if err := life2.Start(); err != nil {
		t.Fatal(err)
	}
	ended := make(chan Result, 1)
	go func() {
		res, _ := life2.Wait(context.Background())
		ended <- res
	}()
	g2.in.Write([]byte("spin\n"))
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		select {
		case res := <-ended:
			t.Fatalf("life 2 ended before it finished computing: %v (status %d)", res.Err, res.Status)
		default:
		}
		g2.mu.Lock()
		out := g2.out.String()
		g2.mu.Unlock()
		if strings.Contains(out, "spun") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("life 2 did not finish: %q", out)
		}
	}
}
