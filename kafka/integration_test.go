package kafka_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/activation/activationtest"
	"github.com/seuss-go/seuss/kafka"
)

const helloJS = `function main(params) { console.log("hello " + params.name); return {payload: "Hello, " + params.name + "!"} }`

// TestInvokerAsController drives one in-process invoker (real broker, bbolt store,
// process executor) exactly as a controller would, through every outcome.
func TestInvokerAsController(t *testing.T) {
	e := newEnv(t)
	st := e.store
	c := e.ctrl
	c.until("a health ping", func() bool { return len(c.pings) > 0 })
	c.mu.Lock()
	p := c.pings[0]
	c.mu.Unlock()
	if b, _ := json.Marshal(p); string(b) != `{"name":{"instance":0,"userMemory":"2147483648 B","instanceType":"invoker","tags":[],"dedicatedNamespaces":[]},"isEnabled":true}` {
		t.Fatalf("ping %s", b)
	}

	helloRev := putAction(t, st, "hello", "nodejs:20", helloJS, nil)
	lim := &activation.ActionLimits{Timeout: 1000, Memory: 128, Logs: 10, Concurrency: 1}

	t.Run("blocking", func(t *testing.T) {
		m := activationtest.Message("guest", "hello", helloRev, true, map[string]any{"name": "World"})
		c.send(m)
		acks := c.completed(m.ActivationID)
		if kindsOf(acks) != "result,completion" || acks[0].TransID != string(activationtest.Encode(m.TransID)) {
			t.Fatalf("acks %s", kindsOf(acks))
		}
		if r := acks[0].Activation; r.Response.StatusCode != 0 || string(r.Response.Result) != `{"payload":"Hello, World!"}` {
			t.Fatalf("result %s", acks[0].Raw)
		}
		if rec := record(t, st, m.ActivationID); len(rec.Logs) != 1 || !strings.HasSuffix(rec.Logs[0], "stdout: hello World") {
			t.Fatalf("logs %q", rec.Logs)
		}
		c.until("the user event", func() bool { _, ok := c.events[m.ActivationID]; return ok })
		c.mu.Lock()
		ev := c.events[m.ActivationID]
		c.mu.Unlock()
		if ev.Source != "invoker0" || ev.EventType != "Activation" || ev.Body.Name != "guest/hello" || ev.Body.Kind != "nodejs:20" ||
			ev.Body.Memory != 256 || ev.UserID != activationtest.GuestUUID || ev.Body.StatusCode != 0 {
			t.Fatalf("event %+v", ev)
		}
	})
	t.Run("non-blocking", func(t *testing.T) {
		m := activationtest.Message("guest", "hello", helloRev, false, map[string]any{"name": "nb"})
		c.send(m)
		acks := c.completed(m.ActivationID)
		if kindsOf(acks) != "completion" || acks[0].IsSystemError {
			t.Fatalf("acks %s", kindsOf(acks))
		}
		record(t, st, m.ActivationID)
	})
	t.Run("health action", func(t *testing.T) {
		putAction(t, st, "invokerHealthTestAction0", "nodejs:20", `function main(params) { return params; }`, lim)
		m := activationtest.Message("guest", "invokerHealthTestAction0", "", false, nil)
		m.Revision, m.Content = nil, nil
		m.TransID = activation.NewTransactionID("sid_invokerHealth", 1716199990123)
		c.send(m)
		acks := c.completed(m.ActivationID)
		if kindsOf(acks) != "completion" || acks[0].TransID != `["sid_invokerHealth",1716199990123]` || acks[0].IsSystemError {
			t.Fatalf("acks %s %s", kindsOf(acks), acks[0].Raw)
		}
	})
	t.Run("not found", func(t *testing.T) {
		m := activationtest.Message("guest", "missing", "1-x", true, nil)
		c.send(m)
		acks := c.completed(m.ActivationID)
		if kindsOf(acks) != "combined" || acks[0].Activation.Response.StatusCode != 1 ||
			string(acks[0].Activation.Response.Result) != `{"error":"Action could not be found or may have been deleted."}` {
			t.Fatalf("acks %s %s", kindsOf(acks), acks[0].Raw)
		}
		if rec := record(t, st, m.ActivationID); rec.Response.StatusCode != 1 {
			t.Fatalf("record %+v", rec.Response)
		}
		c.until("the user event", func() bool { _, ok := c.events[m.ActivationID]; return ok })
		c.mu.Lock()
		ev := c.events[m.ActivationID]
		c.mu.Unlock()
		if ev.Body.Kind != "unknown" || ev.Body.StatusCode != 1 || ev.Body.Name != "guest/missing" {
			t.Fatalf("event %+v", ev)
		}
	})
	t.Run("revision mismatch", func(t *testing.T) {
		m := activationtest.Message("guest", "hello", "1-stale", true, map[string]any{"name": "latest"})
		c.send(m)
		acks := c.completed(m.ActivationID)
		if kindsOf(acks) != "result,completion" || acks[0].Activation.Response.StatusCode != 0 {
			t.Fatalf("acks %s %s", kindsOf(acks), acks[0].Raw)
		}
	})
	outcomes := []struct {
		name, kind, code string
		blocking         bool
		status           int
		kinds, contains  string
	}{
		{"init failure", "python:3.11", "def main(args:\n  pass\n", true, 2, "result,completion", `{"error":`},
		{"timeout", "nodejs:20", `function main() { for (;;) {} }`, false, 2, "completion", `{"error":"The action exceeded its time limits of 1000 milliseconds."}`},
		{"memory limit", "python:3.11", "def main(args):\n  x = bytearray(512 * 1024 * 1024)\n  return {'n': len(x)}\n", true, 2, "result,completion", "The action exceeded its memory limit of 128 MB."},
		{"application error", "python:3.11", "def main(args):\n  return {'error': 'no'}\n", true, 1, "result,completion", `{"error":"no"}`},
		// The body's quotes are escaped again when quoted into the error message: the
		// result ack exceeds max.message.bytes and is resent shrunk.
		{"oversize result", "nodejs:20", `function main() { return {s: '"'.repeat(1100000)} }`, true, 1, "result(shrunk),completion", "exceeded the allowed length: 2200008 "},
	}
	for _, o := range outcomes {
		t.Run(o.name, func(t *testing.T) {
			name := strings.ReplaceAll(o.name, " ", "-")
			l := *lim
			if o.name == "oversize result" {
				l.Timeout = 20000
			}
			rev := putAction(t, st, name, o.kind, o.code, &l)
			m := activationtest.Message("guest", name, rev, o.blocking, nil)
			c.send(m)
			acks := c.completed(m.ActivationID)
			if kindsOf(acks) != o.kinds {
				t.Fatalf("acks %s", kindsOf(acks))
			}
			rec := record(t, st, m.ActivationID)
			if rec.Response.StatusCode != o.status || !strings.Contains(string(rec.Response.Result), o.contains) {
				t.Fatalf("record %d %.300s", rec.Response.StatusCode, rec.Response.Result)
			}
		})
	}
	t.Run("malformed messages", func(t *testing.T) {
		m := activationtest.Message("guest", "hello", helloRev, true, map[string]any{"name": "after garbage"})
		c.sendRaw(kafkago.Message{Value: []byte("not json")}, kafkago.Message{Value: []byte(`{"transid":["x",1]}`)},
			kafkago.Message{Value: nil}, kafkago.Message{Value: activationtest.Encode(m)})
		if acks := c.completed(m.ActivationID); kindsOf(acks) != "result,completion" {
			t.Fatalf("acks %s", kindsOf(acks))
		}
	})
	t.Run("store outage", func(t *testing.T) {
		e.flaky.SetDown(true)
		m := activationtest.Message("guest", "hello", "", true, map[string]any{"name": "down"})
		c.send(m)
		acks := c.completed(m.ActivationID)
		e.flaky.SetDown(false)
		if kindsOf(acks) != "combined" || !acks[0].IsSystemError ||
			string(acks[0].Activation.Response.Result) != `{"error":"Action could not be fetched."}` {
			t.Fatalf("acks %s %s", kindsOf(acks), acks[0].Raw)
		}
		m = activationtest.Message("guest", "hello", helloRev, true, map[string]any{"name": "up"})
		c.send(m)
		if acks := c.completed(m.ActivationID); kindsOf(acks) != "result,completion" {
			t.Fatalf("after the outage: %s", kindsOf(acks))
		}
	})
	t.Run("redelivery acked from the record", func(t *testing.T) {
		m := activationtest.Message("guest", "hello", helloRev, true, map[string]any{"name": "twice"})
		c.send(m)
		first := c.completed(m.ActivationID)
		c.send(m) // as after a crash between acks and commit
		c.until("the second completion", func() bool { return len(c.acks[m.ActivationID]) == 4 })
		c.mu.Lock()
		acks := c.acks[m.ActivationID]
		c.mu.Unlock()
		if kindsOf(acks) != "result,completion,result,completion" || acks[2].Activation.Start != first[0].Activation.Start {
			t.Fatalf("acks %s", kindsOf(acks))
		}
	})
}

