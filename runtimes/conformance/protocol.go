package conformance

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/seuss-go/seuss/runtimes"
)

// Conn is one fresh launcher instance spoken to directly, below the Executor: one
// request line in, one answer line out (runtimes/doc.go). Close ends the instance.
type Conn interface {
	Request(ctx context.Context, line []byte) ([]byte, error)
	Close() error
}

// Protocol checks what the Executor interface cannot express: a second init is
// refused, a run before init is refused, and the warm-up hook leaves the launcher
// pristine for the real init. start must return a fresh instance of kind.
func Protocol(t *testing.T, kind runtimes.Kind, start func() (Conn, error)) {
	node := kind.Language() == "nodejs"
	code := map[bool]string{
		true:  "let calls = 0; function main(args) { calls++; return { warm: process.env.WARM_ONLY === undefined ? null : process.env.WARM_ONLY, calls: calls, id: process.env.__OW_ACTIVATION_ID } }",
		false: "import os\ncalls = 0\ndef main(args):\n    global calls\n    calls += 1\n    return {'warm': os.environ.get('WARM_ONLY'), 'calls': calls, 'id': os.environ.get('__OW_ACTIVATION_ID')}\n",
	}[node]
	initLine := func(warmup bool, env map[string]string) []byte {
		m := map[string]any{"value": map[string]any{"name": "p", "main": "main", "code": code, "binary": false, "env": env}}
		if warmup {
			m["warmup"] = true
		}
		b, _ := json.Marshal(m)
		return append(b, '\n')
	}
	runLine := func(id string) []byte {
		return []byte(`{"value":{},"namespace":"guest","action_name":"/guest/p","action_version":"0.0.1","activation_id":"` + id + `","transaction_id":"t","deadline":"1"}` + "\n")
	}
	ask := func(t *testing.T, c Conn, line []byte, wantStatus int, want string) {
		t.Helper()
		ans, err := c.Request(context.Background(), line)
		if err != nil {
			t.Fatalf("request %.60q: %v", line, err)
		}
		st, body, err := runtimes.DecodeReply(ans)
		if err != nil || st != wantStatus {
			t.Fatalf("request %.60q: answer %q (%v), want status %d", line, ans, err, wantStatus)
		}
		if want != "" && !jsonSame(body, want) {
			t.Fatalf("request %.60q: answer %s, want %s", line, body, want)
		}
	}
	with := func(t *testing.T, f func(t *testing.T, c Conn)) {
		c, err := start()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		f(t, c)
	}
	t.Run("reinit_refused", func(t *testing.T) {
		with(t, func(t *testing.T, c Conn) {
			ask(t, c, initLine(false, nil), 200, kind.InitOK)
			ask(t, c, initLine(false, nil), 403, `{"error":"Cannot initialize the action more than once."}`)
			ask(t, c, runLine("r1"), 200, `{"warm":null,"calls":1,"id":"r1"}`)
			ask(t, c, initLine(false, nil), 403, `{"error":"Cannot initialize the action more than once."}`)
			ask(t, c, runLine("r2"), 200, `{"warm":null,"calls":2,"id":"r2"}`)
		})
	})
	t.Run("run_before_init", func(t *testing.T) {
		with(t, func(t *testing.T, c Conn) {
			if node {
				ask(t, c, runLine("r0"), 403, `{"error":"System not initialized."}`)
			} else {
				ask(t, c, runLine("r0"), 500, `{"error":"no action defined yet"}`)
			}
			ask(t, c, initLine(false, nil), 200, kind.InitOK)
		})
	})
	t.Run("warmup_then_real_init", func(t *testing.T) {
		with(t, func(t *testing.T, c Conn) {
			// A warm-up with its own environment and state, then the stock warm-up.
			ask(t, c, initLine(true, map[string]string{"WARM_ONLY": "yes"}), 200, kind.InitOK)
			ask(t, c, runLine("w1"), 200, `{"warm":"yes","calls":1,"id":"w1"}`)
			ask(t, c, runtimes.WarmupInit(kind), 200, kind.InitOK)
			ask(t, c, runtimes.WarmupRun, 200, "")
			// Pristine: the real init is accepted and sees nothing of the warm-ups.
			ask(t, c, initLine(false, nil), 200, kind.InitOK)
			ask(t, c, runLine("r1"), 200, `{"warm":null,"calls":1,"id":"r1"}`)
			ask(t, c, initLine(true, nil), 403, `{"error":"Cannot initialize the action more than once."}`)
		})
	})
	t.Run("failed_warmup_init_then_real_init", func(t *testing.T) {
		with(t, func(t *testing.T, c Conn) {
			bad := []byte(`{"warmup":true,"value":{"name":"w","main":"nosuch","code":"x = 1","binary":false,"env":{}}}` + "\n")
			ans, err := c.Request(context.Background(), bad)
			if err != nil {
				t.Fatal(err)
			}
			if st, _, _ := runtimes.DecodeReply(ans); st != 502 {
				t.Fatalf("bad warm-up init answered %q", ans)
			}
			ask(t, c, initLine(false, nil), 200, kind.InitOK)
			ask(t, c, runLine("r1"), 200, `{"warm":null,"calls":1,"id":"r1"}`)
		})
	})
}

func jsonSame(got []byte, want string) bool {
	var a, b any
	if json.Unmarshal(got, &a) != nil || json.Unmarshal([]byte(want), &b) != nil {
		return strings.TrimSpace(string(got)) == want
	}
	return jsonEqual(a, b)
}
