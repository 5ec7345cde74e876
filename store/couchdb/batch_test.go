package couchdb

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/store"
	"github.com/seuss-go/seuss/store/internal/peers"
	"github.com/seuss-go/seuss/store/storetest"
)

type countingTransport struct {
	bulk atomic.Int64
	base http.RoundTripper
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, "/_bulk_docs") {
		c.bulk.Add(1)
	}
	return c.base.RoundTrip(r)
}

// Concurrent inserts share _bulk_docs requests; every record lands once, a cancelled
// caller does not fail the others.
func TestBatching(t *testing.T) {
	p := peers.StartPouch(t)
	ct := &countingTransport{base: http.DefaultTransport}
	s := openPouchConfig(t, Config{
		Host: "127.0.0.1", Port: p.Port, Username: peers.AdminUser, Password: peers.AdminPassword,
		WhisksDB: "b_whisks", ActivationsDB: "b_activations", Client: &http.Client{Transport: ct},
	})
	ns := storetest.Namespace(t)
	const writers, each = 40, 10
	var wg sync.WaitGroup
	var failed atomic.Int64
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				ctx := context.Background()
				if w == 0 && i == 0 {
					ctx = cancelled // its record still lands: others may ride on it
				}
				if err := s.PutActivation(ctx, storetest.Activation(ns, "hello", storetest.ActivationID(), int64(w*each+i))); err != nil {
					t.Error(err)
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.FailNow()
	}
	list, err := s.ListActivations(context.Background(), store.ActivationQuery{Namespace: ns})
	if err != nil || len(list) != writers*each {
		t.Fatalf("listed %d of %d, %v", len(list), writers*each, err)
	}
	if n := ct.bulk.Load(); n >= writers*each {
		t.Fatalf("%d _bulk_docs requests for %d records: no batching", n, writers*each)
	} else {
		t.Logf("%d records in %d _bulk_docs requests", writers*each, n)
	}
	// A record already stored is a conflict inside a batch too.
	a := list[0]
	if err := s.PutActivation(context.Background(), a); !errors.Is(err, activation.ErrConflict) {
		t.Fatalf("re-insert: %v", err)
	}
}
