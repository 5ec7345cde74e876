package couchbase

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/store"
	"github.com/seuss-go/seuss/store/internal/peers"
	"github.com/seuss-go/seuss/store/storetest"
)

// gocaves frozen: calls time out as ErrUnavailable, records written meanwhile are
// spooled and land when it resumes.
func TestOutageFrozen(t *testing.T) {
	c := peers.StartCaves(t)
	s, err := Open(context.Background(), Config{
		ConnStr: c.ConnStr, Username: "Administrator", Password: "password", Bucket: "default",
		Retry: store.Retry{Attempts: 2, Timeout: time.Second, Backoff: 50 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
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
	defer func() { cancel(); <-done }()

	ns := storetest.Namespace(t)
	var recs []*activation.WhiskActivation
	put := func(n int) {
		for i := 0; i < n; i++ {
			a := storetest.Activation(ns, "hello", storetest.ActivationID(), time.Now().UnixMilli())
			if err := sp.PutActivation(context.Background(), a); err != nil {
				t.Fatal(err)
			}
			recs = append(recs, a)
		}
	}
	put(3)
	for deadline := time.Now().Add(20 * time.Second); sp.Len() > 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond) // a slow answer under load may have spooled one
	}
	c.Freeze(true)
	frozen := true
	defer func() {
		if frozen {
			c.Freeze(false)
		}
	}()
	if err := s.Health(context.Background()); !errors.Is(err, activation.ErrUnavailable) {
		t.Fatalf("health while frozen: %v", err)
	}
	put(4)
	if sp.Len() != 4 {
		t.Fatalf("spooled %d of 4", sp.Len())
	}
	c.Freeze(false)
	frozen = false
	deadline := time.Now().Add(30 * time.Second)
	for sp.Len() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("not drained: %d waiting", sp.Len())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, a := range recs {
		if _, err := s.GetActivation(context.Background(), ns, a.ActivationID); err != nil {
			t.Fatalf("record %s: %v", a.ActivationID, err)
		}
	}
	list, err := s.ListActivations(context.Background(), store.ActivationQuery{Namespace: ns})
	if err != nil || len(list) != 7 {
		t.Fatalf("list: %d, %v", len(list), err)
	}
}
