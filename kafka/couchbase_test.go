package kafka_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/activation/activationtest"
	"github.com/seuss-go/seuss/store/couchbase"
)

// startCaves starts gocaves -mock-only (built into .peers by .ci/peers) and returns its
// connection string.
func startCaves(t *testing.T) string {
	t.Helper()
	bin, _ := filepath.Abs("../.peers/bin/gocaves")
	if _, err := os.Stat(bin); err != nil {
		t.Skip("gocaves not built (.ci/peers builds it)")
	}
	cmd := exec.Command(bin, "-mock-only")
	cmd.Dir = t.TempDir()
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait(); pw.Close() })
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			var m struct {
				ConnStr string `json:"connstr"`
			}
			if json.Unmarshal(sc.Bytes(), &m) == nil && m.ConnStr != "" {
				select {
				case found <- m.ConnStr:
				default:
				}
			}
		}
	}()
	select {
	case cs := <-found:
		return cs
	case <-time.After(wait):
		t.Fatal("gocaves printed no connection string")
		return ""
	}
}

// TestServeCouchbase: bin/invoker serve --store couchbase, configured by COUCHBASE_*,
// runs an action stored in Couchbase and writes its record there.
func TestServeCouchbase(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs bin/invoker")
	}
	connStr := startCaves(t)
	st, err := couchbase.Open(context.Background(), couchbase.Config{ConnStr: connStr, Username: "Administrator", Password: "password", Bucket: "default"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	hello := &activation.WhiskAction{Namespace: "guest", Name: "hello", Version: "0.0.1", Exec: activation.Exec{Kind: "python:3.11"},
		Limits: activation.DefaultActionLimits(), Parameters: []activation.KeyValue{}, Annotations: []activation.KeyValue{}}
	rev, err := st.PutAction(context.Background(), hello, []byte("def main(args):\n  return {'greeting': 'Hello, ' + args['name']}\n"))
	if err != nil {
		t.Fatal(err)
	}

	addr := freeAddr(t)
	b := startBroker(t, addr)
	t.Cleanup(b.Close)
	c := newController(t, addr)
	_, httpPort, _ := net.SplitHostPort(freeAddr(t))
	logPath := filepath.Join(t.TempDir(), "invoker.log")
	lf, _ := os.Create(logPath)
	cmd := exec.Command(invokerBinary(t), "serve", "--id", "0", "--store", "couchbase")
	cmd.Env = append(os.Environ(), "KAFKA_HOSTS="+addr, "PORT="+httpPort,
		"COUCHBASE_CONNSTR="+connStr, "COUCHBASE_USERNAME=Administrator", "COUCHBASE_PASSWORD=password", "COUCHBASE_BUCKET=default",
		"SEUSS_SPOOL_DIR="+filepath.Join(t.TempDir(), "spool"))
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := <-exited; err != nil {
			t.Errorf("invoker exit: %v", err)
		}
		lf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("invoker log:\n%s", tail(string(b), 4000))
		}
	})

	m := activationtest.Message("guest", "hello", rev, true, map[string]any{"name": "Couchbase"})
	c.send(m)
	acks := c.completed(m.ActivationID)
	if kindsOf(acks) != "result,completion" || string(acks[0].Activation.Response.Result) != `{"greeting":"Hello, Couchbase"}` {
		t.Fatalf("acks %s %s", kindsOf(acks), acks[0].Raw)
	}
	if rec, err := st.GetActivation(context.Background(), "guest", m.ActivationID); err != nil || rec.Response.StatusCode != 0 {
		t.Fatalf("record in Couchbase: %v %+v", err, rec)
	}
}
