package process

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/seuss-go/seuss/activation"
)

var spin = map[string]string{
	"nodejs:20":   "function main() { for (;;) {} }",
	"python:3.11": "def main(args):\n    while True:\n        pass\n",
}

func TestRunTimeout(t *testing.T) {
	e := newExec(t, Config{})
	for kind, code := range spin {
		j := job(kind, "spin", code, `{}`)
		j.Limits.Timeout = 300 * time.Millisecond
		out, err := e.Run(context.Background(), j)
		if err != nil {
			t.Fatal(err)
		}
		if !errors.Is(out.Err, activation.ErrRunTimeout) || out.InitStatus != 200 {
			t.Errorf("%s: %+v", kind, out)
		}
	}
	if s := e.Stats(); s.Live != 0 || s.ReservedMB != 0 {
		t.Errorf("after timeouts: %+v", s)
	}
}

func TestInitTimeout(t *testing.T) {
	e := newExec(t, Config{})
	for kind, code := range map[string]string{
		"nodejs:20":   "for (;;) {}\nfunction main() {}",
		"python:3.11": "while True:\n    pass\n",
	} {
		j := job(kind, "initspin", code, `{}`)
		j.Limits.Timeout = 300 * time.Millisecond
		out, err := e.Run(context.Background(), j)
		if err != nil {
			t.Fatal(err)
		}
		if !errors.Is(out.Err, activation.ErrInitTimeout) || !out.RunStart.IsZero() {
			t.Errorf("%s: %+v", kind, out)
		}
	}
}

func TestMemoryLimit(t *testing.T) {
	e := newExec(t, Config{})
	for kind, code := range map[string]string{
		"nodejs:20":   "function main() { const keep = []; for (;;) keep.push({ a: Math.random(), b: [1, 2, 3], c: 'x' + keep.length }) }",
		"python:3.11": "def main(args):\n    keep = bytearray(512 << 20)\n    return {'n': len(keep)}\n",
	} {
		j := job(kind, "hog", code, `{}`)
		j.Limits.MemoryMB = 128
		out, err := e.Run(context.Background(), j)
		if err != nil {
			t.Fatal(err)
		}
		if !errors.Is(out.Err, activation.ErrMemoryLimit) {
			t.Errorf("%s: %+v", kind, out)
		}
	}
	// Within the limit the same allocation works.
	j := job("python:3.11", "fits", "def main(args):\n    keep = bytearray(32 << 20)\n    return {'n': len(keep)}\n", `{}`)
	j.Limits.MemoryMB = 128
	if out, err := e.Run(context.Background(), j); err != nil || out.Err != nil || string(out.RunResponse) != `{"n": 33554432}` {
		t.Errorf("fits: %+v %v", out, err)
	}
}

func TestLogLimit(t *testing.T) {
	e := newExec(t, Config{})
	code := "function main() { for (let i = 0; i < 10; i++) console.log('0123456789012345678901234567890123456789-' + i); return {} }"
	j := job("nodejs:20", "chatty", code, `{}`)
	j.Limits.LogBytes = 100
	out, err := e.Run(context.Background(), j)
	if err != nil || out.Err != nil {
		t.Fatal(out, err)
	}
	n := 0
	for _, l := range out.Logs {
		n += len(l.Text)
	}
	if !out.LogsTruncated || n > 100 || len(out.Logs) != 2 {
		t.Errorf("truncated %v, %d bytes in %d lines", out.LogsTruncated, n, len(out.Logs))
	}
	j.Limits.LogBytes = 0
	out, err = e.Run(context.Background(), j)
	if err != nil || out.Path != activation.PathHot || len(out.Logs) != 0 || out.LogsTruncated {
		t.Errorf("no logs: %+v %v", out, err)
	}
}

func TestBudgetEviction(t *testing.T) {
	e := newExec(t, Config{MemoryBudgetMB: 512})
	code := "def main(args):\n    return {}\n"
	for _, name := range []string{"a", "b", "c"} {
		if out, err := e.Run(context.Background(), job("python:3.11", name, code, `{}`)); err != nil || out.Err != nil || out.Path != activation.PathBoot {
			t.Fatalf("%s: %+v %v", name, out, err)
		}
	}
	if s := e.Stats(); s.Live != 2 || s.Idle != 2 || s.ReservedMB != 512 {
		t.Errorf("stats %+v", s)
	}
	// "a" was the least recently used: evicted; "c" is still hot.
	if out, _ := e.Run(context.Background(), job("python:3.11", "c", code, `{}`)); out.Path != activation.PathHot {
		t.Errorf("c: path %s", out.Path)
	}
	if out, _ := e.Run(context.Background(), job("python:3.11", "a", code, `{}`)); out.Path != activation.PathBoot {
		t.Errorf("a: path %s", out.Path)
	}
	// Another namespace never shares an instance.
	j := job("python:3.11", "a", code, `{}`)
	j.Key.Namespace = "other"
	if out, _ := e.Run(context.Background(), j); out.Path != activation.PathBoot {
		t.Errorf("other namespace: path %s", out.Path)
	}
}

