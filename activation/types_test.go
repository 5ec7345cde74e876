package activation

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func golden(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func compact(t *testing.T, b []byte) string {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatalf("compact: %v", err)
	}
	return buf.String()
}

// TestGoldenRoundTrip decodes each example of openwhisk-protocol.md and encodes it
// again: the bytes must be the same (field order and presence are spray-json's).
func TestGoldenRoundTrip(t *testing.T) {
	cases := []struct {
		file string
		v    func() any
	}{
		{"activation_message_blocking.json", func() any { return new(ActivationMessage) }},
		{"activation_message_health.json", func() any { return new(ActivationMessage) }},
		{"result_message.json", func() any { return new(ResultMessage) }},
		{"completion_message.json", func() any { return new(CompletionMessage) }},
		{"combined_shrunk.json", func() any { return new(CombinedCompletionAndResultMessage) }},
		{"ping.json", func() any { return new(PingMessage) }},
		{"instance_named.json", func() any { return new(InvokerInstanceID) }},
		{"event_message.json", func() any { return new(EventMessage) }},
		{"whisk_action.json", func() any { return new(WhiskAction) }},
		{"activation_record.json", func() any { return new(WhiskActivation) }},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			in := golden(t, c.file)
			v := c.v()
			if err := json.Unmarshal(in, v); err != nil {
				t.Fatal(err)
			}
			out, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := string(out), compact(t, in); got != want {
				t.Fatalf("round trip differs\n got %s\nwant %s", got, want)
			}
		})
	}
}

func TestResultMessageActivation(t *testing.T) {
	var m ResultMessage
	if err := json.Unmarshal(golden(t, "result_message.json"), &m); err != nil {
		t.Fatal(err)
	}
	var a WhiskActivation
	if err := json.Unmarshal(m.Response, &a); err != nil {
		t.Fatal(err)
	}
	if a.Response.StatusCode != 0 || *a.Duration != 62 || string(a.Annotation("path")) != `"guest/hello"` {
		t.Fatalf("activation %+v", a)
	}
	// Shrinking replaces the activation by its id, as MessagingActiveAck does.
	s, _ := json.Marshal(m.Shrink())
	if want := `{"transid":["Xw3VQmMKbZpbYU8LPaWRhTG6C2dTPFrQ",1716200000000],"response":"7f3d2a9c1b8e4f60a5d4c3b2a1908f7e"}`; string(s) != want {
		t.Fatalf("shrunk %s", s)
	}
}

