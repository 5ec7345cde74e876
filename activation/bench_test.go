package activation_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/activation/activationtest"
	"github.com/seuss-go/seuss/store/bbolt"
)

// instantExecutor answers every job at once as a hot instance would: the benchmarks
// below measure the invoker's own work around the executor.
type instantExecutor struct{}

func (instantExecutor) Run(_ context.Context, job *activation.Job) (*activation.Outcome, error) {
	now := time.Now()
	return &activation.Outcome{
		Path: activation.PathHot, RunStart: now, RunEnd: now, RunStatus: 200,
		RunResponse: json.RawMessage(`{"greeting":"Hello, World"}`),
		Logs:        []activation.LogLine{{Time: now, Stream: "stdout", Text: "hello"}},
	}, nil
}

// encodingAcks encodes each ack as the Kafka producer does, and drops it.
type encodingAcks struct{}

func (encodingAcks) SendAck(_ context.Context, _ string, ack activation.Ack) error {
	_, err := activation.EncodeAck(ack)
	return err
}

// StartAck makes encodingAcks an activation.AckStarter, as the Kafka producer is.
func (e encodingAcks) StartAck(ctx context.Context, c string, ack activation.Ack) func() error {
	err := e.SendAck(ctx, c, ack)
	return func() error { return err }
}

// memStore is a Store in memory: no disk, so that the invoker's own CPU shows.
type memStore struct {
	activation.Store // GetAttachment: not used by these actions
	action           *activation.WhiskAction
	mu               sync.Mutex
	recs             map[string][]byte
}

func (s *memStore) GetAction(_ context.Context, docID, rev string) (*activation.WhiskAction, error) {
	a := *s.action
	return &a, nil
}

func (s *memStore) PutActivation(_ context.Context, a *activation.WhiskActivation) error {
	b, err := json.Marshal(a)
	s.mu.Lock()
	s.recs[a.DocID()] = b
	s.mu.Unlock()
	return err
}

func (s *memStore) GetActivation(_ context.Context, ns, id string) (*activation.WhiskActivation, error) {
	s.mu.Lock()
	_, ok := s.recs[ns+"/"+id]
	s.mu.Unlock()
	if !ok {
		return nil, activation.ErrNotFound
	}
	return &activation.WhiskActivation{}, nil
}

// BenchmarkHandle: one hot blocking activation from its raw message to its last ack,
// with an executor that answers at once. "mem" keeps records in memory; "bbolt" writes
// them to the embedded store (one synced transaction each when sequential).
func BenchmarkHandle(b *testing.B) {
	code := "def main(args):\n    return {'greeting': 'Hello, ' + args.get('name', 'World')}\n"
	b.Run("mem", func(b *testing.B) {
		rev := "1-abc"
		st := &memStore{recs: map[string][]byte{}, action: &activation.WhiskAction{
			Namespace: "guest", Name: "hello", Rev: rev, Version: "0.0.1",
			Exec:   activation.Exec{Kind: "python:3.11", Code: json.RawMessage(mustJSON(code))},
			Limits: activation.DefaultActionLimits(), Parameters: []activation.KeyValue{},
		}}
		benchHandle(b, st, rev)
	})
	b.Run("bbolt", func(b *testing.B) {
		st, err := bbolt.Open(filepath.Join(b.TempDir(), "store.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		a := &activation.WhiskAction{Namespace: "guest", Name: "hello", Exec: activation.Exec{Kind: "python:3.11"},
			Version: "0.0.1", Limits: activation.DefaultActionLimits(), Parameters: []activation.KeyValue{}}
		rev, err := st.PutAction(context.Background(), a, []byte(code))
		if err != nil {
			b.Fatal(err)
		}
		benchHandle(b, st, rev)
	})
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func benchHandle(b *testing.B, st activation.Store, rev string) {
	inv, err := activation.NewInvoker(activation.Config{
		InstanceID: 0, UserMemoryMB: 2048, Store: st, Executor: instantExecutor{}, Acks: encodingAcks{},
	})
	if err != nil {
		b.Fatal(err)
	}
	raws := make([][]byte, b.N+1)
	for i := range raws {
		raws[i] = activationtest.Encode(activationtest.Message("guest", "hello", rev, true, map[string]any{"name": "World"}))
	}
	ctx := context.Background()
	if err := inv.Handle(ctx, raws[b.N]); err != nil { // fills the action cache
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := inv.Handle(ctx, raws[i]); err != nil {
			b.Fatal(err)
		}
	}
}
