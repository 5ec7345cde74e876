package couchdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"

	"github.com/seuss-go/seuss/activation"
)

// maxBatch is the most records one _bulk_docs request carries (OpenWhisk's batch size).
const maxBatch = 500

// batcher groups concurrent activation inserts into _bulk_docs requests without a
// goroutine of its own (group commit): the first caller to find no request in flight
// becomes the leader and sends what is pending, itself included; callers arriving
// meanwhile wait. When its own record is done, the leader hands the lead to the oldest
// waiter, so no caller is held longer than its own batch and the one before it.
type batcher struct {
	mu       sync.Mutex
	pending  []*pendingPut
	flushing bool
}

type pendingPut struct {
	a    *activation.WhiskActivation
	doc  []byte
	done chan outcome // buffered: a leader never blocks on a waiter
}

type outcome struct {
	err  error
	lead bool // no result yet: become the leader
}

func (b *batcher) put(ctx context.Context, s *Store, p *pendingPut) error {
	b.mu.Lock()
	b.pending = append(b.pending, p)
	if b.flushing {
		b.mu.Unlock()
		// Waiters do not give up early: a waiter handed the lead must take it, and the
		// leader's requests are bounded by the retry policy.
		o := <-p.done
		if !o.lead {
			return o.err
		}
	} else {
		b.flushing = true
		b.mu.Unlock()
	}
	return b.lead(ctx, s, p)
}

// lead sends batches until me's record is done, then passes the lead on.
func (b *batcher) lead(ctx context.Context, s *Store, me *pendingPut) error {
	// Other callers' records ride on this request: the leader's cancellation must not
	// fail them; the retry policy bounds it.
	ctx = context.WithoutCancel(ctx)
	for {
		b.mu.Lock()
		n := min(len(b.pending), maxBatch)
		batch := b.pending[:n:n]
		b.pending = b.pending[n:]
		b.mu.Unlock()

		errs := s.bulkInsert(ctx, batch)
		var mine error
		found := false
		for i, p := range batch {
			if p == me {
				mine, found = errs[i], true
				continue
			}
			p.done <- outcome{err: errs[i]}
		}
		if !found {
			continue // cannot happen: the leader is always the oldest pending record
		}
		b.mu.Lock()
		if len(b.pending) == 0 {
			b.flushing = false
		} else {
			b.pending[0].done <- outcome{lead: true}
		}
		b.mu.Unlock()
		return mine
	}
}

// bulkInsert writes records with one POST /{db}/_bulk_docs and returns each record's
// error (ErrConflict for an existing id). A request that fails as a whole fails every
// record with its error.
func (s *Store) bulkInsert(ctx context.Context, batch []*pendingPut) []error {
	errs := make([]error, len(batch))
	docs := make([]json.RawMessage, len(batch))
	for i, p := range batch {
		docs[i] = p.doc
	}
	body, _ := json.Marshal(map[string]any{"docs": docs})
	path := "/" + url.PathEscape(s.cfg.ActivationsDB) + "/_bulk_docs"
	err := s.retry(ctx, func(ctx context.Context, retried bool) error {
		resp, b, err := s.call(ctx, http.MethodPost, path, nil, body, "application/json")
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusAccepted {
			return statusError(resp, b)
		}
		var res []struct {
			ID     string `json:"id"`
			Error  string `json:"error"`
			Reason string `json:"reason"`
		}
		if err := json.Unmarshal(b, &res); err != nil {
			return fmt.Errorf("_bulk_docs answer: %w", err)
		}
		if len(res) != len(batch) {
			return fmt.Errorf("_bulk_docs answered %d results for %d documents", len(res), len(batch))
		}
		for i, r := range res {
			switch r.Error {
			case "":
				errs[i] = nil
			case "conflict":
				errs[i] = fmt.Errorf("%s: %w", r.Reason, activation.ErrConflict)
				// A retried request may have landed the first time.
				if retried && s.sameRecord(ctx, batch[i].a) {
					errs[i] = nil
				}
			default:
				errs[i] = errors.New(r.Error + ": " + r.Reason)
			}
		}
		return nil
	})
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
	}
	return errs
}
