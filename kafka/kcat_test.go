package kafka_test

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/seuss-go/seuss/activation/activationtest"
)

// TestKcatAsController uses kcat, an independent Kafka client (librdkafka), as the
// controller: it produces the ActivationMessage to invoker0 and reads the acks from
// completed0 and a ping from health.
func TestKcatAsController(t *testing.T) {
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Skip("kcat not installed (.ci/run installs it)")
	}
	e := newEnv(t)
	rev := putAction(t, e.store, "hello", "nodejs:20", helloJS, nil)
	m := activationtest.Message("guest", "hello", rev, true, map[string]any{"name": "kcat"})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()

	prod := exec.CommandContext(ctx, "kcat", "-b", e.addr, "-P", "-t", "invoker0")
	prod.Stdin = bytes.NewReader(append(activationtest.Encode(m), '\n'))
	if out, err := prod.CombinedOutput(); err != nil {
		t.Fatalf("kcat -P: %v: %s", err, out)
	}
	// -c 2: the result ack and the completion ack; kcat waits for them.
	out, err := exec.CommandContext(ctx, "kcat", "-b", e.addr, "-C", "-t", "completed0", "-o", "beginning", "-c", "2", "-q").Output()
	if err != nil {
		t.Fatalf("kcat -C completed0: %v: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 {
		t.Fatalf("acks read by kcat: %q", out)
	}
	res, err := parseAck([]byte(lines[0]))
	if err != nil || res.Kind != "result" || res.ActivationID != m.ActivationID || string(res.Activation.Response.Result) != `{"payload":"Hello, kcat!"}` {
		t.Fatalf("result ack %s (%v)", lines[0], err)
	}
	comp, err := parseAck([]byte(lines[1]))
	if err != nil || comp.Kind != "completion" || comp.ActivationID != m.ActivationID || comp.TransID != string(activationtest.Encode(m.TransID)) {
		t.Fatalf("completion ack %s (%v)", lines[1], err)
	}
	ping, err := exec.CommandContext(ctx, "kcat", "-b", e.addr, "-C", "-t", "health", "-o", "beginning", "-c", "1", "-q").Output()
	if err != nil || !strings.HasPrefix(string(ping), `{"name":{"instance":0,`) {
		t.Fatalf("ping read by kcat: %q (%v)", ping, err)
	}
}
