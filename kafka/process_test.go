package kafka_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/activation/activationtest"
	"github.com/seuss-go/seuss/store/bbolt"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// invokerBinary builds bin/invoker once per test run.
func invokerBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "seuss-invoker-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "invoker")
		_, file, _, _ := runtime.Caller(0)
		out, err := exec.Command("go", "build", "-o", binPath, "./cmd/invoker").CombinedOutput()
		if err != nil {
			cmd := exec.Command("go", "build", "-o", binPath, "./cmd/invoker")
			cmd.Dir = filepath.Join(filepath.Dir(file), "..")
			out, err = cmd.CombinedOutput()
		}
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/invoker: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

type invokerProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, valid after done
	log  string
}

func startInvokerProc(t *testing.T, broker, dbPath, httpAddr, logName string) *invokerProc {
	t.Helper()
	_, port, _ := net.SplitHostPort(httpAddr)
	logPath := filepath.Join(t.TempDir(), logName)
	lf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(invokerBinary(t), "serve", "--id", "0", "--kafka", broker, "--store", "bbolt",
		"--bbolt-path", dbPath, "--user-memory", "1024", "--kafka-session-timeout", "6s", "--drain-timeout", "30s")
	// The environment is OpenWhisk's way to configure the same: PORT is read from it.
	cmd.Env = append(os.Environ(), "PORT="+port)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &invokerProc{cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() { p.err = cmd.Wait(); lf.Close(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s:\n%s", logName, tail(string(b), 4000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		resp, err := http.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestKill9MidLoad runs bin/invoker serve as a subprocess, kills it with SIGKILL while
// activations run, starts another on the same store, and checks that every activation
// ends with exactly one record and its acks.
func TestKill9MidLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs bin/invoker")
	}
	addr := freeAddr(t)
	b := startBroker(t, addr)
	t.Cleanup(b.Close)
	dbPath := filepath.Join(t.TempDir(), "store.db")
	st, err := bbolt.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	// Each activation takes a while, so that many are running when the kill comes.
	rev := putAction(t, st, "slow", "nodejs:20", `function main(p) { return new Promise(r => setTimeout(() => r({i: p.i}), 150)) }`,
		&activation.ActionLimits{Timeout: 10000, Memory: 128, Logs: 10, Concurrency: 1})
	st.Close()

	c := newController(t, addr)
	httpAddr := freeAddr(t)
	first := startInvokerProc(t, addr, dbPath, httpAddr, "invoker-1.log")
	if got := httpGet(t, "http://"+httpAddr+"/ping"); got != "pong" {
		t.Fatalf("/ping: %q", got)
	}

	const n = 80
	msgs := make([]*activation.ActivationMessage, n)
	for i := range msgs {
		msgs[i] = activationtest.Message("guest", "slow", rev, i%2 == 0, map[string]any{"i": i})
	}
	c.send(msgs...)
	completions := func() int {
		k := 0
		for _, m := range msgs {
			for _, a := range c.acks[m.ActivationID] {
				if a.Kind == "completion" {
					k++
					break
				}
			}
		}
		return k
	}
	c.until("some completions", func() bool { return completions() >= 10 })
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-first.done
	c.mu.Lock()
	atKill := completions()
	c.mu.Unlock()

	// A port of its own: the first invoker's could be taken, since its kill, by an
	// outgoing connection's ephemeral port (then the second could not listen, and the
	// test would wait out its deadline).
	httpAddr = freeAddr(t)
	second := startInvokerProc(t, addr, dbPath, httpAddr, "invoker-2.log")
	c.until("every completion", func() bool { return completions() == n })
	metrics := httpGet(t, "http://"+httpAddr+"/metrics")
	if !strings.Contains(metrics, `seuss_activations_total{path=`) || !strings.Contains(metrics, "seuss_queue_depth") || !strings.Contains(metrics, "seuss_instances_live") {
		t.Fatalf("/metrics lacks the activation series:\n%s", tail(metrics, 2000))
	}
	if err := second.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-second.done
	if second.err != nil {
		t.Fatalf("graceful stop: %v", second.err)
	}

	st, err = bbolt.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c.mu.Lock()
	defer c.mu.Unlock()
	reacked := 0
	for i, m := range msgs {
		rec, err := st.GetActivation(context.Background(), "guest", m.ActivationID)
		if err != nil {
			t.Fatalf("activation %d: no record: %v", i, err)
		}
		if rec.Response.StatusCode != 0 || string(rec.Response.Result) != `{"i":`+strconv.Itoa(i)+`}` {
			t.Fatalf("activation %d: record %s", i, activationtest.Encode(rec.Response))
		}
		acks := c.acks[m.ActivationID]
		if m.Blocking && (acks[0].Kind != "result" || acks[0].Activation.Response.StatusCode != 0) {
			t.Fatalf("activation %d: acks %s", i, kindsOf(acks))
		}
		comps := 0
		for _, a := range acks {
			if a.Kind == "completion" {
				comps++
			}
		}
		if comps > 1 {
			reacked++
		}
	}
	t.Logf("%d activations, %d completed before the kill, %d acked more than once (redelivered after the kill)", n, atKill, reacked)
}
