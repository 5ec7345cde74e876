package bbolt

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/store"
	"github.com/seuss-go/seuss/store/storetest"
)

func TestSuite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := Open(filepath.Join(t.TempDir(), "seuss.db"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// A store reopened from its file has everything that was written.
func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seuss.db")
	ctx := context.Background()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	a := storetest.Action("guest", "hello")
	if _, err := s.PutAction(ctx, a, make([]byte, 20<<10)); err != nil {
		t.Fatal(err)
	}
	rec := storetest.Activation("guest", "hello", storetest.ActivationID(), 1000)
	if err := s.PutActivation(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Health(ctx); !errors.Is(err, activation.ErrUnavailable) {
		t.Fatalf("health of a closed store: %v", err)
	}
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.GetAction(ctx, "guest/hello", a.Rev)
	if err != nil {
		t.Fatal(err)
	}
	if code, err := store.ReadCode(ctx, s, got); err != nil || len(code) != 20<<10 {
		t.Fatalf("code after reopen: %d bytes, %v", len(code), err)
	}
	if _, err := s.GetActivation(ctx, "guest", rec.ActivationID); err != nil {
		t.Fatal(err)
	}
	list, err := s.ListActivations(ctx, store.ActivationQuery{Namespace: "guest"})
	if err != nil || len(list) != 1 {
		t.Fatalf("list after reopen: %d, %v", len(list), err)
	}
}

// A second process cannot open a file in use; it gives up after the lock timeout.
func TestLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seuss.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := Open(path); err == nil {
		t.Fatal("opened a locked file")
	}
}

// A file written by a newer layout is refused, not misread.
func TestRefusesUnknownFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seuss.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put([]byte("format"), []byte("2")) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Open(path); err == nil || !strings.Contains(err.Error(), "unknown format version") {
		t.Fatalf("opened a format-2 file: %v", err)
	}
}
