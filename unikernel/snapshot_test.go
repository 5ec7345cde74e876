package unikernel

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// pythonRoot is the python:3.11 root built by `make rootfs`; tests that need it skip
// without it.
func pythonRoot(t testing.TB) string {
	t.Helper()
	dir, _ := filepath.Abs(filepath.Join("..", ".seuss", "roots", "python:3.11"))
	if _, err := os.Stat(filepath.Join(dir, "seuss", "launcher.py")); err != nil {
		t.Skipf("skipped: no python:3.11 root at %s (make rootfs)", dir)
	}
	return dir
}

var pythonArgv = []string{"/usr/bin/python3.11", "-S", "-E", "-B", "/seuss/launcher.py"}

// session drives a launcher in a UC over fds 0 and 3.
type session struct {
	uc     *UC
	in     *io.PipeWriter
	reply  *bufio.Reader
	mu     sync.Mutex
	stdout bytes.Buffer
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func sessionConfig(root string) (Config, *session) {
	s := &session{}
	inR, inW := io.Pipe()
	repR, repW := io.Pipe()
	s.in = inW
	s.reply = bufio.NewReader(repR)
	cfg := Config{Root: root, Memory: 256 << 20, Env: []string{"HOME=/tmp", "TMPDIR=/tmp", "LANG=C.UTF-8"},
		Stdin: inR, Stdout: lockedWriter{&s.mu, &s.stdout}, Stderr: lockedWriter{&s.mu, &s.stdout}, ExtraWriters: []io.Writer{repW}}
	return cfg, s
}

func (s *session) request(t *testing.T, line string) string {
	t.Helper()
	done := make(chan string, 1)
	go func() {
		ans, _ := s.reply.ReadString('\n')
		done <- ans
	}()
	if _, err := s.in.Write([]byte(line + "\n")); err != nil {
		t.Fatalf("write request: %v", err)
	}
	select {
	case ans := <-done:
		return strings.TrimSpace(ans)
	case <-time.After(30 * time.Second):
		s.mu.Lock()
		out := s.stdout.String()
		s.mu.Unlock()
		t.Fatalf("no answer to %.60s; output:\n%s", line, out)
	}
	return ""
}

func initLine(code string) string {
	b, _ := json.Marshal(map[string]any{"value": map[string]any{"name": "t", "main": "main", "code": code, "binary": false, "env": map[string]string{}}})
	return string(b)
}

func runLine(v string) string {
	return `{"value":` + v + `,"namespace":"ns","action_name":"/ns/t","action_version":"0.0.1","activation_id":"a","transaction_id":"t","deadline":"0"}`
}

// counterAction keeps module state: the count proves a restored UC carries it over.
const counterAction = "import json\nN = [0]\nBIG = bytearray(b'\\xa5' * 300000)\ndef main(args):\n    N[0] += 1\n    return {\"n\": N[0], \"x\": args.get(\"x\")}\n"

// saveFull writes a booted UC's memory to a sparse file, as a runtime snapshot does.
func saveFull(t *testing.T, uc *UC) (string, uint64) {
	t.Helper()
	runs, err := uc.MemoryRuns(true)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "memory")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(int64(uc.vm.Size)); err != nil {
		t.Fatal(err)
	}
	mem := uc.Memory()
	var pages uint64
	for _, r := range runs {
		if r.Zero {
			t.Fatalf("zero run in a full image: %+v", r)
		}
		if _, err := f.WriteAt(mem[r.Addr:r.Addr+r.Pages*PageSize], int64(r.Addr)); err != nil {
			t.Fatal(err)
		}
		pages += r.Pages
	}
	return p, pages
}

type savedRun struct {
	PageRun
	data []byte
}

func saveDiff(t *testing.T, uc *UC) []savedRun {
	t.Helper()
	runs, err := uc.MemoryRuns(false)
	if err != nil {
		t.Fatal(err)
	}
	var out []savedRun
	for _, r := range runs {
		s := savedRun{PageRun: r}
		if !r.Zero {
			s.data = append([]byte(nil), uc.Memory()[r.Addr:r.Addr+r.Pages*PageSize]...)
		}
		out = append(out, s)
	}
	return out
}

