package kafka_test

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/activation/activationtest"
	"github.com/seuss-go/seuss/store/bbolt"
)

// TestServeUC: bin/invoker serve --executor uc runs activations in unikernel contexts
// and says in the record how each was deployed (seuss.path).
func TestServeUC(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs bin/invoker")
	}
	if _, err := os.Stat("/dev/kvm"); err != nil {
		t.Skip("no /dev/kvm")
	}
	roots, _ := filepath.Abs("../.seuss/roots")
	for _, k := range []string{"nodejs:20", "python:3.11"} {
		if _, err := os.Stat(filepath.Join(roots, k)); err != nil {
			t.Skipf("no runtime root %s (make rootfs)", k)
		}
	}
	dbPath := filepath.Join(t.TempDir(), "store.db")
	st, err := bbolt.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	revs := map[string]string{
		"js": putAction(t, st, "js", "nodejs:20", helloJS, nil),
		"py": putAction(t, st, "py", "python:3.11", "def main(args):\n  print('hi', args.get('name'))\n  return {'payload': 'Hello, ' + args['name'] + '!'}\n", nil),
	}
	st.Close()

	addr := freeAddr(t)
	b := startBroker(t, addr)
	t.Cleanup(b.Close)
	c := newController(t, addr)
	_, httpPort, _ := net.SplitHostPort(freeAddr(t))
	logPath := filepath.Join(t.TempDir(), "invoker.log")
	lf, _ := os.Create(logPath)
	cmd := exec.Command(invokerBinary(t), "serve", "--id", "0", "--kafka", addr, "--port", httpPort, "--store", "bbolt", "--bbolt-path", dbPath,
		"--executor", "uc", "--roots-dir", roots, "--snapshot-dir", filepath.Join(t.TempDir(), "snapshots"))
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := <-exited; err != nil {
			t.Errorf("invoker exit: %v", err)
		}
		lf.Close()
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("invoker log:\n%s", tail(string(b), 6000))
		}
	})

	var msgs []*activation.ActivationMessage
	for round := 0; round < 2; round++ {
		for _, name := range []string{"js", "py"} {
			m := activationtest.Message("guest", name, revs[name], true, map[string]any{"name": "UC"})
			c.send(m)
			acks := c.completed(m.ActivationID)
			if kindsOf(acks) != "result,completion" || string(acks[0].Activation.Response.Result) != `{"payload":"Hello, UC!"}` {
				t.Fatalf("%s round %d: acks %s %s", name, round, kindsOf(acks), acks[0].Raw)
			}
			msgs = append(msgs, m)
		}
	}
	stop()
	st, err = bbolt.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var paths []string
	for _, m := range msgs {
		rec := record(t, st, m.ActivationID)
		paths = append(paths, string(rec.Annotation("seuss.path")))
		if len(rec.Logs) == 0 || !strings.Contains(rec.Logs[0], "stdout: hi") && !strings.Contains(rec.Logs[0], "stdout: hello") {
			t.Errorf("%s logs %q", m.Action.Name, rec.Logs)
		}
	}
	t.Logf("deployment paths js, py, js, py: %v", paths)
	for i, p := range paths {
		if p == "" || (i >= 2 && p != `"H"` && p != `"W"`) {
			t.Fatalf("seuss.path of activation %d: %s (all: %v)", i, p, paths)
		}
	}
}
