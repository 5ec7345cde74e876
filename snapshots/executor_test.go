package snapshots

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/runtimes"
	"github.com/seuss-go/seuss/runtimes/conformance"
)

// requireUC skips only when the machine has no /dev/kvm or the kind's root is not built.
func requireUC(t testing.TB, kind string) string {
	t.Helper()
	if _, err := os.Stat("/dev/kvm"); os.IsNotExist(err) {
		t.Skip("skipped: /dev/kvm does not exist on this machine")
	}
	roots, _ := filepath.Abs(filepath.Join("..", ".seuss", "roots"))
	k, err := runtimes.Resolve(kind)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := runtimes.LoadRoot(runtimes.RootDir(roots, k)); err != nil {
		t.Skipf("skipped: %v (make rootfs)", err)
	}
	return roots
}

func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func newExec(t testing.TB, cfg Config) *Executor {
	t.Helper()
	if cfg.RootsDir == "" {
		cfg.RootsDir = requireUC(t, "python:3.11")
	}
	if cfg.Log == nil {
		cfg.Log = testLog(t)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

const counterPy = "import json\nN = [0]\ndef main(args):\n    N[0] += 1\n    print('run', N[0])\n    return {\"n\": N[0], \"name\": args.get(\"name\")}\n"

func pyJob(name, code, rev string) *activation.Job {
	sum := sha256.Sum256([]byte(code))
	return &activation.Job{
		Key:  activation.ActionKey{Namespace: "guest", FQN: "guest/" + name, Revision: rev, CodeDigest: "sha256-" + hex.EncodeToString(sum[:])},
		Kind: "python:3.11",
		Init: activation.InitMessage{Name: name, Main: "main", Code: code, Env: map[string]string{
			// As the invoker sends them: per-activation values in the init env too.
			"__OW_ACTIVATION_ID": fmt.Sprint(time.Now().UnixNano()), "__OW_NAMESPACE": "guest"}},
		Run: activation.RunMessage{Value: json.RawMessage(`{"name":"` + name + `"}`), Namespace: "guest", ActionName: "/guest/" + name,
			ActionVersion: "0.0.1", ActivationID: "a1", TransactionID: "t1", Deadline: fmt.Sprint(time.Now().Add(time.Minute).UnixMilli())},
		Limits: activation.Limits{Timeout: 30 * time.Second, MemoryMB: 256, LogBytes: 1 << 20},
	}
}

// run runs a job and checks the path and the counter the action returns.
func run(t *testing.T, e *Executor, job *activation.Job, path activation.Path, n int) *activation.Outcome {
	t.Helper()
	out, err := e.Run(context.Background(), job)
	if err != nil {
		t.Fatalf("%s: %v", job.Key.FQN, err)
	}
	if out.Err != nil || out.RunStatus != 200 {
		t.Fatalf("%s: run status %d, err %v, init %d %s, logs %v", job.Key.FQN, out.RunStatus, out.Err, out.InitStatus, out.InitResponse, out.Logs)
	}
	var res struct{ N int }
	json.Unmarshal(out.RunResponse, &res)
	if out.Path != path || res.N != n {
		t.Fatalf("%s: path %s n %d, want path %s n %d (%s)", job.Key.FQN, out.Path, res.N, path, n, out.RunResponse)
	}
	if len(out.Logs) != 1 || out.Logs[0].Text != fmt.Sprint("run ", n) {
		t.Fatalf("%s: logs %+v", job.Key.FQN, out.Logs)
	}
	return out
}

// TestPaths walks the stack: B builds the runtime snapshot, C captures a function
// snapshot, H reuses the live UC, W restores the function snapshot with the module state
// of just after init; a restart of the executor keeps the snapshots (W again).
func TestPaths(t *testing.T) {
	dir := t.TempDir()
	e := newExec(t, Config{SnapshotDir: dir})
	a, b := pyJob("a", counterPy, "1"), pyJob("b", counterPy, "1")
	run(t, e, a, activation.PathBoot, 1)
	run(t, e, a, activation.PathHot, 2)
	run(t, e, b, activation.PathCold, 1)
	run(t, e, b, activation.PathHot, 2)
	e.WaitSnapshots()
	e.DropIdle()
	run(t, e, b, activation.PathWarm, 1)
	run(t, e, b, activation.PathHot, 2)
	// Another revision, another namespace: never the same UC or snapshot.
	b2 := pyJob("b", counterPy, "2")
	run(t, e, b2, activation.PathCold, 1)
	b3 := pyJob("b", counterPy, "1")
	b3.Key.Namespace = "other"
	run(t, e, b3, activation.PathCold, 1)
	e.WaitSnapshots()
	ents := e.Store().List()
	if len(ents) != 4 || ents[0].Type != TypeRuntime {
		t.Fatalf("store lists %+v", ents)
	}
	for _, en := range ents[1:] {
		t.Logf("function snapshot %s: %d data pages, %d zero pages, private %d KiB, shared %d KiB", en.FQN, en.DataPages, en.ZeroPages, en.PrivateBytes>>10, en.SharedBytes>>10)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	e = newExec(t, Config{SnapshotDir: dir})
	defer e.Close()
	run(t, e, b, activation.PathWarm, 1)
	run(t, e, a, activation.PathCold, 1)
	// The two idle UCs' VMs are recycled; W and C restore into them.
	e.DropIdle()
	e.WaitSnapshots()
	for i := 0; i < 2; i++ {
		run(t, e, b, activation.PathWarm, 1)
		run(t, e, a, activation.PathWarm, 1)
		e.DropIdle()
		e.WaitSnapshots()
	}
	run(t, e, pyJob("d", counterPy, "1"), activation.PathCold, 1)
	if h := e.shells.recycledHits.Load(); h < 3 {
		t.Fatalf("%d restores into recycled VMs", h)
	}
}

// TestCorruptSnapshots: damaged files and function log records are never run; the
// executor falls back (W to C, C to B) and deletes them.
func TestCorruptSnapshots(t *testing.T) {
	dir := t.TempDir()
	e := newExec(t, Config{SnapshotDir: dir})
	a, b := pyJob("a", counterPy, "1"), pyJob("b", counterPy, "1")
	run(t, e, a, activation.PathBoot, 1)
	run(t, e, b, activation.PathCold, 1)
	e.WaitSnapshots()
	e.Close()

	flip := func(p string, off int64) {
		t.Helper()
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var c [1]byte
		f.ReadAt(c[:], off)
		c[0] ^= 0x40
		if _, err := f.WriteAt(c[:], off); err != nil {
			t.Fatal(err)
		}
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "functions", "seg-*.log"))
	if len(segs) != 1 {
		t.Fatalf("function log segments %v", segs)
	}
	before, _ := os.Stat(segs[0])
	// 1. A flipped byte in the function snapshot's state (its log record, the log's only
	// one): refused at open, the segment truncated before it, C.
	flip(segs[0], 100)
	e = newExec(t, Config{SnapshotDir: dir})
	if after, err := os.Stat(segs[0]); err != nil {
		t.Fatal(err)
	} else if after.Size() >= before.Size() {
		t.Fatalf("corrupt record kept: segment of %d bytes, was %d", after.Size(), before.Size())
	}
	if ents := e.Store().List(); len(ents) != 1 || ents[0].Type != TypeRuntime {
		t.Fatalf("store lists %+v", ents)
	}
	run(t, e, b, activation.PathCold, 1)
	e.WaitSnapshots()
	e.Close()

	// 2. A flipped byte in a page of the page store: found when first restored, W falls
	// back to C.
	flip(filepath.Join(dir, "pages", "pages.dat"), 4096*3+17)
	e = newExec(t, Config{SnapshotDir: dir})
	// The damaged page may belong to either snapshot; b must not run from it.
	out, err := e.Run(context.Background(), b)
	if err != nil || out.RunStatus != 200 {
		t.Fatalf("%v %+v", err, out)
	}
	t.Logf("after a damaged page: path %s", out.Path)
	e.Close()

	// 3. A truncated runtime state file: refused, C falls back to B.
	rts, _ := filepath.Glob(filepath.Join(dir, "runtimes", "*.snap"))
	if len(rts) != 1 {
		t.Fatalf("runtime snapshots %v", rts)
	}
	st, _ := os.Stat(rts[0])
	os.Truncate(rts[0], st.Size()-10)
	e = newExec(t, Config{SnapshotDir: dir})
	run(t, e, a, activation.PathBoot, 1)
	e.WaitSnapshots()
	e.Close()

	// 4. A flipped byte in the runtime memory file: found at the first restore, C falls
	// back to B.
	mems, _ := filepath.Glob(filepath.Join(dir, "runtimes", "*.mem"))
	e = newExec(t, Config{SnapshotDir: dir})
	defer e.Close()
	f := e.Store().Runtime("python:3.11", e.mustRoot(t).Digest())
	flip(mems[0], int64(f.File.Runs[len(f.File.Runs)/2].Addr)+5)
	run(t, e, pyJob("c", counterPy, "1"), activation.PathBoot, 1)
}

func (e *Executor) mustRoot(t *testing.T) *runtimes.Root {
	k, _ := runtimes.Resolve("python:3.11")
	r, err := e.root(k)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestEviction: function snapshots beyond the byte budget are evicted, oldest first.
func TestEviction(t *testing.T) {
	e := newExec(t, Config{SnapshotDir: t.TempDir(), CacheBytes: 1})
	defer e.Close()
	run(t, e, pyJob("a", counterPy, "1"), activation.PathBoot, 1)
	for _, n := range []string{"x", "y"} {
		run(t, e, pyJob(n, counterPy, "1"), activation.PathCold, 1)
		e.WaitSnapshots()
	}
	used, budget, n := e.Store().Usage()
	if n != 0 || used > budget {
		t.Fatalf("%d snapshots, %d bytes of %d", n, used, budget)
	}
	e.DropIdle()
	run(t, e, pyJob("y", counterPy, "1"), activation.PathCold, 1)
}

// TestBudgetSharedPages: the budget counts a page shared by several function snapshots
// once, as the page store holds it.
func TestBudgetSharedPages(t *testing.T) {
	e := newExec(t, Config{SnapshotDir: t.TempDir()})
	defer e.Close()
	run(t, e, pyJob("a", counterPy, "1"), activation.PathBoot, 1)
	for _, n := range []string{"x", "y", "z"} {
		run(t, e, pyJob(n, counterPy, "1"), activation.PathCold, 1)
		e.WaitSnapshots()
	}
	used, _, n := e.Store().Usage()
	var referenced int64
	for _, en := range e.Store().List() {
		if en.Type == TypeFunction {
			referenced += en.StateBytes + en.MemoryBytes
		}
	}
	t.Logf("%d function snapshots: footprint %d KiB, %d KiB referenced", n, used>>10, referenced>>10)
	if n != 3 || used >= referenced {
		t.Fatalf("footprint %d not below the %d bytes referenced", used, referenced)
	}
}

// TestPrepare: a prepared kind's first activation takes C.
func TestPrepare(t *testing.T) {
	e := newExec(t, Config{SnapshotDir: t.TempDir()})
	defer e.Close()
	if err := e.Prepare(context.Background(), "python:3"); err != nil {
		t.Fatal(err)
	}
	if err := e.Prepare(context.Background(), "python:3.11"); err != nil {
		t.Fatal(err)
	}
	run(t, e, pyJob("a", counterPy, "1"), activation.PathCold, 1)
	if st := e.Stats(); st.Live != 1 {
		t.Fatalf("the prepared UC was kept: %+v", st)
	}
	// Prepare warmed recycled VMs: the C and every C after it land in one.
	if st := e.Stats(); st.Recycled != 1 || st.Mapped+st.Fresh != 0 {
		t.Fatalf("the first C did not take a warm recycled VM: %+v", st)
	}
	for i := 0; i < maxRecycled+2; i++ {
		run(t, e, pyJob(fmt.Sprint("n", i), counterPy, "1"), activation.PathCold, 1)
	}
	if st := e.Stats(); st.Mapped+st.Fresh != 0 {
		t.Fatalf("a C took a fresh shell: %+v", st)
	}
}

// TestRecycleFromIdle: with no recycled VM ready, a restore takes the VM of the least
// recently used idle UC (recycled, so it holds nothing of that UC) instead of a fresh
// shell, and the UC it came from is gone (its next activation is a W).
func TestRecycleFromIdle(t *testing.T) {
	e := newExec(t, Config{SnapshotDir: t.TempDir()})
	defer e.Close()
	run(t, e, pyJob("a", counterPy, "1"), activation.PathBoot, 1)
	run(t, e, pyJob("b", counterPy, "1"), activation.PathCold, 1)
	e.WaitSnapshots()
	before := e.Stats()
	run(t, e, pyJob("c", counterPy, "1"), activation.PathCold, 1)
	st := e.Stats()
	if st.Recycled != before.Recycled+1 || st.Fresh+st.Mapped != before.Fresh+before.Mapped {
		t.Fatalf("C did not take the idle UC's VM: before %+v after %+v", before, st)
	}
	// b's UC was the only restored idle one (a's was booted): b restores from its
	// function snapshot, with the module state of just after init.
	run(t, e, pyJob("b", counterPy, "1"), activation.PathWarm, 1)
	run(t, e, pyJob("a", counterPy, "1"), activation.PathHot, 2)
}

// TestBootBaseline: with snapshots off every cold start boots.
func TestBootBaseline(t *testing.T) {
	e := newExec(t, Config{NoSnapshots: true})
	defer e.Close()
	j := pyJob("a", counterPy, "1")
	run(t, e, j, activation.PathBoot, 1)
	run(t, e, j, activation.PathHot, 2)
	e.DropIdle()
	run(t, e, j, activation.PathBoot, 1)
}

func TestConformancePython(t *testing.T) {
	e := newExec(t, Config{})
	defer e.Close()
	cases, err := conformance.Load(conformance.Dir("python"))
	if err != nil {
		t.Fatal(err)
	}
	conformance.RunAll(t, e, "python:3.11", cases)
}

func TestConformanceNode(t *testing.T) {
	requireUC(t, "nodejs:20")
	e := newExec(t, Config{})
	defer e.Close()
	cases, err := conformance.Load(conformance.Dir("nodejs"))
	if err != nil {
		t.Fatal(err)
	}
	conformance.RunAll(t, e, "nodejs:20", cases)
	if p := e.Stats().Paths; p[activation.PathCold] == 0 {
		t.Fatalf("no C path taken: %v", p)
	}
}

const counterJS = "let n = 0\nfunction main(args) { n++; console.log('run ' + n); return { n: n, name: args.name } }\n"

// TestPathsNode: node (several threads: V8's workers asleep in futex waits, the main
// thread in epoll_wait) through B, C, H and W.
func TestPathsNode(t *testing.T) {
	requireUC(t, "nodejs:20")
	e := newExec(t, Config{SnapshotDir: t.TempDir()})
	defer e.Close()
	job := func(name string) *activation.Job {
		j := pyJob(name, counterJS, "1")
		j.Kind = "nodejs:20"
		return j
	}
	run(t, e, job("a"), activation.PathBoot, 1)
	run(t, e, job("b"), activation.PathCold, 1)
	run(t, e, job("b"), activation.PathHot, 2)
	e.WaitSnapshots()
	e.DropIdle()
	run(t, e, job("b"), activation.PathWarm, 1)
	run(t, e, job("b"), activation.PathHot, 2)
	for _, en := range e.Store().List() {
		t.Logf("%s %s %s: state %d B, %d data pages, %d zero pages, private %d KiB", en.Type, en.Kind, en.FQN, en.StateBytes, en.DataPages, en.ZeroPages, en.PrivateBytes>>10)
	}
	m := e.Memory()
	t.Logf("memory: %+v", m)
	if m.LiveUCs != 1 || m.LiveSharedBytes <= 0 || m.LivePrivateBytes <= 0 || m.FunctionSnapshots != 1 || m.RuntimeSnapshots != 1 {
		t.Fatalf("memory picture %+v", m)
	}
}

// TestConcurrent: parallel activations of a few actions, as the invoker sends them; every
// answer is right whatever path it took, and the budget holds.
func TestConcurrent(t *testing.T) {
	e := newExec(t, Config{SnapshotDir: t.TempDir(), MemoryBudgetMB: 4 * 256, IdleTTL: time.Minute})
	defer e.Close()
	errs := make(chan error, 64)
	for g := 0; g < 4; g++ {
		go func(g int) {
			for i := 0; i < 6; i++ {
				j := pyJob(fmt.Sprint("c", (g+i)%3), counterPy, "1")
				out, err := e.Run(context.Background(), j)
				if err == nil && (out.RunStatus != 200 || !strings.Contains(string(out.RunResponse), `"name": "c`)) {
					err = fmt.Errorf("%s: %s %v", out.Path, out.RunResponse, out.Err)
				}
				if errors.Is(err, ErrNoCapacity) {
					err = nil // four busy UCs fill the budget: the invoker would hold the message
				}
				if i%2 == 1 {
					e.DropIdle()
				}
				errs <- err
			}
		}(g)
	}
	for i := 0; i < 24; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	st := e.Stats()
	t.Logf("paths %v", st.Paths)
	if st.ReservedMB > 4*256 {
		t.Fatalf("reserved %d MB", st.ReservedMB)
	}
}

// TestConcurrentNewFunction: several activations of a new action at once each take C
// and capture the same function snapshot, the later ones replacing the earlier, while
// the others restore it by W (DropIdle after every run). A W that copied the pages of a
// snapshot being replaced read slots freed and rewritten with the replacement's pages
// and crashed (guest page fault) or ran on a mixed image: before Store.Acquire, 5 runs
// of this test in 6 failed at 100 rounds; it now has 250.
func TestConcurrentNewFunction(t *testing.T) {
	const goroutines, rounds = 6, 250
	e := newExec(t, Config{SnapshotDir: t.TempDir(), MemoryBudgetMB: goroutines * 256, IdleTTL: time.Minute})
	defer e.Close()
	run(t, e, pyJob("boot", counterPy, "1"), activation.PathBoot, 1)
	var failed atomic.Int32
	for r := 0; r < rounds && failed.Load() == 0; r++ {
		name := fmt.Sprint("n", r)
		var wg sync.WaitGroup
		for g := 0; g < goroutines; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 4; i++ {
					out, err := e.Run(context.Background(), pyJob(name, counterPy, "1"))
					if err == nil && (out.RunStatus != 200 || !strings.Contains(string(out.RunResponse), `"name": "`+name+`"`)) {
						err = fmt.Errorf("%s: %s %v", out.Path, out.RunResponse, out.Err)
					}
					if err != nil && !errors.Is(err, ErrNoCapacity) {
						failed.Add(1)
						t.Errorf("round %d: %v", r, err)
					}
					e.DropIdle()
				}
			}()
		}
		wg.Wait()
	}
	st := e.Stats()
	t.Logf("paths %v", st.Paths)
	if failed.Load() == 0 && (st.Paths[activation.PathCold] <= rounds || st.Paths[activation.PathWarm] == 0) {
		t.Fatalf("paths %v: no function captured twice, or none restored by W: the race is not exercised", st.Paths)
	}
}

func TestMetrics(t *testing.T) {
	e := newExec(t, Config{SnapshotDir: t.TempDir()})
	defer e.Close()
	run(t, e, pyJob("a", counterPy, "1"), activation.PathBoot, 1)
	run(t, e, pyJob("b", counterPy, "1"), activation.PathCold, 1)
	e.WaitSnapshots()
	reg := prometheus.NewRegistry()
	reg.MustRegister(e)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			k := mf.GetName()
			for _, l := range m.Label {
				k += "," + l.GetValue()
			}
			if m.Gauge != nil {
				got[k] = m.Gauge.GetValue()
			} else if m.Counter != nil {
				got[k] = m.Counter.GetValue()
			}
		}
	}
	if got["seuss_deployments_total,B"] != 1 || got["seuss_deployments_total,C"] != 1 || got["seuss_snapshots,function"] != 1 ||
		got["seuss_snapshots,runtime"] != 1 || got["seuss_live_uc_bytes,private"] <= 0 || got["seuss_function_snapshot_cache_bytes"] <= 0 {
		t.Fatalf("metrics %v", got)
	}
}