// TestEnableDisable: /disable sends one ping with isEnabled false and stops pinging.
func TestEnableDisable(t *testing.T) {
	e := newEnv(t)
	c := e.ctrl
	c.until("a ping", func() bool { return len(c.pings) > 0 })
	e.inv.Service.SetEnabled(false)
	c.until("a disabled ping", func() bool { return *c.pings[len(c.pings)-1].IsEnabled == false })
	e.inv.Service.SetEnabled(true)
	c.until("pings again", func() bool { return *c.pings[len(c.pings)-1].IsEnabled })
}

// TestBrokerRestart: the broker goes away and comes back empty on the same address
// (kfake keeps nothing); the invoker reconnects, keeps pinging and runs new work.
func TestBrokerRestart(t *testing.T) {
	e := newEnv(t)
	rev := putAction(t, e.store, "hello", "nodejs:20", helloJS, nil)
	m := activationtest.Message("guest", "hello", rev, true, map[string]any{"name": "before"})
	e.ctrl.send(m)
	e.ctrl.completed(m.ActivationID)

	// This one is running when the broker goes away: its acks wait for the broker.
	slowRev := putAction(t, e.store, "slow", "nodejs:20", `function main() { return new Promise(r => setTimeout(() => r({done: true}), 1000)) }`, nil)
	during := activationtest.Message("guest", "slow", slowRev, true, nil)
	e.ctrl.send(during)
	e.ctrl.until("the slow activation running", func() bool { return e.inv.Service.InFlight() == 1 })

	e.broker.Close()
	e.ctrl.close()
	b := startBroker(t, e.addr)
	t.Cleanup(b.Close)
	// A restarted Kafka keeps its topics; this one lost them, so create invoker0 again.
	if err := kafka.EnsureTopic(context.Background(), []string{e.addr}, "invoker0"); err != nil {
		t.Fatal(err)
	}
	c := newController(t, e.addr)
	c.until("a ping after the restart", func() bool { return len(c.pings) > 0 })
	if acks := c.completed(during.ActivationID); kindsOf(acks) != "result,completion" || string(acks[0].Activation.Response.Result) != `{"done":true}` {
		t.Fatalf("activation running across the restart: acks %s", kindsOf(acks))
	}
	m = activationtest.Message("guest", "hello", rev, true, map[string]any{"name": "after"})
	c.send(m)
	if acks := c.completed(m.ActivationID); kindsOf(acks) != "result,completion" {
		t.Fatalf("acks %s", kindsOf(acks))
	}

	// Not checked here: which offsets end up committed on the new broker. This broker
	// came back with an empty log, so offsets are reused, and the commit of the
	// activation that ran across the restart (offset 1 of the old log) may land on the
	// new log too. A real Kafka keeps its log; TestCommitsAcrossRestart checks commits.
}