func TestDecodeGolden(t *testing.T) {
	m, err := DecodeActivationMessage(golden(t, "activation_message_blocking.json"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Action.DocID() != "guest/hello" || *m.Revision != "2-5f1c52e4d5a4b9b2e8c7a1d0f3b6e9a4" || !m.Blocking ||
		m.TransID.ID() != "Xw3VQmMKbZpbYU8LPaWRhTG6C2dTPFrQ" || m.TransID.StartMillis() != 1716200000000 ||
		string(m.Content) != `{"name":"World"}` || !m.User.StoreActivations() {
		t.Fatalf("decoded %+v", m)
	}
	h, err := DecodeActivationMessage(golden(t, "activation_message_health.json"))
	if err != nil {
		t.Fatal(err)
	}
	if h.Revision != nil || h.Content != nil || h.Blocking {
		t.Fatalf("health %+v", h)
	}
}

// TestTransIDVerbatim: acks carry the transid exactly as received, whatever its shape
// (extra logging flag, parent transid), since the controller compares the whole value.
func TestTransIDVerbatim(t *testing.T) {
	for _, tid := range []string{
		`["sid_invokerHealth",1716199990123]`,
		`["abc",1716199990123,true]`,
		`["abc",1716199990123,true,["parent",1716199990000]]`,
		`["abc",1716199990123,["parent",1716199990000]]`,
	} {
		msg := strings.Replace(string(golden(t, "activation_message_health.json")), `["sid_invokerHealth",1716199990123]`, tid, 1)
		m, err := DecodeActivationMessage([]byte(msg))
		if err != nil {
			t.Fatalf("%s: %v", tid, err)
		}
		c := &CompletionMessage{TransID: m.TransID, ActivationID: m.ActivationID, Instance: NewInvokerInstanceID(0, 1024)}
		b, _ := json.Marshal(c)
		if !strings.HasPrefix(string(b), `{"transid":`+tid+`,`) {
			t.Fatalf("ack %s does not echo %s", b, tid)
		}
	}
}

func TestUnknownFieldsIgnored(t *testing.T) {
	msg := strings.Replace(string(golden(t, "activation_message_blocking.json")), `"blocking":true`,
		`"blocking":true,"waitForContent":true,"someFutureField":{"a":[1,2]}`, 1)
	if _, err := DecodeActivationMessage([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	var c CompletionMessage
	if err := json.Unmarshal([]byte(`{"transid":["a",1],"activationId":"x","isSystemError":true,"instance":{"instance":3,"userMemory":"1 B","instanceType":"invoker","tags":[],"dedicatedNamespaces":[],"new":1},"extra":2}`), &c); err != nil {
		t.Fatal(err)
	}
}

func TestStringActionName(t *testing.T) {
	msg := strings.Replace(string(golden(t, "activation_message_blocking.json")),
		`{"path":"guest","name":"hello","version":"0.0.1"}`, `"guest/pkg/hello"`, 1)
	m, err := DecodeActivationMessage([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	if m.Action.Path != "guest/pkg" || m.Action.Name != "hello" {
		t.Fatalf("%+v", m.Action)
	}
}

func TestDecodeMalformed(t *testing.T) {
	good := string(golden(t, "activation_message_blocking.json"))
	cases := map[string]string{
		"empty":          ``,
		"not json":       `hello`,
		"array":          `[1,2]`,
		"null":           `null`,
		"trailing":       good + `{}`,
		"no transid":     strings.Replace(good, `"transid":["Xw3VQmMKbZpbYU8LPaWRhTG6C2dTPFrQ",1716200000000],`, ``, 1),
		"short transid":  strings.Replace(good, `["Xw3VQmMKbZpbYU8LPaWRhTG6C2dTPFrQ",1716200000000]`, `["x"]`, 1),
		"bad id":         strings.Replace(good, `7f3d2a9c1b8e4f60a5d4c3b2a1908f7e`, `7F3D2A9C1B8E4F60A5D4C3B2A1908F7E`, 1),
		"short id":       strings.Replace(good, `7f3d2a9c1b8e4f60a5d4c3b2a1908f7e`, `7f3d`, 1),
		"no action":      strings.Replace(good, `"name":"hello",`, ``, 1),
		"content str":    strings.Replace(good, `{"name":"World"}`, `"World"`, 1),
		"blocking str":   strings.Replace(good, `"blocking":true`, `"blocking":"yes"`, 1),
		"no controller":  strings.Replace(good, `"asString":"0",`, ``, 1),
		"bad controller": strings.Replace(good, `"asString":"0"`, `"asString":"0/../x"`, 1),
		"invalid utf8":   strings.Replace(good, `World`, "W\xffrld", 1),
		"bare name":      strings.Replace(good, `{"path":"guest","name":"hello","version":"0.0.1"}`, `"hello"`, 1),
	}
	for name, in := range cases {
		if _, err := DecodeActivationMessage([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

func FuzzDecodeActivationMessage(f *testing.F) {
	for _, n := range []string{"activation_message_blocking.json", "activation_message_health.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", n))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"transid":["a",1,true,["b",2]],"action":"a/b","activationId":"00000000000000000000000000000000"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeActivationMessage(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		// What was accepted must be echoable in acks and re-encodable.
		if _, err := json.Marshal(m); err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if _, err := json.Marshal(&CompletionMessage{TransID: m.TransID, ActivationID: m.ActivationID}); err != nil {
			t.Fatalf("ack: %v", err)
		}
	})
}

// StoreActivations skips decoding limits that cannot name storeActivations; the
// answer must be the decoder's in every case.
func TestStoreActivations(t *testing.T) {
	cases := map[string]bool{
		``:                                  true,
		`{}`:                                true,
		`{"concurrentInvocations":30}`:      true,
		`{"storeActivations":false}`:        false,
		`{"storeActivations":true}`:         true,
		`{"storeActivations":null}`:         true,
		`{"StoreActivations":false}`:        false, // encoding/json ignores case
		`{"storeactivations":false}`:        false,
		`{"\u0073toreActivations":false}`:   false, // an escape in the key
		"{\"\u017ftoreActivations\":false}": false, // ſ folds to s
		`{"x":"storeActivations","storeActivations":false}`: false,
		`{"x":"storeActivations"}`:                          true,
		`{"storeActivation":false}`:                         true,
		`{"storeActivations":false`:                         true, // not JSON: the default
	}
	for in, want := range cases {
		if got := (Identity{Limits: json.RawMessage(in)}).StoreActivations(); got != want {
			t.Errorf("%s: StoreActivations = %v, want %v", in, got, want)
		}
	}
}

// The plain transid form is read without the general path, with the same result.
func TestTransactionIDPlain(t *testing.T) {
	for _, in := range []string{
		`["abc",1716200000000]`,
		`["abc",1716200000000,false]`,
		`["abc",-5,{"x":1}]`,
		`["",0]`,
		`["abc", 1716200000000]`,
		`["a\"bc",17]`,
		`["abc",1.5e3]`,
		`["abc",99999999999999999999]`,
		`["abc",17.0]`,
		"[\"caf\u00e9\",17]",
	} {
		var fast, slow TransactionID
		if err := json.Unmarshal([]byte(in), &fast); err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if err := slow.UnmarshalJSON([]byte(in)); err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		// slow went through unmarshalPlain too when it could: decode the general way.
		var parts []json.RawMessage
		_ = json.Unmarshal([]byte(in), &parts)
		var id string
		_ = json.Unmarshal(parts[0], &id)
		if fast.ID() != id || fast.ID() != slow.ID() || fast.StartMillis() != slow.StartMillis() {
			t.Errorf("%s: id %q start %d, want %q %d", in, fast.ID(), fast.StartMillis(), id, slow.StartMillis())
		}
		raw, _ := fast.MarshalJSON()
		var want bytes.Buffer
		_ = json.Compact(&want, []byte(in))
		if string(raw) != want.String() {
			t.Errorf("%s: raw %s, want %s", in, raw, want.String())
		}
	}
	var plain TransactionID
	if !plain.unmarshalPlain([]byte(`["abc",1716200000000,false]`)) || plain.StartMillis() != 1716200000000 {
		t.Fatalf("the plain form took the general path: %+v", plain)
	}
	for _, in := range []string{`["abc", 1]`, `["a\"bc",1]`, `["abc",1.5]`, `["abc",99999999999999999999]`, `[1,2]`} {
		if plain.unmarshalPlain([]byte(in)) {
			t.Errorf("%s: read as plain", in)
		}
	}
}

// EncodeAck writes what Marshal writes, for acks the invoker makes (record copied in)
// and for any other ack (Marshal itself).
func TestEncodeAck(t *testing.T) {
	var tid TransactionID
	if err := json.Unmarshal([]byte(`["Xw3VQmMKbZpbYU8LPaWRhTG6C2dTPFrQ",1716200000000,false]`), &tid); err != nil {
		t.Fatal(err)
	}
	dur := int64(12)
	rec := &WhiskActivation{Namespace: "guest", Name: "hello", Subject: "guest", ActivationID: "7f3d2a9c1b8e4f60a5d4c3b2a1908f7e",
		Start: 1, End: 13, Duration: &dur, Version: "0.0.1", Logs: []string{"a <b> & \u2028 é"},
		Response:    Response(StatusSuccess, json.RawMessage(`{"html":"<p>&amp;</p>","u":"\u2028","n":[1, 2]}`), nil),
		Annotations: []KeyValue{kv("path", jsonString("guest/hello"))}}
	inst := NewInvokerInstanceID(0, 2048)
	for _, a := range []Ack{
		&ResultMessage{TransID: tid, Response: activationJSON(rec, false), compact: true},
		&CombinedCompletionAndResultMessage{TransID: tid, Response: activationJSON(rec, true), IsSystemError: true, Instance: inst, compact: true},
		&CombinedCompletionAndResultMessage{TransID: tid, Response: activationJSON(rec, true), Instance: inst, compact: true},
		(&ResultMessage{TransID: tid, Response: activationJSON(rec, false), compact: true}).Shrink(),
		(&CombinedCompletionAndResultMessage{TransID: tid, Response: activationJSON(rec, true), Instance: inst, compact: true}).Shrink(),
		&ResultMessage{TransID: tid, Response: json.RawMessage(`{ "a" : 1 }`)},
		&ResultMessage{TransID: tid, compact: true},
		&CompletionMessage{TransID: tid, ActivationID: rec.ActivationID, Instance: inst},
	} {
		want, err := Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		got, err := EncodeAck(a)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("%s ack:\n got %s\nwant %s", AckKind(a), got, want)
		}
	}
}
