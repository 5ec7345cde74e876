package activation_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/activation/activationtest"
	"github.com/seuss-go/seuss/runtimes/process"
	"github.com/seuss-go/seuss/store/bbolt"
)

// rig is an Invoker over the real bbolt store and the real process executor, with
// acks recorded instead of produced to Kafka (package kafka's tests do that).
type rig struct {
	t     *testing.T
	store *bbolt.Store
	flaky *activationtest.FlakyStore
	acks  *activationtest.AckRecorder
	inv   *activation.Invoker
	obs   *countingObserver
}

type countingObserver struct {
	malformed, redelivered, completed atomic.Int64
}

func (o *countingObserver) Malformed(error) { o.malformed.Add(1) }
func (o *countingObserver) Redelivered()    { o.redelivered.Add(1) }
func (o *countingObserver) Completed(activation.Path, int, time.Duration) {
	o.completed.Add(1)
}

func newRig(t *testing.T) *rig {
	t.Helper()
	st, err := bbolt.Open(filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ex, err := process.New(process.Config{TempDir: t.TempDir(), MemoryBudgetMB: 2048})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ex.Close() })
	r := &rig{t: t, store: st, flaky: activationtest.NewFlakyStore(st), acks: &activationtest.AckRecorder{MaxBytes: 1054644}, obs: &countingObserver{}}
	r.inv, err = activation.NewInvoker(activation.Config{
		InstanceID: 0, UserMemoryMB: 2048, Store: r.flaky, Executor: ex, Acks: r.acks, Observer: r.obs,
		RecordRetry: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// action stores an action and returns its revision.
func (r *rig) action(name, kind, code string, limits *activation.ActionLimits, annotations ...activation.KeyValue) string {
	r.t.Helper()
	a := &activation.WhiskAction{Namespace: "guest", Name: name, Exec: activation.Exec{Kind: kind}, Version: "0.0.1",
		Limits: activation.DefaultActionLimits(), Parameters: []activation.KeyValue{}, Annotations: annotations}
	if limits != nil {
		a.Limits = *limits
	}
	if got, err := r.store.GetAction(context.Background(), "guest/"+name, ""); err == nil {
		a.Rev = got.Rev
	}
	rev, err := r.store.PutAction(context.Background(), a, []byte(code))
	if err != nil {
		r.t.Fatal(err)
	}
	return rev
}

func (r *rig) run(m *activation.ActivationMessage) []activationtest.SentAck {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.inv.Handle(ctx, activationtest.Encode(m)); err != nil {
		r.t.Fatal(err)
	}
	return r.acks.Acks()
}

func (r *rig) record(m *activation.ActivationMessage) *activation.WhiskActivation {
	r.t.Helper()
	rec, err := r.store.GetActivation(context.Background(), "guest", m.ActivationID)
	if err != nil {
		r.t.Fatalf("record of %s: %v", m.ActivationID, err)
	}
	return rec
}

func kinds(acks []activationtest.SentAck) string {
	var k []string
	for _, a := range acks {
		k = append(k, a.Kind)
	}
	return strings.Join(k, ",")
}

func ackActivation(t *testing.T, a activationtest.SentAck) *activation.WhiskActivation {
	t.Helper()
	var m struct {
		Response json.RawMessage `json:"response"`
	}
	if err := json.Unmarshal(a.JSON, &m); err != nil {
		t.Fatal(err)
	}
	var w activation.WhiskActivation
	if err := json.Unmarshal(m.Response, &w); err != nil {
		t.Fatalf("ack response is not an activation: %s", m.Response)
	}
	return &w
}

func resultString(t *testing.T, r activation.ActivationResponse) string {
	t.Helper()
	return string(r.Result)
}

func ann(rec *activation.WhiskActivation, key string) string { return string(rec.Annotation(key)) }

const helloJS = `function main(params) { console.log("hello " + params.name); return {payload: "Hello, " + params.name + "!"} }`

func TestBlockingHelloThenHot(t *testing.T) {
	r := newRig(t)
	rev := r.action("hello", "nodejs:20", helloJS, nil)
	m := activationtest.Message("guest", "hello", rev, true, map[string]any{"name": "World"})
	acks := r.run(m)
	if kinds(acks) != "result,completion" {
		t.Fatalf("acks %s", kinds(acks))
	}
	res := ackActivation(t, acks[0])
	if res.Response.StatusCode != 0 || string(res.Response.Result) != `{"payload":"Hello, World!"}` || len(res.Logs) != 0 {
		t.Fatalf("result ack %+v", res)
	}
	if !strings.Contains(string(acks[1].JSON), `"activationId":"`+m.ActivationID+`"`) || !strings.Contains(string(acks[1].JSON), `"isSystemError":false`) {
		t.Fatalf("completion %s", acks[1].JSON)
	}
	rec := r.record(m)
	if len(rec.Logs) != 1 || !strings.HasSuffix(rec.Logs[0], " stdout: hello World") || len(strings.SplitN(rec.Logs[0], " ", 2)[0]) > 30 {
		t.Fatalf("logs %q", rec.Logs)
	}
	if ann(rec, "path") != `"guest/hello"` || ann(rec, "kind") != `"nodejs:20"` || ann(rec, "seuss.path") != `"B"` ||
		ann(rec, "initTime") == "" || ann(rec, "timeout") != "false" || ann(rec, "waitTime") == "" ||
		ann(rec, "limits") != `{"timeout":60000,"memory":256,"logs":10,"concurrency":1}` {
		t.Fatalf("annotations %s", activationtest.Encode(rec.Annotations))
	}
	if *rec.Duration != rec.End-rec.Start || rec.Namespace != "guest" || rec.Subject != "guest" || rec.Version != "0.0.1" {
		t.Fatalf("record %+v", rec)
	}

	m2 := activationtest.Message("guest", "hello", rev, true, map[string]any{"name": "again"})
	acks = r.run(m2)
	rec2 := r.record(m2)
	if kinds(acks) != "result,completion" || ann(rec2, "seuss.path") != `"H"` || ann(rec2, "initTime") != "" {
		t.Fatalf("second run: acks %s annotations %s", kinds(acks), activationtest.Encode(rec2.Annotations))
	}
}

func TestNonBlockingAndHealthAction(t *testing.T) {
	r := newRig(t)
	// The health test action: plain-string code, no annotations (so api_key is
	// provided), revision null.
	r.action("invokerHealthTestAction0", "nodejs:20", `function main(params) { return params; }`, &activation.ActionLimits{Timeout: 60000, Memory: 128, Logs: 10, Concurrency: 1})
	m := activationtest.Message("guest", "invokerHealthTestAction0", "", false, nil)
	m.Content = nil
	m.TransID = activation.NewTransactionID("sid_invokerHealth", 1716199990123)
	acks := r.run(m)
	if kinds(acks) != "completion" {
		t.Fatalf("acks %s", kinds(acks))
	}
	if !strings.HasPrefix(string(acks[0].JSON), `{"transid":["sid_invokerHealth",1716199990123],"activationId":"`+m.ActivationID+`","isSystemError":false,"instance":{"instance":0,"userMemory":"2147483648 B","instanceType":"invoker","tags":[],"dedicatedNamespaces":[]}}`) {
		t.Fatalf("completion %s", acks[0].JSON)
	}
	if rec := r.record(m); rec.Response.StatusCode != 0 || string(rec.Response.Result) != `{}` {
		t.Fatalf("record %+v", rec.Response)
	}
}

func TestEnvironmentAndInitArgs(t *testing.T) {
	r := newRig(t)
	code := `function main(p) { return {p: p, key: process.env.__OW_API_KEY || null, ns: process.env.__OW_NAMESPACE, name: process.env.__OW_ACTION_NAME, secret: process.env.secret || null, dl: typeof process.env.__OW_DEADLINE} }`
	rev := r.action("env", "nodejs:20", code, nil, activation.KeyValue{Key: "provide-api-key", Value: json.RawMessage("false")})
	m := activationtest.Message("guest", "env", rev, true, map[string]any{"a": 1, "secret": "s3"})
	m.InitArgs = []string{"secret"}
	acks := r.run(m)
	got := ackActivation(t, acks[0]).Response.Result
	var res map[string]any
	_ = json.Unmarshal(got, &res)
	if res["key"] != nil || res["ns"] != "guest" || res["name"] != "/guest/env" || res["secret"] != "s3" || res["dl"] != "string" {
		t.Fatalf("result %s", got)
	}
	if p := res["p"].(map[string]any); p["a"] != float64(1) || p["secret"] != nil {
		t.Fatalf("params %v", p)
	}
}

func TestNotFoundAndRevisionMismatch(t *testing.T) {
	r := newRig(t)
	m := activationtest.Message("guest", "nope", "1-abc", true, nil)
	acks := r.run(m)
	if kinds(acks) != "combined" {
		t.Fatalf("acks %s", kinds(acks))
	}
	res := ackActivation(t, acks[0])
	if res.Response.StatusCode != 1 || string(res.Response.Result) != `{"error":"Action could not be found or may have been deleted."}` ||
		ann(res, "kind") != `"unknown"` || *res.Duration != 0 {
		t.Fatalf("fallback %s", activationtest.Encode(res))
	}
	// Non-blocking: the Combined ack is shrunk to the activation id.
	m = activationtest.Message("guest", "nope", "", false, nil)
	acks = r.run(m)
	if kinds(acks) != "combined" || !strings.Contains(string(acks[0].JSON), `"response":"`+m.ActivationID+`"`) {
		t.Fatalf("acks %s %s", kinds(acks), acks[0].JSON)
	}
	r.record(m)

	// A stale revision is retried as latest.
	r.action("hello", "nodejs:20", helloJS, nil)
	m = activationtest.Message("guest", "hello", "1-stale", true, map[string]any{"name": "rev"})
	acks = r.run(m)
	if res := ackActivation(t, acks[0]); res.Response.StatusCode != 0 {
		t.Fatalf("mismatch: %s", acks[0].JSON)
	}
}

func TestDeveloperAndApplicationErrors(t *testing.T) {
	r := newRig(t)
	lim := &activation.ActionLimits{Timeout: 500, Memory: 256, Logs: 10, Concurrency: 1}
	cases := []struct {
		name, kind, code string
		status           int
		result           string
	}{
		{"apperr", "nodejs:20", `function main() { return {error: "bad"} }`, 1, `{"error":"bad"}`},
		{"initfail", "python:3.11", "def main(args:\n  return {}\n", 2, ""},
		{"timeout", "nodejs:20", `function main() { while (true) {} }`, 2, `{"error":"The action exceeded its time limits of 500 milliseconds."}`},
		{"array", "python:3.11", "def main(args):\n  return [1, 2]\n", 0, `[1,2]`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rev := r.action(c.name, c.kind, c.code, lim)
			m := activationtest.Message("guest", c.name, rev, true, nil)
			acks := r.run(m)
			if kinds(acks) != "result,completion" {
				t.Fatalf("acks %s", kinds(acks))
			}
			rec := r.record(m)
			if rec.Response.StatusCode != c.status || (c.result != "" && string(rec.Response.Result) != c.result) {
				t.Fatalf("response %d %s", rec.Response.StatusCode, rec.Response.Result)
			}
			if c.status == 2 && !strings.Contains(rec.Logs[len(rec.Logs)-1], "stderr: The action did not initialize or run as expected. Log data might be missing.") {
				t.Fatalf("logs %q", rec.Logs)
			}
			if c.name == "timeout" && ann(rec, "timeout") != "true" {
				t.Fatalf("timeout annotation %s", ann(rec, "timeout"))
			}
		})
	}
}

func TestOversizeResultShrinksAck(t *testing.T) {
	r := newRig(t)
	// Quotes double when the body is quoted into the error message, so the ack
	// exceeds Kafka's limit and is resent shrunk.
	rev := r.action("big", "nodejs:20", `function main() { return {s: '"'.repeat(1100000)} }`, nil)
	m := activationtest.Message("guest", "big", rev, true, nil)
	acks := r.run(m)
	if kinds(acks) != "result,completion" || !strings.Contains(string(acks[0].JSON), `"response":"`+m.ActivationID+`"`) {
		t.Fatalf("acks %s %.200s", kinds(acks), acks[0].JSON)
	}
	rec := r.record(m)
	var e struct{ Error string }
	_ = json.Unmarshal(rec.Response.Result, &e)
	if rec.Response.StatusCode != 1 || !strings.HasPrefix(e.Error, "The action produced a response that exceeded the allowed length: 2200008 > 1048576 bytes. The truncated response was: ") {
		t.Fatalf("response %d %.200s", rec.Response.StatusCode, e.Error)
	}
}

func TestLimitsAndMemory(t *testing.T) {
	r := newRig(t)
	rev := r.action("huge", "nodejs:20", helloJS, &activation.ActionLimits{Timeout: 1000, Memory: 4096, Logs: 10, Concurrency: 1})
	m := activationtest.Message("guest", "huge", rev, true, nil)
	acks := r.run(m)
	if kinds(acks) != "combined" {
		t.Fatalf("acks %s", kinds(acks))
	}
	if rec := r.record(m); rec.Response.StatusCode != 1 || !strings.Contains(string(rec.Response.Result), "Memory 4096 MB exceeds allowed threshold of 512 MB.") {
		t.Fatalf("record %s", rec.Response.Result)
	}

	// An action that allocates past its memory limit is a developer error.
	rev = r.action("hog", "python:3.11", "def main(args):\n  x = bytearray(400 * 1024 * 1024)\n  return {'n': len(x)}\n",
		&activation.ActionLimits{Timeout: 20000, Memory: 128, Logs: 10, Concurrency: 1})
	m = activationtest.Message("guest", "hog", rev, true, nil)
	r.run(m)
	if rec := r.record(m); rec.Response.StatusCode != 2 || string(rec.Response.Result) != `{"error":"The action exceeded its memory limit of 128 MB."}` {
		t.Fatalf("hog: %d %s", rec.Response.StatusCode, rec.Response.Result)
	}
}

func TestRedeliveryAckedFromRecord(t *testing.T) {
	r := newRig(t)
	rev := r.action("count", "nodejs:20", `let n = 0; function main() { n++; return {n: n} }`, nil)
	m := activationtest.Message("guest", "count", rev, true, nil)
	first := r.run(m)
	again := r.run(m)
	if kinds(first) != "result,completion" || kinds(again) != "result,completion" || r.obs.redelivered.Load() != 1 {
		t.Fatalf("acks %s / %s, redelivered %d", kinds(first), kinds(again), r.obs.redelivered.Load())
	}
	if string(ackActivation(t, again[0]).Response.Result) != `{"n":1}` {
		t.Fatalf("rerun: %s", again[0].JSON)
	}
	// storeActivations=false: no record.
	m = activationtest.Message("guest", "count", rev, false, nil)
	m.User.Limits = json.RawMessage(`{"storeActivations":false}`)
	r.run(m)
	if _, err := r.store.GetActivation(context.Background(), "guest", m.ActivationID); !errors.Is(err, activation.ErrNotFound) {
		t.Fatalf("record written despite storeActivations=false: %v", err)
	}
}

// HandleFirst (a message no consumer was handed before) runs without looking for a
// record, unless its activation id was handled here before (a resent message): then it
// is acked from the record, as Handle does.
func TestHandleFirstSkipsTheRecordLook(t *testing.T) {
	r := newRig(t)
	rev := r.action("count", "nodejs:20", `let n = 0; function main() { n++; return {n: n} }`, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	handleFirst := func(m *activation.ActivationMessage) []activationtest.SentAck {
		t.Helper()
		if err := r.inv.HandleFirst(ctx, activationtest.Encode(m)); err != nil {
			t.Fatal(err)
		}
		return r.acks.Acks()
	}
	m := activationtest.Message("guest", "count", rev, true, nil)
	if got := handleFirst(m); kinds(got) != "result,completion" || string(ackActivation(t, got[0]).Response.Result) != `{"n":1}` {
		t.Fatalf("first: %s", kinds(got))
	}
	// The same id again, as first or not: acked from the record, not run.
	for i, again := range [][]activationtest.SentAck{handleFirst(m), r.run(m)} {
		if kinds(again) != "result,completion" || string(ackActivation(t, again[0]).Response.Result) != `{"n":1}` {
			t.Fatalf("again %d: %s %s", i, kinds(again), again[0].JSON)
		}
	}
	if r.obs.redelivered.Load() != 2 {
		t.Fatalf("redelivered %d, want 2", r.obs.redelivered.Load())
	}
	// A record this invoker did not write (the partition's previous owner's) is not
	// looked for when the message is first: that is what HandleFirst's caller rules out.
	m2 := activationtest.Message("guest", "count", rev, true, nil)
	if err := r.store.PutActivation(ctx, &activation.WhiskActivation{Namespace: "guest", Name: "count", Subject: "guest",
		ActivationID: m2.ActivationID, Response: activation.Response(0, json.RawMessage(`{"n":0}`), nil)}); err != nil {
		t.Fatal(err)
	}
	if got := handleFirst(m2); string(ackActivation(t, got[0]).Response.Result) != `{"n":2}` || r.obs.redelivered.Load() != 2 {
		t.Fatalf("first with a foreign record: %s, redelivered %d", got[0].JSON, r.obs.redelivered.Load())
	}
}

func TestMalformedAndStoreDown(t *testing.T) {
	r := newRig(t)
	if err := r.inv.Handle(context.Background(), []byte(`{"not":"a message"}`)); err != nil || r.obs.malformed.Load() != 1 || len(r.acks.Acks()) != 0 {
		t.Fatalf("malformed: err %v, counted %d", err, r.obs.malformed.Load())
	}
	rev := r.action("hello", "nodejs:20", helloJS, nil)
	r.flaky.SetDown(true)
	m := activationtest.Message("guest", "hello", rev, true, map[string]any{"name": "x"})
	acks := r.run(m)
	if kinds(acks) != "combined" || !strings.Contains(string(acks[0].JSON), `"isSystemError":true`) ||
		!strings.Contains(string(acks[0].JSON), `"result":{"error":"Action could not be fetched."}`) {
		t.Fatalf("acks %s %s", kinds(acks), acks)
	}
	r.flaky.SetDown(false)
	m = activationtest.Message("guest", "hello", rev, true, map[string]any{"name": "x"})
	if acks := r.run(m); kinds(acks) != "result,completion" {
		t.Fatalf("after recovery: %s", kinds(acks))
	}
}

// TestNoLogsCombined: an action with a log limit of 0 gets one Combined ack when
// blocking and a Completion when not (§3.4, logs=0 rows).
func TestNoLogsCombined(t *testing.T) {
	r := newRig(t)
	rev := r.action("quiet", "nodejs:20", helloJS, &activation.ActionLimits{Timeout: 60000, Memory: 256, Logs: 0, Concurrency: 1})
	m := activationtest.Message("guest", "quiet", rev, true, map[string]any{"name": "q"})
	acks := r.run(m)
	if kinds(acks) != "combined" || ackActivation(t, acks[0]).Response.StatusCode != 0 {
		t.Fatalf("blocking: %s", kinds(acks))
	}
	if rec := r.record(m); len(rec.Logs) != 0 {
		t.Fatalf("logs collected despite a 0 MB limit: %q", rec.Logs)
	}
	m = activationtest.Message("guest", "quiet", rev, false, map[string]any{"name": "q"})
	if acks := r.run(m); kinds(acks) != "completion" {
		t.Fatalf("non-blocking: %s", kinds(acks))
	}
}
