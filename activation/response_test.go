package activation

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestOutcomeResponse(t *testing.T) {
	l := Limits{Timeout: 60 * time.Second, MemoryMB: 256}
	rl := ResponseLimits{MaxPayload: 50, Truncation: 10}
	t0 := time.Unix(1716200000, 0)
	run := func(status int, body string) *Outcome {
		return &Outcome{RunStart: t0, RunEnd: t0, RunStatus: status, RunResponse: json.RawMessage(body)}
	}
	cases := []struct {
		name   string
		o      *Outcome
		status int
		result string
	}{
		{"object", run(200, `{"a": 1}`), 0, `{"a":1}`},
		{"array", run(200, `[1]`), 0, `[1]`},
		{"error field", run(200, `{"error":{"x":1}}`), 1, `{"error":{"x":1}}`},
		{"502 error", run(502, `{"error":"An error has occurred: boom"}`), 2, `{"error":"An error has occurred: boom"}`},
		{"502 no error", run(502, `{"a":1}`), 2, `{"error":"The action did not produce a valid JSON or JSON Array response: {\"a\":1}"}`},
		{"not json", run(200, `hello`), 2, `{"error":"The action did not produce a valid JSON or JSON Array response: hello"}`},
		{"empty", run(200, ``), 2, `{"error":"The action did not produce a valid JSON or JSON Array response."}`},
		{"string", run(200, `"s"`), 2, `{"error":"The action did not produce a valid JSON or JSON Array response: \"s\""}`},
		{"too large", run(200, `{"s":"`+strings.Repeat("0123", 13)+`"}`), 1, `{"error":"The action produced a response that exceeded the allowed length: 60 > 50 bytes. The truncated response was: {\"s\":\"0123"}`},
		{"run timeout", &Outcome{Err: fmt.Errorf("x: %w", ErrRunTimeout)}, 2, `{"error":"The action exceeded its time limits of 60000 milliseconds."}`},
		{"init timeout", &Outcome{InitStart: t0, Err: ErrInitTimeout}, 2, `{"error":"The action exceeded its time limits of 60000 milliseconds during initialization."}`},
		{"init exited", &Outcome{InitStart: t0, Err: ErrInitExited}, 2, `{"error":"The action did not initialize and exited unexpectedly."}`},
		{"run exited", &Outcome{Err: ErrRunExited}, 2, `{"error":"The action did not produce a valid response and exited unexpectedly."}`},
		{"memory", &Outcome{Err: ErrMemoryLimit}, 2, `{"error":"The action exceeded its memory limit of 256 MB."}`},
		{"init 502", &Outcome{InitStart: t0, InitStatus: 502, InitResponse: json.RawMessage(`{"error":"Initialization has failed due to: x"}`)}, 2, `{"error":"Initialization has failed due to: x"}`},
		{"init 500 text", &Outcome{InitStart: t0, InitStatus: 500, InitResponse: json.RawMessage(`oops`)}, 2, `{"error":"The action failed during initialization: oops"}`},
	}
	for _, c := range cases {
		r := OutcomeResponse(c.o, l, rl)
		if r.StatusCode != c.status || string(r.Result) != c.result {
			t.Errorf("%s: got %d %s, want %d %s", c.name, r.StatusCode, r.Result, c.status, c.result)
		}
	}
}

func TestFormatLogs(t *testing.T) {
	tm := time.Date(2024, 5, 20, 10, 13, 20, 671233049, time.UTC)
	if got := FormatLogLine(tm, "stdout", "hello World\n"); got != "2024-05-20T10:13:20.671233049Z stdout: hello World" {
		t.Fatalf("%q", got)
	}
	// Trailing zeros of the nanoseconds are trimmed, as Docker does; the time is padded to 30 columns.
	if got := FormatLogLine(tm.Truncate(time.Millisecond), "stderr", "x"); got != "2024-05-20T10:13:20.671Z       stderr: x" {
		t.Fatalf("%q", got)
	}
	o := &Outcome{Logs: []LogLine{{tm, "stdout", "a"}}, LogsTruncated: true}
	logs := FormatLogs(o, Limits{LogBytes: 10 << 20}, StatusDeveloperError, tm)
	if len(logs) != 3 || !strings.HasSuffix(logs[1], "stderr: Logs were truncated because the total bytes size exceeds the limit of 10485760 bytes.") ||
		!strings.HasSuffix(logs[2], "stderr: The action did not initialize or run as expected. Log data might be missing.") {
		t.Fatalf("%q", logs)
	}
}

