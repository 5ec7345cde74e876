// Package controllertest holds fakes for testing the controller without its peers: an
// in-memory store.Store and an invoker double that answers ActivationMessages with acks
// over Kafka as a real invoker would.
package controllertest

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/store"
)

// MemStore is an in-memory store.Store. Code is always inlined as "mem:<base64url>".
type MemStore struct {
	mu          sync.Mutex
	actions     map[string]*activation.WhiskAction
	activations map[string]*activation.WhiskActivation
	revs        int
}

var _ store.Store = (*MemStore)(nil)

// NewMemStore returns an empty store.
func NewMemStore() *MemStore {
	return &MemStore{actions: map[string]*activation.WhiskAction{}, activations: map[string]*activation.WhiskActivation{}}
}

func clone[T any](v *T) *T {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	out := new(T)
	if err := json.Unmarshal(b, out); err != nil {
		panic(err)
	}
	return out
}

func cloneAction(a *activation.WhiskAction) *activation.WhiskAction {
	c := clone(a)
	c.ID, c.Rev, c.EntityType, c.Updated = a.ID, a.Rev, a.EntityType, a.Updated
	return c
}

// GetAction implements activation.Store.
func (m *MemStore) GetAction(ctx context.Context, docID, rev string) (*activation.WhiskAction, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.actions[docID]
	if !ok {
		return nil, fmt.Errorf("memstore: %s: %w", docID, activation.ErrNotFound)
	}
	if rev != "" && rev != a.Rev {
		return nil, fmt.Errorf("memstore: %s@%s: %w", docID, rev, activation.ErrRevisionMismatch)
	}
	return cloneAction(a), nil
}

// GetAttachment implements activation.Store; MemStore has none.
func (m *MemStore) GetAttachment(ctx context.Context, docID, name string) ([]byte, error) {
	return nil, fmt.Errorf("memstore: attachment %s/%s: %w", docID, name, activation.ErrNotFound)
}

// PutActivation implements activation.Store.
func (m *MemStore) PutActivation(ctx context.Context, a *activation.WhiskActivation) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.activations[a.DocID()]; ok {
		return fmt.Errorf("memstore: %s: %w", a.DocID(), activation.ErrConflict)
	}
	m.activations[a.DocID()] = clone(a)
	return nil
}

// GetActivation implements activation.Store.
func (m *MemStore) GetActivation(ctx context.Context, namespace, id string) (*activation.WhiskActivation, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.activations[namespace+"/"+id]
	if !ok {
		return nil, fmt.Errorf("memstore: %s/%s: %w", namespace, id, activation.ErrNotFound)
	}
	return clone(a), nil
}

// PutAction implements store.Store.
func (m *MemStore) PutAction(ctx context.Context, a *activation.WhiskAction, code []byte) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	docID := a.Namespace + "/" + a.Name
	old, exists := m.actions[docID]
	switch {
	case a.Rev == "" && exists:
		return "", fmt.Errorf("memstore: create %s: %w", docID, activation.ErrConflict)
	case a.Rev != "" && (!exists || old.Rev != a.Rev):
		return "", fmt.Errorf("memstore: update %s: %w", docID, activation.ErrConflict)
	}
	c := cloneAction(a)
	if code != nil {
		sum := sha256.Sum256(code)
		n := int64(len(code))
		typ := "text/plain; charset=UTF-8"
		if a.Exec.Binary {
			typ = "application/octet-stream"
		}
		att, _ := json.Marshal(activation.Attachment{
			AttachmentName: "mem:" + base64.URLEncoding.EncodeToString(code),
			AttachmentType: typ, Length: &n, Digest: "sha256-" + hex.EncodeToString(sum[:]),
		})
		c.Exec.Code = att
		a.Exec.Code = att
	}
	m.revs++
	c.ID, c.EntityType, c.Updated = docID, "action", time.Now().UnixMilli()
	c.Rev = fmt.Sprintf("%d-%x", m.revs, sha256.Sum256([]byte(docID)))[:12]
	m.actions[docID] = c
	a.Updated = c.Updated
	return c.Rev, nil
}

// DeleteAction implements store.Store.
func (m *MemStore) DeleteAction(ctx context.Context, docID, rev string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.actions[docID]
	if !ok {
		return fmt.Errorf("memstore: delete %s: %w", docID, activation.ErrNotFound)
	}
	if rev != "" && rev != a.Rev {
		return fmt.Errorf("memstore: delete %s: %w", docID, activation.ErrConflict)
	}
	delete(m.actions, docID)
	return nil
}

// ListActions implements store.Store.
func (m *MemStore) ListActions(ctx context.Context, namespace string, skip, limit int) ([]*activation.WhiskAction, error) {
	m.mu.Lock()
	var list []*activation.WhiskAction
	for _, a := range m.actions {
		if a.Namespace == namespace || strings.HasPrefix(a.Namespace, namespace+"/") {
			list = append(list, cloneAction(a))
		}
	}
	m.mu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].Updated > list[j].Updated })
	return page(list, skip, limit), nil
}

// ListActivations implements store.Store.
func (m *MemStore) ListActivations(ctx context.Context, q store.ActivationQuery) ([]*activation.WhiskActivation, error) {
	m.mu.Lock()
	var list []*activation.WhiskActivation
	for _, a := range m.activations {
		if a.Namespace != q.Namespace {
			continue
		}
		if q.Name != "" {
			var path string
			json.Unmarshal(a.Annotation("path"), &path)
			if path != q.Namespace+"/"+q.Name {
				continue
			}
		}
		if !q.Since.IsZero() && a.Start < q.Since.UnixMilli() {
			continue
		}
		if !q.Upto.IsZero() && a.Start > q.Upto.UnixMilli() {
			continue
		}
		list = append(list, clone(a))
	}
	m.mu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].Start > list[j].Start })
	return page(list, q.Skip, q.Limit), nil
}

func page[T any](list []T, skip, limit int) []T {
	if skip >= len(list) {
		return nil
	}
	list = list[skip:]
	if limit > 0 && limit < len(list) {
		list = list[:limit]
	}
	return list
}

// Health implements store.Store.
func (m *MemStore) Health(ctx context.Context) error { return nil }

// Close implements store.Store.
func (m *MemStore) Close() error { return nil }
