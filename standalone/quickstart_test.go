package standalone_test

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// quickstartScript is the README's quickstart block, verbatim.
func quickstartScript(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	_, rest, ok := strings.Cut(s, "<!-- quickstart:begin -->")
	block, _, ok2 := strings.Cut(rest, "<!-- quickstart:end -->")
	if !ok || !ok2 {
		t.Fatal("README.md has no quickstart block")
	}
	block = strings.TrimSpace(block)
	block = strings.TrimPrefix(block, "```sh")
	block = strings.TrimSuffix(block, "```")
	return block
}

// TestQuickstart does what a new user does: `make run` in the background, then the
// README's quickstart commands verbatim.
func TestQuickstart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the stack with make: not in -short")
	}
	for _, tool := range []string{"make", "bash", "curl", "sed"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	// make run uses the default addresses, as the README does.
	for _, addr := range []string{"127.0.0.1:3233", "127.0.0.1:9092"} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Skipf("%s is in use (%v): the quickstart needs the default ports", addr, err)
		}
		ln.Close()
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out lockedBuffer
	run := exec.Command("make", "run", "DATA_DIR="+t.TempDir())
	run.Dir = ".."
	run.Stdout, run.Stderr = &out, &out
	// Its own process group, so that the interrupt reaches make and the invoker.
	run.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- run.Wait() }()
	t.Cleanup(func() {
		syscall.Kill(-run.Process.Pid, syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			syscall.Kill(-run.Process.Pid, syscall.SIGKILL)
			<-exited
			t.Errorf("make run did not stop on SIGINT")
		}
		if t.Failed() {
			t.Logf("make run output:\n%s", out.String())
		}
	})

	// Wait for the banner, and for the API to answer.
	for !strings.Contains(out.String(), "seuss standalone is up") {
		select {
		case err := <-exited:
			t.Fatalf("make run exited: %v\n%s", err, out.String())
		case <-ctx.Done():
			t.Fatalf("make run did not come up:\n%s", out.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	if resp, err := http.Get("http://127.0.0.1:3233/ping"); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	// Where KVM works, make run builds the roots and runs actions in unikernel contexts,
	// building the runtime snapshots on this first start with a progress bar.
	if _, err := os.Stat("/dev/kvm"); err == nil {
		for _, want := range []string{"(executor: uc)", "runtime snapshots [" + strings.Repeat("#", 24) + "] 2/2 "} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("make run output lacks %q", want)
			}
		}
	}
	for _, want := range []string{"wsk property set --apihost http://127.0.0.1:3233 --auth 23bc46b1-", "curl -u 23bc46b1-"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("banner lacks %q", want)
		}
	}

	script := exec.CommandContext(ctx, "bash", "-e", "-c", quickstartScript(t))
	got, err := script.CombinedOutput()
	if err != nil {
		t.Fatalf("quickstart: %v\n%s", err, got)
	}
	text := string(got)
	for _, want := range []string{
		`{"greeting":"Hello, seuss"}`,
		`{"greeting":"Hello, python"}`,
		`"name":"hello"`,              // the record
		`stdout: hi`,                  // its logs
		`"status":"success"`,          // its result
		`{"greeting":"Hello, World"}`, // the non-blocking result
	} {
		if !strings.Contains(text, want) {
			t.Errorf("quickstart output lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("quickstart output:\n%s", text)
	}
}
