package bbolt

import (
	"context"
	"errors"
	"os"
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

// The store does not sync its freelist: a file it wrote opens consistent in a bbolt that
// does (and back), and pages freed before a reopen are found again.
func TestFreelistNotSynced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seuss.db")
	ctx := context.Background()
	check := func(db *bolt.DB) {
		t.Helper()
		if err := db.View(func(tx *bolt.Tx) error {
			for err := range tx.Check() {
				return err
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	a := storetest.Action("guest", "big")
	if _, err := s.PutAction(ctx, a, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAction(ctx, "guest/big", a.Rev); err != nil {
		t.Fatal(err)
	}
	ids := []string{storetest.ActivationID(), storetest.ActivationID()}
	if err := s.PutActivation(ctx, storetest.Activation("guest", "hello", ids[0], 1000)); err != nil {
		t.Fatal(err)
	}
	check(s.db)
	if s.db.Stats().FreePageN == 0 {
		t.Fatal("no free pages after deleting a 1 MiB attachment")
	}
	s.Close()

	db, err := bolt.Open(path, 0o600, nil) // syncs its freelist
	if err != nil {
		t.Fatal(err)
	}
	check(db)
	db.Close()

	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if free := s.db.Stats().FreePageN; free == 0 {
		t.Fatal("reopened: no free pages")
	}
	// The freed pages take a new attachment of the same size: the file does not grow.
	before := fileSize(t, path)
	b := storetest.Action("guest", "big2")
	if _, err := s.PutAction(ctx, b, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	if after := fileSize(t, path); after > before {
		t.Fatalf("file grew from %d to %d bytes: the freed pages were not reused", before, after)
	}
	if err := s.PutActivation(ctx, storetest.Activation("guest", "hello", ids[1], 2000)); err != nil {
		t.Fatal(err)
	}
	check(s.db)
	for _, id := range ids {
		if _, err := s.GetActivation(ctx, "guest", id); err != nil {
			t.Fatal(err)
		}
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
