package kafka_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/activation/activationtest"
	"github.com/seuss-go/seuss/kafka"
	"github.com/seuss-go/seuss/runtimes/process"
	"github.com/seuss-go/seuss/snapshots"
	"github.com/seuss-go/seuss/store/bbolt"
)

// wait bounds every wait for a message: generous, since these tests assert what
// arrives, never how fast.
const wait = 90 * time.Second

// ack is one message read from completed0, classified as a controller does
// (AcknowledgementMessage.serdes.read: instance+response → combined, instance →
// completion, else result).
type ack struct {
	Kind          string
	ActivationID  string
	Activation    *activation.WhiskActivation // nil when shrunk or a completion
	Shrunk        bool
	IsSystemError bool
	TransID       string // raw JSON
	Raw           []byte
}

func parseAck(b []byte) (ack, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return ack{}, err
	}
	a := ack{Raw: b, TransID: string(m["transid"])}
	_, hasInst := m["instance"]
	resp, hasResp := m["response"]
	switch {
	case hasInst && hasResp:
		a.Kind = "combined"
	case hasInst:
		a.Kind = "completion"
		if err := json.Unmarshal(m["activationId"], &a.ActivationID); err != nil {
			return a, err
		}
	default:
		a.Kind = "result"
	}
	if v, ok := m["isSystemError"]; ok {
		_ = json.Unmarshal(v, &a.IsSystemError)
	}
	if hasResp {
		if len(resp) > 0 && resp[0] == '"' {
			a.Shrunk = true
			_ = json.Unmarshal(resp, &a.ActivationID)
		} else {
			a.Activation = new(activation.WhiskActivation)
			if err := json.Unmarshal(resp, a.Activation); err != nil {
				return a, err
			}
			a.ActivationID = a.Activation.ActivationID
		}
	}
	if a.ActivationID == "" {
		return a, errors.New("ack without activation id")
	}
	return a, nil
}

// controller plays an OpenWhisk controller against the broker: it sends
// ActivationMessages to invoker0 and reads completed0 and health.
type controller struct {
	t      testing.TB
	addr   string
	w      *kafkago.Writer
	cancel context.CancelFunc
	done   sync.WaitGroup

	mu      sync.Mutex
	changed chan struct{}
	acks    map[string][]ack
	bad     []string
	pings   []activation.PingMessage
	events  map[string]activation.EventMessage
}

func newController(t testing.TB, addr string) *controller {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &controller{
		t: t, addr: addr, cancel: cancel, changed: make(chan struct{}),
		acks: map[string][]ack{}, events: map[string]activation.EventMessage{},
		w: &kafkago.Writer{Addr: kafkago.TCP(addr), Topic: "invoker0", RequiredAcks: kafkago.RequireOne, BatchTimeout: time.Millisecond, BatchBytes: kafka.MaxMessageBytes},
	}
	c.read(ctx, "completed0", func(b []byte) {
		a, err := parseAck(b)
		c.mu.Lock()
		if err != nil {
			c.bad = append(c.bad, string(b))
		} else {
			c.acks[a.ActivationID] = append(c.acks[a.ActivationID], a)
		}
		c.mu.Unlock()
	})
	c.read(ctx, kafka.HealthTopic, func(b []byte) {
		var p activation.PingMessage
		if err := json.Unmarshal(b, &p); err != nil {
			c.mu.Lock()
			c.bad = append(c.bad, string(b))
			c.mu.Unlock()
			return
		}
		c.mu.Lock()
		c.pings = append(c.pings, p)
		c.mu.Unlock()
	})
	c.read(ctx, kafka.EventsTopic, func(b []byte) {
		var ev activation.EventMessage
		c.mu.Lock()
		defer c.mu.Unlock()
		if err := json.Unmarshal(b, &ev); err != nil {
			c.bad = append(c.bad, string(b))
			return
		}
		c.events[ev.Body.ActivationID] = ev
	})
	t.Cleanup(c.close)
	return c
}

func (c *controller) read(ctx context.Context, topic string, f func([]byte)) {
	r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: []string{c.addr}, Topic: topic, Partition: 0, MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 100 * time.Millisecond})
	c.done.Add(1)
	go func() {
		defer c.done.Done()
		defer r.Close()
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				continue
			}
			f(m.Value)
			c.mu.Lock()
			close(c.changed)
			c.changed = make(chan struct{})
			c.mu.Unlock()
		}
	}()
}

func (c *controller) close() {
	c.cancel()
	c.done.Wait()
	c.w.Close()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.bad) > 0 {
		c.t.Errorf("unparsable messages from the invoker: %q", c.bad)
	}
}

func (c *controller) send(msgs ...*activation.ActivationMessage) {
	c.t.Helper()
	var km []kafkago.Message
	for _, m := range msgs {
		km = append(km, kafkago.Message{Value: activationtest.Encode(m)})
	}
	c.sendRaw(km...)
}