func restoreFrom(t *testing.T, st *VMState, memFile string, diff []savedRun, cfg Config) *UC {
	t.Helper()
	vm, err := NewVM(st.AddressSpace)
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.PrepareVCPUs(1); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	uc, err := RestoreOnVM(vm, cfg, st, func(g *GuestMemory) error {
		f, err := os.Open(memFile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := g.MapFile(userBase, g.Size()-userBase, int(f.Fd()), userBase); err != nil {
			return err
		}
		for _, r := range diff {
			if r.Zero {
				if err := g.Zero(r.Addr, r.Pages*PageSize); err != nil {
					return err
				}
				continue
			}
			b, err := g.Bytes(r.Addr, r.Pages*PageSize)
			if err != nil {
				return err
			}
			copy(b, r.data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uc.Close() })
	if err := uc.Start(); err != nil {
		t.Fatal(err)
	}
	return uc
}

func quiesce(t *testing.T, uc *UC) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := uc.WaitQuiescent(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestSnapshotPython: boot the python launcher, capture it awaiting init (runtime
// snapshot), restore it, init an action with module state, capture again (function
// snapshot: a diff over the first), restore that twice and check each behaves as the
// original: the module state is carried over and a second run is correct.
func TestSnapshotPython(t *testing.T) {
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
	// The launcher is quiescent more than once on its way to read(0): its main thread
	// also sleeps in futex waits while it starts its flush-request thread. Capture it
	// where the executor does, awaiting its first request.
	var st *VMState
	for deadline := time.Now().Add(20 * time.Second); ; {
		quiesce(t, uc)
		if _, err := uc.MemoryRuns(false); err == nil {
			t.Fatal("a diff of a booted UC was allowed")
		}
		if st, err = uc.Capture(); err != nil {
			t.Fatal(err)
		}
		if g := st.VCPU[0].GPRs; st.VCPU[0].InCall && (g[0] == 0 || g[0] == 19) && g[5] == 0 { // read or readv of fd 0
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("launcher not captured in read(0): %+v", st.VCPU[0].GPRs)
		}
		if err := uc.Resume(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	memFile, pages := saveFull(t, uc)
	t.Logf("runtime image: %d non-zero pages (%d KiB), %d mappings, %d descriptors", pages, pages*4, len(st.Memory.VMAs), len(st.LibOS.FDs))
	if err := uc.Resume(); err != nil {
		t.Fatal(err)
	}
	// The original still works after the capture.
	if ans := s.request(t, initLine(counterAction)); ans != `{"ok": true}` {
		t.Fatalf("init in the original: %s", ans)
	}

	// C: restore the runtime snapshot, init, capture the function snapshot, run.
	cfg2, s2 := sessionConfig(root)
	uc2 := restoreFrom(t, st, memFile, nil, cfg2)
	if ans := s2.request(t, initLine(counterAction)); ans != `{"ok": true}` {
		t.Fatalf("init after restore: %s", ans)
	}
	quiesce(t, uc2)
	fst, err := uc2.Capture()
	if err != nil {
		t.Fatal(err)
	}
	diff := saveDiff(t, uc2)
	var data, zero uint64
	for _, r := range diff {
		if r.Zero {
			zero += r.Pages
		} else {
			data += r.Pages
		}
	}
	t.Logf("function diff: %d runs, %d data pages (%d KiB), %d zero pages", len(diff), data, data*4, zero)
	// Only pages the init wrote: each data page differs from the runtime image, or lies
	// in a range the guest mapped afresh since the restore.
	img, err := os.ReadFile(memFile)
	if err != nil {
		t.Fatal(err)
	}
	same := 0
	for _, r := range diff {
		for i := uint64(0); !r.Zero && i < r.Pages; i++ {
			a := r.Addr + i*PageSize
			if bytes.Equal(r.data[i*PageSize:(i+1)*PageSize], img[a:a+PageSize]) {
				same++
			}
		}
	}
	t.Logf("%d data pages equal the runtime image's", same)
	// What the init wrote is there: BIG's 73 pages of 0xa5.
	marked := 0
	for _, r := range diff {
		for i := uint64(0); !r.Zero && i < r.Pages; i++ {
			if bytes.Count(r.data[i*PageSize:(i+1)*PageSize], []byte{0xa5}) == PageSize {
				marked++
			}
		}
	}
	if marked < 72 {
		t.Fatalf("the diff holds %d pages of the init's 0xa5 bytes, want 72+", marked)
	}
	if data == 0 || data > 4096 {
		t.Fatalf("function diff of %d data pages", data)
	}
	uc2.Resume()
	if ans := s2.request(t, runLine(`{"x":1}`)); ans != `{"n": 1, "x": 1}` {
		t.Fatalf("run after C: %s", ans)
	}
	if ans := s2.request(t, runLine(`{"x":2}`)); ans != `{"n": 2, "x": 2}` {
		t.Fatalf("second run after C: %s", ans)
	}

	// W, twice: each restore starts from the state after init.
	for i := 0; i < 2; i++ {
		cfg3, s3 := sessionConfig(root)
		restoreFrom(t, fst, memFile, diff, cfg3)
		if ans := s3.request(t, runLine(`{"x":"w"}`)); ans != `{"n": 1, "x": "w"}` {
			t.Fatalf("run after W: %s", ans)
		}
		if ans := s3.request(t, runLine(`{"x":"w2"}`)); ans != `{"n": 2, "x": "w2"}` {
			t.Fatalf("second run after W: %s", ans)
		}
	}
}

// TestRecycleVM: a VM recycled after a UC holds nothing the UC wrote, and serves another
// restore of the same image.
func TestRecycleVM(t *testing.T) {
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
	st, err := uc.Capture()
	if err != nil {
		t.Fatal(err)
	}
	memFile, _ := saveFull(t, uc)
	_ = s

	marker := "SEUSS-RECYCLE-MARKER-"
	secret := "import json\nS = ['" + marker + "%d' % i for i in range(20000)]\ndef main(args):\n    return {\"n\": len(S)}\n"
	cfg2, s2 := sessionConfig(root)
	uc2 := restoreFrom(t, st, memFile, nil, cfg2)
	if ans := s2.request(t, initLine(secret)); ans != `{"ok": true}` {
		t.Fatalf("init: %s", ans)
	}
	if ans := s2.request(t, runLine(`{}`)); ans != `{"n": 20000}` {
		t.Fatalf("run: %s", ans)
	}
	quiesce(t, uc2)
	vm := uc2.vm
	if !bytes.Contains(vm.mem, []byte(marker+"19999")) {
		t.Fatal("the marker is not in guest memory: the test proves nothing")
	}
	if err := uc2.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(memFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := os.ReadFile(memFile)
	if err != nil {
		t.Fatal(err)
	}
	rvm, err := uc2.RecycleVM(func(g *GuestMemory, dirty []DirtyRange) error {
		// As package snapshots does: copy the image back, remap only other files' ranges.
		for _, d := range dirty {
			if d.File {
				if err := g.MapFile(d.Start, d.End-d.Start, int(f.Fd()), int64(d.Start)); err != nil {
					return err
				}
				continue
			}
			b, err := g.Bytes(d.Start, d.End-d.Start)
			if err != nil {
				return err
			}
			for a := d.Start; a < d.End; a += PageSize {
				if !bytes.Equal(b[a-d.Start:a-d.Start+PageSize], img[a:a+PageSize]) {
					copy(b[a-d.Start:a-d.Start+PageSize], img[a:a+PageSize])
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(rvm.mem, []byte(marker)) {
		t.Fatal("a recycled VM still holds what the previous UC wrote")
	}
	// Every page is the image's again.
	if !bytes.Equal(rvm.mem[userBase:], img[userBase:]) {
		t.Fatal("a recycled VM's memory differs from the image")
	}
	cfg3, s3 := sessionConfig(root)
	uc3, err := RestoreOnVM(rvm, cfg3, st, func(*GuestMemory) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer uc3.Close()
	if err := uc3.Start(); err != nil {
		t.Fatal(err)
	}
	if ans := s3.request(t, initLine(counterAction)); ans != `{"ok": true}` {
		t.Fatalf("init in a recycled VM: %s", ans)
	}
	if ans := s3.request(t, runLine(`{"x":3}`)); ans != `{"n": 1, "x": 3}` {
		t.Fatalf("run in a recycled VM: %s", ans)
	}
}
