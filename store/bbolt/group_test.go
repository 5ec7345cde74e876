package bbolt

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/store"
	"github.com/seuss-go/seuss/store/storetest"
)

// Records written while a transaction is in flight are committed together in the next
// one, each with its own result: the first transaction is held until every other
// writer has queued, so the counts are exact whatever the scheduling.
func TestPutActivationGroupCommit(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "seuss.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	ns := storetest.Namespace(t)
	stored := storetest.ActivationID()
	if err := s.PutActivation(ctx, storetest.Activation(ns, "hello", stored, 1)); err != nil {
		t.Fatal(err)
	}

	// Writers 0..n-1: distinct ids, except that writers 1, 2 and 3 share one id and
	// writer 4 reuses the id stored above.
	const n = 32
	shared := storetest.ActivationID()
	ids := make([]string, n)
	for i := range ids {
		switch {
		case i >= 1 && i <= 3:
			ids[i] = shared
		case i == 4:
			ids[i] = stored
		default:
			ids[i] = storetest.ActivationID()
		}
	}

	var mu sync.Mutex
	var groups []int
	release := make(chan struct{})
	s.acts.commit = func(size int) {
		mu.Lock()
		groups = append(groups, size)
		first := len(groups) == 1
		mu.Unlock()
		if first {
			<-release
		}
	}
	queued := func() int {
		s.acts.mu.Lock()
		defer s.acts.mu.Unlock()
		return len(s.acts.queue)
	}

	errs := make([]error, n)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the first writer leads and is held inside its transaction
		defer wg.Done()
		errs[0] = s.PutActivation(ctx, storetest.Activation(ns, "hello", ids[0], 1000))
	}()
	for {
		mu.Lock()
		started := len(groups) == 1
		mu.Unlock()
		if started {
			break
		}
		time.Sleep(time.Millisecond)
	}
	for i := 1; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.PutActivation(ctx, storetest.Activation(ns, fmt.Sprintf("w%d", i), ids[i], int64(1000+i)))
		}()
	}
	for queued() < n-1 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()

	if len(groups) != 2 || groups[0] != 1 || groups[1] != n-1 {
		t.Fatalf("transactions of %v records, want [1 %d]", groups, n-1)
	}
	sharedWon := 0
	for i, err := range errs {
		switch {
		case i == 4:
			if !errors.Is(err, activation.ErrConflict) {
				t.Errorf("writer %d, id already stored: %v, want ErrConflict", i, err)
			}
		case i >= 1 && i <= 3:
			if err == nil {
				sharedWon++
			} else if !errors.Is(err, activation.ErrConflict) {
				t.Errorf("writer %d, shared id: %v", i, err)
			}
		case err != nil:
			t.Errorf("writer %d: %v", i, err)
		}
	}
	if sharedWon != 1 {
		t.Errorf("%d inserts of the shared id in one group succeeded, want 1", sharedWon)
	}
	for i, id := range ids {
		if _, err := s.GetActivation(ctx, ns, id); err != nil {
			t.Errorf("writer %d's record: %v", i, err)
		}
	}
	list, err := s.ListActivations(ctx, store.ActivationQuery{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	if want := 1 + n - 3; len(list) != want { // the stored one, n less 2 shared less 1 stored
		t.Fatalf("listed %d records, want %d", len(list), want)
	}
	// The stored record is not overwritten by writer 4.
	if a, err := s.GetActivation(ctx, ns, stored); err != nil || a.Start != 1 {
		t.Fatalf("stored record after a conflicting insert: %+v, %v", a, err)
	}
}

// A lone writer commits at once, in a transaction of its own.
func TestPutActivationAlone(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "seuss.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var groups []int
	s.acts.commit = func(size int) { groups = append(groups, size) }
	ns := storetest.Namespace(t)
	for i := range 3 {
		if err := s.PutActivation(context.Background(), storetest.Activation(ns, "hello", storetest.ActivationID(), int64(i))); err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(groups) != "[1 1 1]" {
		t.Fatalf("transactions of %v records, want [1 1 1]", groups)
	}
}

// Many writers at once, no hook: every record lands and reads back.
func TestPutActivationManyWriters(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "seuss.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var mu sync.Mutex
	txs := 0
	s.acts.commit = func(int) { mu.Lock(); txs++; mu.Unlock() }
	ns := storetest.Namespace(t)
	const n = 200
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range ids {
		ids[i] = storetest.ActivationID()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.PutActivation(context.Background(), storetest.Activation(ns, "hello", ids[i], int64(i))); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if _, err := s.GetActivation(context.Background(), ns, id); err != nil {
			t.Fatal(err)
		}
	}
	if txs > n {
		t.Fatalf("%d transactions for %d records", txs, n)
	}
	t.Logf("%d records in %d transactions", n, txs)
}