func TestBudgetFull(t *testing.T) {
	e := newExec(t, Config{MemoryBudgetMB: 256})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.Run(ctx, job("python:3.11", "busy", spin["python:3.11"], `{}`))
	}()
	for e.Stats().Live == 0 {
		time.Sleep(time.Millisecond)
	}
	_, err := e.Run(context.Background(), job("python:3.11", "other", "def main(a):\n    return {}\n", `{}`))
	if !errors.Is(err, ErrNoCapacity) {
		t.Errorf("err %v", err)
	}
	cancel()
	<-done
}

func TestIdleTTL(t *testing.T) {
	e := newExec(t, Config{IdleTTL: 20 * time.Millisecond})
	if _, err := e.Run(context.Background(), job("python:3.11", "ttl", "def main(a):\n    return {}\n", `{}`)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.Stats().Live != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("idle instance not evicted: %+v", e.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCancel(t *testing.T) {
	e := newExec(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	out, err := e.Run(ctx, job("nodejs:20", "spin", spin["nodejs:20"], `{}`))
	if err != nil || !errors.Is(out.Err, context.DeadlineExceeded) {
		t.Errorf("%+v %v", out, err)
	}
}

func TestRunExited(t *testing.T) {
	e := newExec(t, Config{})
	out, err := e.Run(context.Background(), job("python:3.11", "crash", "import os\ndef main(a):\n    print('bye')\n    os.kill(os.getpid(), 9)\n", `{}`))
	if err != nil || !errors.Is(out.Err, activation.ErrRunExited) || !strings.Contains(out.Err.Error(), "killed") {
		t.Errorf("%+v %v", out, err)
	}
}

func TestWarmupConfig(t *testing.T) {
	e := newExec(t, Config{Warmup: true})
	for kind, code := range map[string]string{
		"nodejs:20":   "function main(a) { return { id: process.env.__OW_ACTIVATION_ID } }",
		"python:3.11": "import os\ndef main(a):\n    return {'id': os.environ['__OW_ACTIVATION_ID']}\n",
	} {
		out, err := e.Run(context.Background(), job(kind, "warm", code, `{}`))
		if err != nil || out.Err != nil || out.RunStatus != 200 || !strings.Contains(string(out.RunResponse), `"a1"`) || len(out.Logs) != 0 {
			t.Errorf("%s: %+v %v", kind, out, err)
		}
	}
}

// TestBudgetFullEndsEvicted: an idle instance evicted by a reservation that still finds
// no room is ended, not left running outside the accounting.
func TestBudgetFullEndsEvicted(t *testing.T) {
	e := newExec(t, Config{MemoryBudgetMB: 512})
	if _, err := e.Run(context.Background(), job("python:3.11", "idle", "def main(a):\n    return {}\n", `{}`)); err != nil {
		t.Fatal(err)
	}
	idle := e.pool.Live()
	if len(idle) != 1 {
		t.Fatalf("%d live instances", len(idle))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.Run(ctx, job("python:3.11", "busy", spin["python:3.11"], `{}`))
	}()
	for e.Stats().Live < 2 {
		time.Sleep(time.Millisecond)
	}
	j := job("python:3.11", "big", "def main(a):\n    return {}\n", `{}`)
	j.Limits.MemoryMB = 512
	_, err := e.Run(context.Background(), j)
	if !errors.Is(err, ErrNoCapacity) || err.Error() != ErrNoCapacity.Error()+": 256 MB reserved of 512, 512 MB more needed" {
		t.Errorf("err %v", err)
	}
	select {
	case <-idle[0].exited:
	case <-time.After(10 * time.Second):
		t.Error("the evicted idle instance still runs")
	}
	if s := e.Stats(); s.Live != 1 || s.Idle != 0 || s.ReservedMB != 256 {
		t.Errorf("stats %+v", s)
	}
	cancel()
	<-done
}
