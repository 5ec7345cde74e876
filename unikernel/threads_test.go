package unikernel

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestThreadsInUC runs testdata/threads.c: threads and joins (CLONE_CHILD_CLEARTID), vCPU
// reuse, mutexes and condition variables, futex wait/wake with timeouts, bitsets,
// requeue and wake_op, eventfd, epoll on pipes and eventfds (level and edge triggered,
// woken by another thread), poll, socketpair, and a busy thread that never calls in.
func TestThreadsInUC(t *testing.T) {
	requireKVM(t)
	root := testRoot(t, "threads")
	res, out, errOut := runUC(t, Config{Root: root, Timeout: time.Minute}, "/threads")
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "FAIL") {
			t.Error(line)
		}
	}
	if res.Status != 0 || res.Err != nil || !strings.Contains(out, "done 0") {
		t.Fatalf("status %d, err %v, output:\n%s\n%s", res.Status, res.Err, out, errOut)
	}
	if n := strings.Count(out, "\nok "); n < 40 {
		t.Errorf("only %d checks passed", n)
	}
}

// TestThreadBomb: clone past Config.MaxThreads fails with EAGAIN (pthread_create says
// so) and the UC goes on.
func TestThreadBomb(t *testing.T) {
	requireKVM(t)
	root := testRoot(t, "threads")
	res, out, _ := runUC(t, Config{Root: root, Timeout: time.Minute, MaxThreads: 12}, "/threads", "bomb")
	if res.Status != 0 || res.Err != nil {
		t.Fatalf("status %d err %v\n%s", res.Status, res.Err, out)
	}
	if want := "created 11 threads then error 11 (Resource temporarily unavailable)"; !strings.Contains(out, want) {
		t.Fatalf("output %q, want %q", out, want)
	}
}

// TestBusyThreadStopped: exit_group from one thread ends the UC although another spins in
// guest code without ever making a system call (its vCPU is kicked out of KVM_RUN).
func TestBusyThreadStopped(t *testing.T) {
	requireKVM(t)
	root := testRoot(t, "threads")
	res, out, _ := runUC(t, Config{Root: root, Timeout: time.Minute}, "/threads", "busy")
	if res.Status != 7 || res.Err != nil || !strings.Contains(out, "main runs while a thread spins") {
		t.Fatalf("status %d err %v output %q", res.Status, res.Err, out)
	}
}

// TestSignalsInUC runs testdata/signals.c: handlers with siginfo, kill to self, blocked
// then unblocked, a signal raised in a handler, the alternate stack, ignored signals,
// SA_RESETHAND; then a default-action SIGTERM ends the UC with 143.
func TestSignalsInUC(t *testing.T) {
	requireKVM(t)
	root := testRoot(t, "signals")
	res, out, _ := runUC(t, Config{Root: root, Timeout: time.Minute}, "/signals")
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "FAIL") {
			t.Error(line)
		}
	}
	if res.Status != 0 || res.Err != nil || !strings.Contains(out, "done 0") {
		t.Fatalf("status %d, err %v, output:\n%s", res.Status, res.Err, out)
	}
	res, out, _ = runUC(t, Config{Root: root, Timeout: time.Minute}, "/signals", "term")
	if res.Status != 143 || res.Err != nil || strings.Contains(out, "still here") {
		t.Fatalf("term: status %d err %v output %q", res.Status, res.Err, out)
	}
}

// TestPythonAsyncio: asyncio's event loop (epoll, its socketpair self-pipe) with executor
// threads and timers, in a UC.
func TestPythonAsyncio(t *testing.T) {
	requireKVM(t)
	if _, err := os.Stat(hostPython); err != nil {
		t.Skip("skipped: no " + hostPython)
	}
	script := `
import asyncio, socket
async def main():
    loop = asyncio.get_running_loop()
    print("executor", await loop.run_in_executor(None, sum, [1, 2, 3]))
    a, b = socket.socketpair()
    r, w = await asyncio.open_connection(sock=a)
    b.sendall(b"line\n")
    print("stream", await r.readline())
    print(await asyncio.gather(*(asyncio.sleep(0.01 * (3 - i), result=i) for i in range(3))))
    w.close()
    b.close()
asyncio.run(main())
`
	res, out, errOut := runUC(t, Config{Root: "/", Timeout: time.Minute}, hostPython, "-c", script)
	if want := "executor 6\nstream b'line\\n'\n[0, 1, 2]\n"; res.Status != 0 || out != want {
		t.Fatalf("status %d err %v output %q, want %q\n%s", res.Status, res.Err, out, want, errOut)
	}
}

// TestMemoryGuard: writing to a PROT_NONE reservation (which the UC's static page tables
// allow) is stopped by the memory guard with ErrMemory long before it costs the host the
// 1 GiB the guest tries to touch.
func TestMemoryGuard(t *testing.T) {
	requireKVM(t)
	root := testRoot(t, "threads")
	res, out, _ := runUC(t, Config{Root: root, Timeout: time.Minute, Memory: 64 << 20}, "/threads", "touch")
	if !errors.Is(res.Err, ErrMemory) || res.Status != 137 || strings.Contains(out, "unhindered") {
		t.Fatalf("status %d err %v output %q", res.Status, res.Err, out)
	}
	t.Log(res.Err)
}

// TestPauseBusyThreads: Pause returns while three threads compute without ever calling
// in (each vCPU is kicked out of KVM_RUN), the UC resumes, and Kill ends it.
func TestPauseBusyThreads(t *testing.T) {
	requireKVM(t)
	root := testRoot(t, "threads")
	out := &lockedBuilder{b: &strings.Builder{}}
	uc, err := New(Config{Root: root, Timeout: time.Minute, Stdout: out})
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	if err := uc.Load([]string{"/threads", "spin"}); err != nil {
		t.Fatal(err)
	}
	if err := uc.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 500 && !strings.Contains(out.String(), "spinning"); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	for i := 0; i < 3; i++ {
		if err := uc.Pause(); err != nil {
			t.Fatalf("pause %d: %v", i, err)
		}
		if st := uc.State(); st != StatePaused {
			t.Fatalf("state %s after Pause", st)
		}
		uc.mu.Lock()
		n := len(uc.threads)
		for _, th := range uc.threads {
			if th.inGuest {
				t.Errorf("thread %d still in the guest after Pause", th.tid)
			}
		}
		uc.mu.Unlock()
		if n != 3 {
			t.Errorf("%d threads, want 3", n)
		}
		if err := uc.Resume(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := uc.Kill(); err != nil {
		t.Fatal(err)
	}
	res, err := uc.Wait(context.Background())
	if err != nil || !errors.Is(res.Err, ErrKilled) {
		t.Fatalf("wait: %v, result err %v", err, res.Err)
	}
}

// lockedBuilder is a strings.Builder safe for the UC's writer and the test to share.
type lockedBuilder struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (w *lockedBuilder) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuilder) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
