package couchdb

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/store"
	"github.com/seuss-go/seuss/store/internal/peers"
	"github.com/seuss-go/seuss/store/storetest"
)

// outageStore is a CouchDB store with short timeouts behind a spool, the spool's
// drain loop running.
func outageStore(t *testing.T, p *peers.Pouch) (*Store, *store.Spool) {
	t.Helper()
	s, err := Open(context.Background(), Config{
		Host: "127.0.0.1", Port: p.Port, Username: peers.AdminUser, Password: peers.AdminPassword,
		WhisksDB: "local_whisks", ActivationsDB: "local_activations",
		Retry: store.Retry{Attempts: 2, Timeout: time.Second, Backoff: 50 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	sp, err := store.NewSpool(s, store.SpoolOptions{
		Dir: t.TempDir(), Interval: 300 * time.Millisecond, Timeout: 3 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sp.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; s.Close() })
	return s, sp
}

func putAll(t *testing.T, s activation.Store, ns string, n int) []*activation.WhiskActivation {
	t.Helper()
	var out []*activation.WhiskActivation
	for i := 0; i < n; i++ {
		a := storetest.Activation(ns, "hello", storetest.ActivationID(), time.Now().UnixMilli())
		if err := s.PutActivation(context.Background(), a); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
		out = append(out, a)
	}
	return out
}

func waitDrained(t *testing.T, sp *store.Spool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for sp.Len() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("spool not drained: %d waiting", sp.Len())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func mustHave(t *testing.T, s *Store, recs []*activation.WhiskActivation) {
	t.Helper()
	for _, a := range recs {
		got, err := s.GetActivation(context.Background(), a.Namespace, a.ActivationID)
		if err != nil || got.Start != a.Start {
			t.Fatalf("record %s after the outage: %v", a.ActivationID, err)
		}
	}
}

// pouchdb-server killed and restarted: records written meanwhile are spooled, readable
// through the spool, and land once it is back (the restarted in-memory server has lost
// what it held before; the store re-creates its databases).
func TestOutageKillRestart(t *testing.T) {
	p := peers.StartPouch(t)
	s, sp := outageStore(t, p)
	ns := storetest.Namespace(t)
	putAll(t, sp, ns, 3)
	waitDrained(t, sp) // a slow answer under load may have spooled one
	p.Kill()
	start := time.Now()
	during := putAll(t, sp, ns, 10)
	if sp.Len() != 10 {
		t.Fatalf("spooled %d of 10", sp.Len())
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("10 puts during the outage took %v", time.Since(start))
	}
	if _, err := sp.GetActivation(context.Background(), ns, during[4].ActivationID); err != nil {
		t.Fatalf("spooled record not readable: %v", err)
	}
	time.Sleep(500 * time.Millisecond) // a few failing drain passes
	p.Start()
	waitDrained(t, sp)
	mustHave(t, s, during)
}

// pouchdb-server frozen (SIGSTOP): requests time out instead of being refused; writes
// that timed out may still land when it resumes, and the drain takes those conflicts
// as done.
func TestOutageFrozen(t *testing.T) {
	p := peers.StartPouch(t)
	s, sp := outageStore(t, p)
	ns := storetest.Namespace(t)
	before := putAll(t, sp, ns, 3)
	waitDrained(t, sp)
	p.Freeze(true)
	during := putAll(t, sp, ns, 4)
	if sp.Len() != 4 {
		t.Fatalf("spooled %d of 4", sp.Len())
	}
	p.Freeze(false)
	waitDrained(t, sp)
	mustHave(t, s, append(before, during...))
	list, err := sp.ListActivations(context.Background(), store.ActivationQuery{Namespace: ns})
	if err != nil || len(list) != 7 {
		t.Fatalf("list after the outage: %d, %v", len(list), err)
	}
}
