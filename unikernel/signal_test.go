package unikernel

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestHostSignal: a host signal (UC.Signal) wakes a thread waiting for it in sigwait, on
// a thread of its own while the main thread computes in guest code; a signal nobody
// waits for reaches nobody (Signal says so); sigtimedwait times out with EAGAIN.
func TestHostSignal(t *testing.T) {
	requireKVM(t)
	root := pythonRoot(t)
	const script = `
import os, signal, _thread
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
def waiter():
    s = signal.sigwait({signal.SIGUSR2})
    os.write(1, b"got %d\n" % s)
    os._exit(0)
os.write(1, b"timed %r\n" % (signal.sigtimedwait({signal.SIGUSR2}, 0.01),))
_thread.start_new_thread(waiter, ())
os.write(1, b"ready\n")
while True:
    pass
`
	var mu sync.Mutex
	var out bytes.Buffer
	cfg := Config{Root: root, Memory: 256 << 20, Stdout: lockedWriter{&mu, &out}, Stderr: lockedWriter{&mu, &out}}
	uc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	if err := uc.Load([]string{"/usr/bin/python3.11", "-S", "-E", "-B", "-c", script}); err != nil {
		t.Fatal(err)
	}
	if err := uc.Start(); err != nil {
		t.Fatal(err)
	}
	output := func() string {
		mu.Lock()
		defer mu.Unlock()
		return out.String()
	}
	end := time.Now().Add(20 * time.Second)
	for !strings.Contains(output(), "ready") {
		if time.Now().After(end) {
			t.Fatalf("never ready: %q", output())
		}
		time.Sleep(time.Millisecond)
	}
	if uc.Signal(int(unix.SIGUSR1)) {
		t.Fatal("SIGUSR1 taken by a thread waiting for SIGUSR2 only")
	}
	// The waiter reaches sigwait a moment after "ready".
	for !uc.Signal(int(unix.SIGUSR2)) {
		if time.Now().After(end) {
			t.Fatalf("no thread ever waited for SIGUSR2: %q", output())
		}
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := uc.Wait(ctx)
	if err != nil {
		t.Fatalf("wait: %v (%q)", err, output())
	}
	if want := "timed None\nready\ngot 12\n"; res.Status != 0 || output() != want {
		t.Fatalf("status %d, output %q, want %q", res.Status, output(), want)
	}
}
