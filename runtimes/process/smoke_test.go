package process

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/seuss-go/seuss/activation"
)

func newExec(t testing.TB, cfg Config) *Executor {
	t.Helper()
	cfg.TempDir = t.TempDir()
	if cfg.UID != 0 {
		// t.TempDir's directories are private to root.
		for d := cfg.TempDir; d != filepath.Dir(os.TempDir()) && d != "/"; d = filepath.Dir(d) {
			if d == os.TempDir() {
				break
			}
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func job(kind, name, code string, value string) *activation.Job {
	return &activation.Job{
		Key:    activation.ActionKey{Namespace: "guest", FQN: "guest/" + name, Revision: "1", CodeDigest: "sha256-" + name},
		Kind:   kind,
		Init:   activation.InitMessage{Name: name, Main: "main", Code: code},
		Run:    activation.RunMessage{Value: json.RawMessage(value), Namespace: "guest", ActionName: "/guest/" + name, ActivationID: "a1", Deadline: "123"},
		Limits: activation.Limits{Timeout: 20 * time.Second, MemoryMB: 256, LogBytes: 10 << 20},
	}
}

func TestSmoke(t *testing.T) {
	e := newExec(t, Config{})
	t.Log(e.MemoryLimitMechanism())
	for _, tc := range []struct{ kind, code string }{
		{"nodejs:20", `function main(p) { console.log("hi " + p.name); return {payload: "Hello " + p.name} }`},
		{"python:3.11", "def main(p):\n    print('hi ' + p['name'])\n    return {'payload': 'Hello ' + p['name']}\n"},
	} {
		for i, path := range []activation.Path{activation.PathBoot, activation.PathHot} {
			out, err := e.Run(context.Background(), job(tc.kind, "smoke", tc.code, `{"name":"W"}`))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s %d: %+v %s", tc.kind, i, out, out.RunResponse)
			if out.Path != path || out.RunStatus != 200 || len(out.Logs) != 1 || out.Err != nil {
				t.Errorf("%s run %d: %+v", tc.kind, i, out)
			}
		}
	}
}
