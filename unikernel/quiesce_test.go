package unikernel

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestWaitQuiescentWoken: with the fallback look taken away, WaitQuiescent still returns
// once the launcher, busy in its init when the wait begins, is back asleep in read(0): the
// thread falling asleep wakes the waiter. Without that wake it would wait for the context.
func TestWaitQuiescentWoken(t *testing.T) {
	requireKVM(t)
	root := pythonRoot(t)
	cfg, s := sessionConfig(root)
	cfg.AddressSpace = 512 << 20
	uc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	if err := uc.Load(pythonArgv); err != nil {
		t.Fatal(err)
	}
	if err := uc.Start(); err != nil {
		t.Fatal(err)
	}
	quiesce(t, uc)
	if err := uc.Resume(); err != nil {
		t.Fatal(err)
	}

	old := quiesceFallback
	quiesceFallback = time.Hour
	defer func() { quiesceFallback = old }()

	// An init that computes for a while (guest code, no system call) before it answers.
	const busy = "X = sum(i * i for i in range(3000000))\ndef main(args):\n    return {\"x\": X}\n"
	replies := make(chan string, 1)
	go func() {
		ans, _ := s.reply.ReadString('\n')
		replies <- strings.TrimSpace(ans)
	}()
	if _, err := s.in.Write([]byte(initLine(busy) + "\n")); err != nil {
		t.Fatal(err)
	}
	// The request reaches the guest's read(0) a moment after the write: wait until the
	// launcher is busy, so that only a wake can end the wait below.
	for end := time.Now().Add(10 * time.Second); uc.looksIdle(); time.Sleep(50 * time.Microsecond) {
		if time.Now().After(end) {
			t.Fatal("the launcher never left read(0) for its init")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := uc.WaitQuiescent(ctx); err != nil {
		t.Fatalf("not woken when the launcher fell asleep: %v", err)
	}
	select {
	case ans := <-replies:
		if ans != `{"ok": true}` {
			t.Fatalf("init: %s", ans)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer to the init")
	}
	if err := uc.Resume(); err != nil {
		t.Fatal(err)
	}
	if ans := s.request(t, runLine(`{}`)); !strings.Contains(ans, `"x": 8999995500000500000`) {
		t.Fatalf("run after the wait: %s", ans)
	}
}