func (c *controller) sendRaw(km ...kafkago.Message) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for {
		err := c.w.WriteMessages(ctx, km...)
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			c.t.Fatalf("send to invoker0: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// until waits for cond (evaluated under the lock) to hold.
func (c *controller) until(what string, cond func() bool) {
	c.t.Helper()
	deadline := time.After(wait)
	for {
		c.mu.Lock()
		ok, ch := cond(), c.changed
		c.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			c.t.Fatalf("gave up waiting for %s", what)
		}
	}
}

// completed waits for the activation's completion (or combined) ack and returns all
// its acks so far, in order.
func (c *controller) completed(id string) []ack {
	c.t.Helper()
	var out []ack
	c.until("the completion of "+id, func() bool {
		for _, a := range c.acks[id] {
			if a.Kind != "result" {
				out = append([]ack(nil), c.acks[id]...)
				return true
			}
		}
		return false
	})
	return out
}

func (c *controller) pingCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pings)
}

func kindsOf(acks []ack) string {
	var k []string
	for _, a := range acks {
		s := a.Kind
		if a.Shrunk {
			s += "(shrunk)"
		}
		k = append(k, s)
	}
	return strings.Join(k, ",")
}

// env is a broker, a bbolt store, the process executor and an in-process invoker.
type env struct {
	t      testing.TB
	addr   string
	broker *kafka.Broker
	store  *bbolt.Store
	flaky  *activationtest.FlakyStore
	ctrl   *controller
	exec   interface {
		activation.Executor
		Close() error
	}
	inv  *kafka.Invoker
	stop func()
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startBroker(t testing.TB, addr string) *kafka.Broker {
	t.Helper()
	// The controller's topics (completed0, health) are created by the controller;
	// invoker0 by the invoker.
	// Restarting on the same port can briefly fail while clients redial it: a dial
	// to a closed loopback port may connect to itself (TCP self-connect) and hold it.
	deadline := time.Now().Add(wait)
	for {
		b, err := kafka.StartBroker(context.Background(), addr, "completed0", kafka.HealthTopic, kafka.EventsTopic)
		if err == nil {
			return b
		}
		if !strings.Contains(err.Error(), "address already in use") || time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func newEnv(t testing.TB) *env { return newEnvWith(t, nil) }

// newEnvWith is newEnv with the invoker's configuration adjusted by edit.
func newEnvWith(t testing.TB, edit func(*kafka.InvokerConfig)) *env {
	t.Helper()
	e := newEnvNoInvoker(t)
	e.startInvoker(edit)
	return e
}

// newEnvNoInvoker is the broker, store, executor and controller, without an invoker.
func newEnvNoInvoker(t testing.TB) *env {
	t.Helper()
	e := &env{t: t, addr: freeAddr(t)}
	e.broker = startBroker(t, e.addr)
	t.Cleanup(func() { e.broker.Close() })
	st, err := bbolt.Open(filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	e.store = st
	t.Cleanup(func() { st.Close() })
	e.flaky = activationtest.NewFlakyStore(st)
	if os.Getenv("SEUSS_TEST_EXECUTOR") == "uc" {
		// The same suite over unikernel contexts: SEUSS_TEST_EXECUTOR=uc (needs
		// /dev/kvm and `make rootfs`).
		roots, _ := filepath.Abs("../.seuss/roots")
		uc, err := snapshots.New(snapshots.Config{RootsDir: roots})
		if err != nil {
			t.Fatal(err)
		}
		e.exec = uc
	} else {
		pe, err := process.New(process.Config{TempDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		e.exec = pe
	}
	t.Cleanup(func() { e.exec.Close() })
	e.ctrl = newController(t, e.addr)
	return e
}

// startInvoker starts an in-process invoker on the env; e.stop stops it.
func (e *env) startInvoker(edit func(*kafka.InvokerConfig)) {
	t := e.t
	t.Helper()
	cfg := kafka.InvokerConfig{
		Brokers: []string{e.addr}, ID: 0, Store: e.flaky, Executor: e.exec, Events: true,
		RecordRetry: 500 * time.Millisecond, DrainTimeout: 20 * time.Second,
	}
	if os.Getenv("SEUSS_TEST_DEBUG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if edit != nil {
		edit(&cfg)
	}
	var err error
	e.inv, err = kafka.NewInvoker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.inv.Run(ctx) }()
	e.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("invoker: %v", err)
		}
	}
	t.Cleanup(func() {
		if ctx.Err() == nil {
			e.stop()
		}
	})
}

func putAction(t testing.TB, st *bbolt.Store, name, kind, code string, limits *activation.ActionLimits) string {
	t.Helper()
	a := &activation.WhiskAction{Namespace: "guest", Name: name, Exec: activation.Exec{Kind: kind}, Version: "0.0.1",
		Limits: activation.DefaultActionLimits(), Parameters: []activation.KeyValue{}, Annotations: []activation.KeyValue{}}
	if limits != nil {
		a.Limits = *limits
	}
	if cur, err := st.GetAction(context.Background(), "guest/"+name, ""); err == nil {
		a.Rev = cur.Rev
	}
	rev, err := st.PutAction(context.Background(), a, []byte(code))
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

func record(t testing.TB, st activation.Store, id string) *activation.WhiskActivation {
	t.Helper()
	var rec *activation.WhiskActivation
	// The record is written before the completion ack, so it is there once the
	// completion was read.
	rec, err := st.GetActivation(context.Background(), "guest", id)
	if err != nil {
		t.Fatalf("record %s: %v", id, err)
	}
	return rec
}
