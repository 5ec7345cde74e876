package storetest

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/store"
)

// Flaky wraps a store with a switch that makes every call fail as an unreachable store
// does (activation.ErrUnavailable), for tests of outage handling without a real peer.
type Flaky struct {
	store.Store
	Down atomic.Bool
	// Refuse, when set, is returned by PutActivation as a permanent refusal.
	Refuse atomic.Pointer[error]
}

var _ store.Store = (*Flaky)(nil)

func (f *Flaky) down() error {
	if f.Down.Load() {
		return fmt.Errorf("flaky store: down: %w", activation.ErrUnavailable)
	}
	return nil
}

// GetAction implements activation.Store.
func (f *Flaky) GetAction(ctx context.Context, id, rev string) (*activation.WhiskAction, error) {
	if err := f.down(); err != nil {
		return nil, err
	}
	return f.Store.GetAction(ctx, id, rev)
}

// GetAttachment implements activation.Store.
func (f *Flaky) GetAttachment(ctx context.Context, id, name string) ([]byte, error) {
	if err := f.down(); err != nil {
		return nil, err
	}
	return f.Store.GetAttachment(ctx, id, name)
}

// PutActivation implements activation.Store.
func (f *Flaky) PutActivation(ctx context.Context, a *activation.WhiskActivation) error {
	if err := f.down(); err != nil {
		return err
	}
	if p := f.Refuse.Load(); p != nil {
		return *p
	}
	return f.Store.PutActivation(ctx, a)
}

// GetActivation implements activation.Store.
func (f *Flaky) GetActivation(ctx context.Context, ns, id string) (*activation.WhiskActivation, error) {
	if err := f.down(); err != nil {
		return nil, err
	}
	return f.Store.GetActivation(ctx, ns, id)
}

// ListActivations implements store.Store.
func (f *Flaky) ListActivations(ctx context.Context, q store.ActivationQuery) ([]*activation.WhiskActivation, error) {
	if err := f.down(); err != nil {
		return nil, err
	}
	return f.Store.ListActivations(ctx, q)
}

// Health implements store.Store.
func (f *Flaky) Health(ctx context.Context) error {
	if err := f.down(); err != nil {
		return err
	}
	return f.Store.Health(ctx)
}