// TestOneCaptureAtATime: a C of an action whose function snapshot another C is still
// capturing inits its own UC but leaves the capture to the first (it would only replace
// it with the same state). The first capture is held in the Trace hook, inside the window.
func TestOneCaptureAtATime(t *testing.T) {
	e := newExec(t, Config{SnapshotDir: t.TempDir()})
	defer e.Close()
	run(t, e, pyJob("boot", counterPy, "1"), activation.PathBoot, 1)
	inCapture, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	e.cfg.Trace = func(tr RestoreTrace) {
		if tr.Path == "capture" {
			once.Do(func() { close(inCapture); <-release })
		}
	}
	first := make(chan *activation.Outcome, 1)
	go func() {
		out, err := e.Run(context.Background(), pyJob("twice", counterPy, "1"))
		if err != nil {
			t.Error(err)
		}
		first <- out
	}()
	<-inCapture
	// The first is captured but not stored: this one waits pendingWait, then takes C too.
	run(t, e, pyJob("twice", counterPy, "1"), activation.PathCold, 1)
	if n := e.Stats().DuplicateCaptures; n != 1 {
		t.Errorf("duplicate captures %d, want 1", n)
	}
	close(release)
	if out := <-first; out == nil || out.Path != activation.PathCold || out.RunStatus != 200 {
		t.Fatalf("first: %+v", out)
	}
	e.WaitSnapshots()
	e.DropIdle()
	run(t, e, pyJob("twice", counterPy, "1"), activation.PathWarm, 1)
}