// TestGracefulShutdownDrains: stopping the invoker while activations run lets them
// finish and be acked before it returns.
func TestGracefulShutdownDrains(t *testing.T) {
	e := newEnv(t)
	rev := putAction(t, e.store, "slow", "nodejs:20", `function main(p) { return new Promise(r => setTimeout(() => r({i: p.i}), 300)) }`, nil)
	var msgs []*activation.ActivationMessage
	for i := 0; i < 4; i++ {
		msgs = append(msgs, activationtest.Message("guest", "slow", rev, i%2 == 0, map[string]any{"i": i}))
	}
	c := e.ctrl
	c.send(msgs...)
	c.until("all four running", func() bool { return e.inv.Service.InFlight() == 4 })
	e.stop()
	for _, m := range msgs {
		c.completed(m.ActivationID)
		record(t, e.store, m.ActivationID)
	}
}

// TestUserMemoryBoundsConcurrency: with 256 MB of user memory, two 128 MB activations
// at most run at once (checked by the actions themselves through lock files, not by
// timing), and the consumer holds at most MaxConcurrent messages.
func TestUserMemoryBoundsConcurrency(t *testing.T) {
	if os.Getenv("SEUSS_TEST_EXECUTOR") == "uc" {
		t.Skip("the actions share host files, which UCs cannot see")
	}
	var mu sync.Mutex
	maxDepth := 0
	e := newEnvWith(t, func(c *kafka.InvokerConfig) {
		c.UserMemoryMB = 256
		c.QueueDepth = func(n int) {
			mu.Lock()
			maxDepth = max(maxDepth, n)
			mu.Unlock()
		}
	})
	dir := t.TempDir()
	// Each activation takes one of two slot files; a third concurrent one finds both
	// taken and fails.
	code := `const fs = require("fs");
function main() {
  let slot = -1;
  for (const i of [0, 1]) { try { fs.writeFileSync("` + dir + `/slot" + i, "", {flag: "wx"}); slot = i; break } catch (e) {} }
  if (slot < 0) return {error: "more than two activations at once"};
  return new Promise(r => setTimeout(() => { fs.unlinkSync("` + dir + `/slot" + slot); r({slot: slot}) }, 50));
}`
	rev := putAction(t, e.store, "slots", "nodejs:20", code, &activation.ActionLimits{Timeout: 10000, Memory: 128, Logs: 10, Concurrency: 1})
	var msgs []*activation.ActivationMessage
	for i := 0; i < 12; i++ {
		msgs = append(msgs, activationtest.Message("guest", "slots", rev, false, nil))
	}
	e.ctrl.send(msgs...)
	for _, m := range msgs {
		e.ctrl.completed(m.ActivationID)
		if rec := record(t, e.store, m.ActivationID); rec.Response.StatusCode != 0 {
			t.Fatalf("activation ran beside two others: %s", rec.Response.Result)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if maxDepth > e.inv.MaxConcurrent() || e.inv.MaxConcurrent() != 2 {
		t.Fatalf("queue depth reached %d, max concurrent %d", maxDepth, e.inv.MaxConcurrent())
	}
}

// TestCommitsAcrossRestart: on an invoker topic with three partitions, an invoker that
// stops gracefully has committed every offset it handled: the next one handles only
// what is new, and reruns nothing.
func TestCommitsAcrossRestart(t *testing.T) {
	e := newEnvNoInvoker(t)
	cl := &kafkago.Client{Addr: kafkago.TCP(e.addr)}
	res, err := cl.CreateTopics(context.Background(), &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{
		{Topic: "invoker0", NumPartitions: 3, ReplicationFactor: 1}}})
	if err != nil || res.Errors["invoker0"] != nil {
		t.Fatalf("create invoker0: %v %v", err, res)
	}
	e.ctrl.w.Balancer = &kafkago.RoundRobin{}
	rev := putAction(t, e.store, "hello", "nodejs:20", helloJS, nil)
	batch := func() []*activation.ActivationMessage {
		var msgs []*activation.ActivationMessage
		for i := 0; i < 9; i++ {
			msgs = append(msgs, activationtest.Message("guest", "hello", rev, i%2 == 0, map[string]any{"name": i}))
		}
		return msgs
	}
	var redelivered atomic.Int64
	obs := &redeliveryCounter{n: &redelivered}
	for round := 0; round < 2; round++ {
		e.startInvoker(func(c *kafka.InvokerConfig) { c.Observer = obs })
		msgs := batch()
		e.ctrl.send(msgs...)
		for _, m := range msgs {
			e.ctrl.completed(m.ActivationID)
		}
		e.stop()
	}
	if n := redelivered.Load(); n != 0 {
		t.Fatalf("%d messages handled again after a graceful restart", n)
	}
	e.ctrl.mu.Lock()
	defer e.ctrl.mu.Unlock()
	for id, acks := range e.ctrl.acks {
		if k := kindsOf(acks); k != "result,completion" && k != "completion" {
			t.Fatalf("%s: acks %s", id, k)
		}
	}
}

type redeliveryCounter struct{ n *atomic.Int64 }

func (r *redeliveryCounter) Malformed(error)                               {}
func (r *redeliveryCounter) Redelivered()                                  { r.n.Add(1) }
func (r *redeliveryCounter) Completed(activation.Path, int, time.Duration) {}