func TestResolveCodeAndMessages(t *testing.T) {
	src := "function main(params) { return {payload: 'Hello, ' + params.name} }"
	a := &WhiskAction{Namespace: "guest", Name: "hello", Exec: Exec{Kind: "nodejs:20",
		Code: json.RawMessage(`{"attachmentName":"mem:` + base64.URLEncoding.EncodeToString([]byte(src)) + `","attachmentType":"text/plain; charset=UTF-8"}`)},
		Limits: DefaultActionLimits(), Version: "0.0.1"}
	code, err := ResolveCode(context.Background(), nil, a)
	if err != nil || code != src {
		t.Fatalf("mem: %q %v", code, err)
	}
	zip := []byte("PK\x03\x04\xff\xfe")
	a.Exec.Binary = true
	a.Exec.Code = json.RawMessage(`{"attachmentName":"mem:` + base64.URLEncoding.EncodeToString(zip) + `"}`)
	if code, err := ResolveCode(context.Background(), nil, a); err != nil || code != base64.StdEncoding.EncodeToString(zip) {
		t.Fatalf("binary: %q %v", code, err)
	}
	a.Exec.Binary = false
	a.Exec.Code = json.RawMessage(`"function main() {}"`)
	if code, _ := ResolveCode(context.Background(), nil, a); code != "function main() {}" {
		t.Fatalf("plain: %q", code)
	}

	var m ActivationMessage
	if err := json.Unmarshal(golden(t, "activation_message_blocking.json"), &m); err != nil {
		t.Fatal(err)
	}
	m.Content = json.RawMessage(`{"name":"World","greeting":{"a":1},"n":null}`)
	m.InitArgs = []string{"greeting", "n"}
	now := time.UnixMilli(1716200000640)
	init, run := BuildMessages(&m, a, "CODE", now)
	ib, _ := json.Marshal(init)
	want := `{"name":"hello","main":"main","code":"CODE","binary":false,"env":{"__OW_ACTION_NAME":"/guest/hello","__OW_ACTION_VERSION":"0.0.1","__OW_ACTIVATION_ID":"7f3d2a9c1b8e4f60a5d4c3b2a1908f7e","__OW_API_KEY":"23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP","__OW_DEADLINE":"1716200060640","__OW_NAMESPACE":"guest","__OW_TRANSACTION_ID":"Xw3VQmMKbZpbYU8LPaWRhTG6C2dTPFrQ","greeting":"{\"a\":1}","n":""}}`
	if string(ib) != want {
		t.Fatalf("init\n got %s\nwant %s", ib, want)
	}
	rb, _ := json.Marshal(run)
	want = `{"value":{"name":"World"},"namespace":"guest","action_name":"/guest/hello","action_version":"0.0.1","activation_id":"7f3d2a9c1b8e4f60a5d4c3b2a1908f7e","transaction_id":"Xw3VQmMKbZpbYU8LPaWRhTG6C2dTPFrQ","deadline":"1716200060640","api_key":"23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP"}`
	if string(rb) != want {
		t.Fatalf("run\n got %s\nwant %s", rb, want)
	}
	a.Annotations = []KeyValue{{Key: "provide-api-key", Value: json.RawMessage("false")}}
	init, run = BuildMessages(&m, a, "CODE", now)
	if run.APIKey != "" || init.Env["__OW_API_KEY"] != "" {
		t.Fatal("api key given despite provide-api-key false")
	}
}
