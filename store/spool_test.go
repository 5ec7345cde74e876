package store_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/store"
	"github.com/seuss-go/seuss/store/bbolt"
	"github.com/seuss-go/seuss/store/storetest"
)

func newFlaky(t *testing.T) *storetest.Flaky {
	t.Helper()
	b, err := bbolt.Open(filepath.Join(t.TempDir(), "seuss.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return &storetest.Flaky{Store: b}
}

func newSpool(t *testing.T, backend store.Store, dir string, max int) *store.Spool {
	t.Helper()
	s, err := store.NewSpool(backend, store.SpoolOptions{Dir: dir, MaxRecords: max, Interval: 20 * time.Millisecond, Timeout: time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// With the backend up, a Spool is just the store.
func TestSpoolSuite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return newSpool(t, newFlaky(t), t.TempDir(), 0) })
}

func spoolFiles(t *testing.T, dir string) int {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	return len(m)
}

func TestSpoolOutage(t *testing.T) {
	ctx := context.Background()
	f := newFlaky(t)
	dir := t.TempDir()
	s := newSpool(t, f, dir, 0)
	ns := storetest.Namespace(t)
	early := storetest.Activation(ns, "hello", storetest.ActivationID(), 1000)
	if err := s.PutActivation(ctx, early); err != nil {
		t.Fatal(err)
	}
	f.Down.Store(true)
	var recs []*activation.WhiskActivation
	for i := 0; i < 5; i++ {
		a := storetest.Activation(ns, "hello", storetest.ActivationID(), int64(2000+i))
		if err := s.PutActivation(ctx, a); err != nil {
			t.Fatalf("put while down: %v", err)
		}
		recs = append(recs, a)
	}
	if s.Len() != 5 || spoolFiles(t, dir) != 5 {
		t.Fatalf("spooled %d, %d files", s.Len(), spoolFiles(t, dir))
	}
	// Reads see spooled records; a second insert of a spooled id is a conflict.
	if got, err := s.GetActivation(ctx, ns, recs[2].ActivationID); err != nil || got.Start != recs[2].Start {
		t.Fatalf("get spooled: %v", err)
	}
	if err := s.PutActivation(ctx, recs[2]); !errors.Is(err, activation.ErrConflict) {
		t.Fatalf("re-insert spooled: %v", err)
	}
	if _, err := s.GetActivation(ctx, ns, storetest.ActivationID()); !errors.Is(err, activation.ErrUnavailable) {
		t.Fatalf("get unknown while down: %v", err)
	}
	list, err := s.ListActivations(ctx, store.ActivationQuery{Namespace: ns, Limit: 3})
	if !errors.Is(err, activation.ErrUnavailable) || len(list) != 3 || list[0].ActivationID != recs[4].ActivationID {
		t.Fatalf("list while down: %d, %v", len(list), err)
	}
	if n, err := s.Drain(ctx); n != 0 || !errors.Is(err, activation.ErrUnavailable) {
		t.Fatalf("drain while down: %d, %v", n, err)
	}
	f.Down.Store(false)
	// Listing merges spooled and stored records before the drain.
	list, err = s.ListActivations(ctx, store.ActivationQuery{Namespace: ns, Skip: 4})
	if err != nil || len(list) != 2 || list[1].ActivationID != early.ActivationID {
		t.Fatalf("merged list: %d, %v", len(list), err)
	}
	if n, err := s.Drain(ctx); n != 5 || err != nil {
		t.Fatalf("drain: %d, %v", n, err)
	}
	if s.Len() != 0 || spoolFiles(t, dir) != 0 {
		t.Fatalf("after drain: %d waiting, %d files", s.Len(), spoolFiles(t, dir))
	}
	for _, a := range recs {
		if _, err := f.Store.GetActivation(ctx, ns, a.ActivationID); err != nil {
			t.Fatalf("record %s not in the backend: %v", a.ActivationID, err)
		}
	}
}

func TestSpoolBounded(t *testing.T) {
	ctx := context.Background()
	f := newFlaky(t)
	s := newSpool(t, f, t.TempDir(), 2)
	f.Down.Store(true)
	ns := storetest.Namespace(t)
	for i := 0; i < 2; i++ {
		if err := s.PutActivation(ctx, storetest.Activation(ns, "a", storetest.ActivationID(), 1)); err != nil {
			t.Fatal(err)
		}
	}
	err := s.PutActivation(ctx, storetest.Activation(ns, "a", storetest.ActivationID(), 1))
	if !errors.Is(err, store.ErrSpoolFull) || !errors.Is(err, activation.ErrUnavailable) {
		t.Fatalf("third record: %v", err)
	}
}

func TestSpoolBoundedBytes(t *testing.T) {
	ctx := context.Background()
	f := newFlaky(t)
	s, err := store.NewSpool(f, store.SpoolOptions{Dir: t.TempDir(), MaxBytes: 2000, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	f.Down.Store(true)
	n := 0
	for ; n < 10; n++ {
		err := s.PutActivation(ctx, storetest.Activation("guest", "a", storetest.ActivationID(), 1))
		if errors.Is(err, store.ErrSpoolFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if n == 0 || n == 10 {
		t.Fatalf("%d records of ~600 bytes fit in 2000 bytes", n)
	}
}

// Spooled records survive a crash of the invoker: a new Spool on the same directory
// drains them.
func TestSpoolReopen(t *testing.T) {
	ctx := context.Background()
	f := newFlaky(t)
	dir := t.TempDir()
	s := newSpool(t, f, dir, 0)
	f.Down.Store(true)
	ns := storetest.Namespace(t)
	var ids []string
	for i := 0; i < 3; i++ {
		a := storetest.Activation(ns, "a", storetest.ActivationID(), int64(i))
		ids = append(ids, a.ActivationID)
		if err := s.PutActivation(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	// A torn temporary file from a crash mid-write is ignored.
	os.WriteFile(filepath.Join(dir, ".00000000000000000099.json.tmp"), []byte("{"), 0o600)
	f.Down.Store(false)
	s2 := newSpool(t, f, dir, 0)
	if s2.Len() != 3 {
		t.Fatalf("reopened spool has %d", s2.Len())
	}
	// A record written after the reopen gets a later sequence number.
	f.Down.Store(true)
	late := storetest.Activation(ns, "a", storetest.ActivationID(), 9)
	if err := s2.PutActivation(ctx, late); err != nil {
		t.Fatal(err)
	}
	f.Down.Store(false)
	if n, err := s2.Drain(ctx); n != 4 || err != nil {
		t.Fatalf("drain: %d %v", n, err)
	}
	for _, id := range append(ids, late.ActivationID) {
		if _, err := f.Store.GetActivation(ctx, ns, id); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSpoolRunDrains(t *testing.T) {
	f := newFlaky(t)
	s := newSpool(t, f, t.TempDir(), 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	f.Down.Store(true)
	ns := storetest.Namespace(t)
	a := storetest.Activation(ns, "a", storetest.ActivationID(), 1)
	if err := s.PutActivation(ctx, a); err != nil {
		t.Fatal(err)
	}
	time.Sleep(60 * time.Millisecond)
	if s.Len() != 1 {
		t.Fatal("drained while down")
	}
	f.Down.Store(false)
	deadline := time.Now().Add(5 * time.Second)
	for s.Len() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := f.Store.GetActivation(context.Background(), ns, a.ActivationID); err != nil {
		t.Fatalf("not drained: %v", err)
	}
}

// A record the backend refuses for good is set aside, not retried forever nor deleted.
func TestSpoolRejects(t *testing.T) {
	ctx := context.Background()
	f := newFlaky(t)
	dir := t.TempDir()
	s := newSpool(t, f, dir, 0)
	f.Down.Store(true)
	if err := s.PutActivation(ctx, storetest.Activation("guest", "a", storetest.ActivationID(), 1)); err != nil {
		t.Fatal(err)
	}
	f.Down.Store(false)
	refuse := errors.New("400 bad request")
	f.Refuse.Store(&refuse)
	if n, err := s.Drain(ctx); n != 0 || err != nil {
		t.Fatalf("drain: %d %v", n, err)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "rejected", "*.json")); s.Len() != 0 || len(m) != 1 {
		t.Fatalf("rejected: %d waiting, %d set aside", s.Len(), len(m))
	}
}
