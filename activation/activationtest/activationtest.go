// Package activationtest holds test doubles for failures the real parts cannot be made
// to produce on demand: a store that goes down, and an ack sink that records what the
// lifecycle sends (the Kafka tests read the real topics instead).
package activationtest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/seuss-go/seuss/activation"
)

// FlakyStore wraps a real store and fails every call with activation.ErrUnavailable
// while Down is set, as a store that cannot be reached does.
type FlakyStore struct {
	activation.Store
	down atomic.Bool
}

var _ activation.Store = (*FlakyStore)(nil)

// NewFlakyStore wraps st; it starts up.
func NewFlakyStore(st activation.Store) *FlakyStore { return &FlakyStore{Store: st} }

// SetDown makes the store unreachable (true) or reachable again.
func (f *FlakyStore) SetDown(down bool) { f.down.Store(down) }

func (f *FlakyStore) err(op string) error {
	if f.down.Load() {
		return fmt.Errorf("activationtest: %s: connection refused: %w", op, activation.ErrUnavailable)
	}
	return nil
}

// GetAction implements activation.Store.
func (f *FlakyStore) GetAction(ctx context.Context, docID, rev string) (*activation.WhiskAction, error) {
	if err := f.err("get action"); err != nil {
		return nil, err
	}
	return f.Store.GetAction(ctx, docID, rev)
}

// GetAttachment implements activation.Store.
func (f *FlakyStore) GetAttachment(ctx context.Context, docID, name string) ([]byte, error) {
	if err := f.err("get attachment"); err != nil {
		return nil, err
	}
	return f.Store.GetAttachment(ctx, docID, name)
}

// PutActivation implements activation.Store.
func (f *FlakyStore) PutActivation(ctx context.Context, a *activation.WhiskActivation) error {
	if err := f.err("put activation"); err != nil {
		return err
	}
	return f.Store.PutActivation(ctx, a)
}

// GetActivation implements activation.Store.
func (f *FlakyStore) GetActivation(ctx context.Context, namespace, id string) (*activation.WhiskActivation, error) {
	if err := f.err("get activation"); err != nil {
		return nil, err
	}
	return f.Store.GetActivation(ctx, namespace, id)
}

// SentAck is one ack as the recorder saw it.
type SentAck struct {
	Controller string
	Kind       string // "result", "completion", "combined"
	JSON       []byte
}

// AckRecorder is an activation.AckSender that keeps what it is sent. With MaxBytes set
// it refuses larger acks with activation.ErrAckTooLarge, as a broker does.
type AckRecorder struct {
	MaxBytes int

	mu   sync.Mutex
	acks []SentAck
}

var _ activation.AckSender = (*AckRecorder)(nil)

// SendAck implements activation.AckSender.
func (r *AckRecorder) SendAck(_ context.Context, controller string, ack activation.Ack) error {
	b, err := activation.Marshal(ack)
	if err != nil {
		return err
	}
	if r.MaxBytes > 0 && len(b) > r.MaxBytes {
		return fmt.Errorf("activationtest: %d bytes: %w", len(b), activation.ErrAckTooLarge)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.acks = append(r.acks, SentAck{Controller: controller, Kind: activation.AckKind(ack), JSON: b})
	return nil
}

// Acks returns the acks sent so far and forgets them.
func (r *AckRecorder) Acks() []SentAck {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.acks
	r.acks = nil
	return a
}
