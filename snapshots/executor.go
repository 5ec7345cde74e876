package snapshots

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/runtimes"
	"github.com/seuss-go/seuss/runtimes/hotpool"
	"github.com/seuss-go/seuss/sharing"
	"github.com/seuss-go/seuss/unikernel"
)

// Config configures an Executor. The zero value works where the roots are in
// .seuss/roots.
type Config struct {
	// RootsDir holds one root per kind, built by `make rootfs` (default .seuss/roots).
	RootsDir string
	// SnapshotDir is the snapshot store (default: a temporary directory removed on
	// Close, so nothing survives a restart).
	SnapshotDir string
	// NoSnapshots is the boot baseline: every cold start boots the runtime (path B)
	// without warm-up and nothing is captured; hot instances are still reused.
	NoSnapshots bool
	// CacheBytes is the function-snapshot budget (default 1 GiB): their state files and
	// the page store's live pages, each page once however many snapshots share it; least
	// recently used snapshots are evicted past it.
	CacheBytes int64
	// IdleTTL is how long an idle hot UC is kept (default 10 minutes).
	IdleTTL time.Duration
	// MemoryBudgetMB bounds the sum of the memory limits of live UCs (default 2048,
	// OpenWhisk's user memory); idle UCs are evicted, least recently used first.
	MemoryBudgetMB int
	// Env is added to the runtime's environment at boot (baked into its snapshot).
	Env []string
	// AddressSpace is every UC's guest size (default 1 GiB): it bounds the memory limit
	// an action may have, and a runtime snapshot restores only into a shell of its size.
	AddressSpace uint64
	// Shells is how many VM shells are kept ready (default 2).
	Shells int
	// Log receives fallbacks (a corrupt snapshot, a failed capture).
	Log *slog.Logger
	// Trace, when set, receives the phases of every restore (benchmarks).
	Trace func(RestoreTrace)
	// NoRecycle closes the VM of every UC that ends. By default the VM of an idle C or W
	// UC that is evicted or expires is recycled: the runtime image is copied back into the
	// pages that differ from it, every mapping stays as it was (so the host's and the
	// hypervisor's page tables stay filled), and the VM serves the next restore of that
	// runtime snapshot (unikernel.UC.RecycleVM). W then takes 1-2 ms instead of 8-13.
	NoRecycle bool
}

// RestoreTrace is where the time of one restore went.
type RestoreTrace struct {
	Path activation.Path
	// Shell: taking a VM shell from the pool (or making one); Memory: mapping the runtime
	// memory file and applying the function diff; State: the library OS and the vCPUs
	// (the rest of RestoreOnVM); Start: starting the threads.
	Shell, Memory, State, Start time.Duration
	// Map is the part of Memory spent mapping the runtime memory file.
	Map time.Duration
	// DiffPages and DiffReads: pages copied from the page store and the reads it took.
	DiffPages, DiffReads int
	// For Path "capture" (a function snapshot taken on C, the UC paused): waiting for
	// quiescence, the state, the page scan (MemoryRuns), copying the pages.
	Quiesce, Capture, Scan, Copy time.Duration
}

// ErrNoCapacity is returned by Run when busy UCs fill the memory budget.
var ErrNoCapacity = errors.New("snapshots: memory budget exhausted by busy UCs")

// ErrClosed is returned by Run after Close.
var ErrClosed = errors.New("snapshots: executor closed")

// Executor implements activation.Executor with UCs deployed by the H, W, C or B path.
type Executor struct {
	cfg    Config
	store  *Store
	tmpDir string
	shells *shellPool
	log    *slog.Logger

	rootsMu sync.Mutex
	roots   map[string]*runtimes.Root
	kindMu  map[string]*sync.Mutex

	captures inflight
	recycles inflight
	// pending holds the function snapshots being stored, by id: a deploy of the same
	// action waits for it (briefly) and takes W instead of a second C.
	pendingMu sync.Mutex
	pending   map[string]chan struct{}

	// pool holds the live UCs, the idle ones by action, and the MB reserved for them; it
	// has its own lock, always taken last (nothing it calls takes another lock).
	pool *hotpool.Pool[activation.ActionKey, *instance]
	// aheadMu makes recycleAhead one step: seeing that no spare VM of a runtime snapshot
	// is ready or on its way, evicting an idle UC and counting its VM on its way.
	aheadMu sync.Mutex

	// mu guards paths (activations by deployment path).
	mu    sync.Mutex
	paths map[activation.Path]uint64
	// dupCaptures counts C's that skipped their capture: another of the same function
	// was being captured.
	dupCaptures int64
}

var _ activation.Executor = (*Executor)(nil)

// New opens the snapshot store and starts the VM shell pool.
func New(cfg Config) (*Executor, error) {
	if cfg.RootsDir == "" {
		cfg.RootsDir = ".seuss/roots"
	}
	if cfg.IdleTTL <= 0 {
		cfg.IdleTTL = 10 * time.Minute
	}
	if cfg.MemoryBudgetMB <= 0 {
		cfg.MemoryBudgetMB = 2048
	}
	if cfg.AddressSpace == 0 {
		cfg.AddressSpace = 1 << 30
	}
	if cfg.Shells <= 0 {
		cfg.Shells = 2
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if _, err := unikernel.HostMode(); err != nil {
		return nil, fmt.Errorf("snapshots: %w", err)
	}
	e := &Executor{cfg: cfg, log: cfg.Log, roots: map[string]*runtimes.Root{}, kindMu: map[string]*sync.Mutex{},
		paths: map[activation.Path]uint64{}, pending: map[string]chan struct{}{}}
	e.pool = hotpool.New[activation.ActionKey](hotpool.Config[*instance]{
		BudgetMB: cfg.MemoryBudgetMB, IdleTTL: cfg.IdleTTL, Expire: e.retire,
		ErrNoCapacity: ErrNoCapacity, ErrClosed: ErrClosed,
	})
	dir := cfg.SnapshotDir
	if dir == "" {
		d, err := os.MkdirTemp("", "seuss-snapshots-")
		if err != nil {
			return nil, fmt.Errorf("snapshots: %w", err)
		}
		dir, e.tmpDir = d, d
	}
	if !cfg.NoSnapshots {
		st, err := OpenStore(dir, cfg.CacheBytes, cfg.Log)
		if err != nil {
			if e.tmpDir != "" {
				os.RemoveAll(e.tmpDir)
			}
			return nil, err
		}
		e.store = st
	}
	e.shells = newShellPool(cfg.AddressSpace, cfg.Shells)
	// Recycled VMs hold host memory (their residue) until a restore takes them: it is
	// charged to the budget, where there is room (reserve drops them when it needs it).
	e.shells.charge, e.shells.uncharge = e.pool.TryReserve, e.pool.Release
	ctx, cancel := context.WithCancel(context.Background())
	e.shells.cancel = cancel
	go e.shells.run(ctx)
	return e, nil
}

// Store is the snapshot store (nil with NoSnapshots).
func (e *Executor) Store() *Store { return e.store }

// Close ends every UC, waits for snapshot writes and closes the store.
func (e *Executor) Close() error {
	if os.Getenv("SEUSS_POOL_DEBUG") != "" {
		st := e.Stats()
		fmt.Fprintf(os.Stderr, "seuss pool: paths %v recycled %d mapped %d fresh %d\n", st.Paths, st.Recycled, st.Mapped, st.Fresh)
	}
	for _, inst := range e.pool.Close() {
		inst.close()
	}
	e.captures.wait()
	e.recycles.wait()
	e.shells.close()
	var err error
	if e.store != nil {
		err = e.store.Close()
	}
	if e.tmpDir != "" {
		os.RemoveAll(e.tmpDir)
	}
	return err
}

// Stats is a snapshot of the executor's state.
type Stats struct {
	Live, Idle int
	// ReservedMB is the memory limits of live UCs (and of those being started);
	// RecycledMB what the recycled VMs waiting for a restore are charged (their residue,
	// rounded up to MB). Both count against Config.MemoryBudgetMB.
	ReservedMB, RecycledMB int
	// Paths counts activations by deployment path.
	Paths map[activation.Path]uint64
	// Restores into recycled VMs, into fresh shells mapped ahead, and into fresh shells
	// mapped on the restore path (C and W only).
	Recycled, Mapped, Fresh int64
	// Of the restores into recycled VMs: those that found one ready and those that waited
	// for one being recycled; Spares counts idle UCs recycled ahead of need.
	RecycledReady, RecycledWaited, Spares int64
	// DuplicateCaptures counts C's that left the capture to another C of the same
	// function in progress.
	DuplicateCaptures int64
}

// Stats reports the pool and the path counts.
func (e *Executor) Stats() Stats {
	// The recycled VMs' charge changes only with the shells' lock held: read together,
	// the pool's reservation and the charge add up to what the budget holds.
	e.shells.mu.Lock()
	ps := e.pool.Stats()
	recMB := e.shells.recycledMB
	e.shells.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	p := map[activation.Path]uint64{}
	for k, v := range e.paths {
		p[k] = v
	}
	return Stats{Live: ps.Live, Idle: ps.Idle, ReservedMB: ps.ReservedMB - recMB, RecycledMB: recMB, Paths: p,
		Recycled: e.shells.recycledHits.Load(), Mapped: e.shells.mappedHits.Load(), Fresh: e.shells.freshShells.Load(),
		RecycledReady: e.shells.recycledReady.Load(), RecycledWaited: e.shells.recycledWaited.Load(), Spares: e.shells.spares.Load(),
		DuplicateCaptures: e.dupCaptures}
}

// LivePrivateBytes returns, for each live UC, the bytes of guest memory it holds of its
// own (written since its restore or boot), from the host's page tables.
func (e *Executor) LivePrivateBytes() []int64 {
	var out []int64
	for _, inst := range e.pool.Live() {
		out = append(out, int64(inst.uc.Stats().PagesPrivate)*unikernel.PageSize)
	}
	return out
}

// FunctionSnapshotBytes returns each cached function snapshot's own bytes.
func (e *Executor) FunctionSnapshotBytes() []int64 {
	if e.store == nil {
		return nil
	}
	return e.store.FunctionPrivateBytes()
}

// WaitSnapshots waits until function snapshots being written are stored and idle VMs
// being recycled are back in the pool.
func (e *Executor) WaitSnapshots() {
	e.captures.wait()
	e.recycles.wait()
}

// retire ends an idle instance: its VM is recycled for its runtime snapshot when it
// was restored from one (unless Config.NoRecycle), closed otherwise.
func (e *Executor) retire(inst *instance) {
	if e.cfg.NoRecycle || inst.rt == nil {
		inst.close()
		return
	}
	e.shells.recycleStart(inst.rt)
	e.recycleVM(inst)
}

// recycleVM recycles the VM of an ended idle instance in the background, for the
// runtime snapshot it was restored from; recycleStart has been called for it.
func (e *Executor) recycleVM(inst *instance) {
	e.recycles.add()
	go func() {
		defer e.recycles.done()
		defer e.shells.recycleDone(inst.rt)
		inst.stop()
		rt := inst.rt
		vm, err := inst.uc.RecycleVM(func(g *unikernel.GuestMemory, dirty []unikernel.DirtyRange) error {
			return resetToRuntime(g, rt, dirty)
		})
		if err != nil {
			e.log.Warn("snapshots: VM not recycled", "err", err)
			inst.vm.Close()
			return
		}
		if !e.shells.putMapped(rt, vm) {
			e.log.Debug("snapshots: recycled VM closed: no room kept for it", "runtime", rt.ID, "residue_mb", residueMB(vm))
		}
	}()
}

// resetToRuntime puts the runtime image back into a recycled VM's dirty ranges by
// copying the pages that differ, changing no mapping where it can: an mmap over guest
// memory is an MMU-notifier invalidation, and under PVM it costs the next guest all its
// first-touch faults again (W 6-7 ms after remapping, 0.4-0.9 ms after copying here).
// Afterwards every page holds exactly the runtime image. Ranges the UC mapped from other
// files are mapped from the runtime memory file again (a later MADV_DONTNEED there must
// revert to the runtime image, not to that file). The copied pages stay the VM's own
// (a few MiB at most per recycled VM; maxRecycled bounds them).
func resetToRuntime(g *unikernel.GuestMemory, rt *RuntimeSnapshot, dirty []unikernel.DirtyRange) error {
	const ps = unikernel.PageSize
	for _, d := range dirty {
		if d.File {
			if err := remapToRuntime(g, rt, d.Start, d.End); err != nil {
				return err
			}
			continue
		}
		b, err := g.Bytes(d.Start, d.End-d.Start)
		if err != nil {
			return err
		}
		for a := d.Start; a < d.End; a += ps {
			want, err := rt.page(a)
			if err != nil {
				return err
			}
			have := b[a-d.Start : a-d.Start+ps]
			if !bytes.Equal(have, want) {
				copy(have, want)
			}
		}
	}
	return nil
}

// remapToRuntime maps the runtime image over [start, end): the memory file where it is
// mapped (MapRanges), fresh memory elsewhere.
func remapToRuntime(g *unikernel.GuestMemory, rt *RuntimeSnapshot, start, end uint64) error {
	a := start
	for _, m := range rt.MapRanges() {
		if m[1] <= a || m[0] >= end {
			continue
		}
		if a < m[0] {
			if err := g.Zero(a, m[0]-a); err != nil {
				return err
			}
			a = m[0]
		}
		e := min(end, m[1])
		if err := g.MapFile(a, e-a, rt.MemoryFd(), int64(a)); err != nil {
			return err
		}
		a = e
	}
	if a < end {
		return g.Zero(a, end-a)
	}
	return nil
}

// DropIdle ends every idle UC now, recycling their VMs, and returns how many there were
// (forces W next).
func (e *Executor) DropIdle() int {
	all := e.pool.DropIdle()
	for _, inst := range all {
		e.retire(inst)
	}
	// Synchronous: whoever drops idle UCs (benchmarks forcing W) wants the recycled VMs
	// back in the pool before the next activation.
	e.recycles.wait()
	return len(all)
}

func (e *Executor) root(k runtimes.Kind) (*runtimes.Root, error) {
	e.rootsMu.Lock()
	defer e.rootsMu.Unlock()
	if r := e.roots[k.Name]; r != nil {
		return r, nil
	}
	r, err := runtimes.LoadRoot(runtimes.RootDir(e.cfg.RootsDir, k))
	if err != nil {
		return nil, fmt.Errorf("snapshots: %w (build it with make rootfs)", err)
	}
	e.roots[k.Name] = r
	return r, nil
}

func (e *Executor) kindLock(name string) *sync.Mutex {
	e.rootsMu.Lock()
	defer e.rootsMu.Unlock()
	m := e.kindMu[name]
	if m == nil {
		m = &sync.Mutex{}
		e.kindMu[name] = m
	}
	return m
}

// Run implements activation.Executor.
func (e *Executor) Run(ctx context.Context, job *activation.Job) (*activation.Outcome, error) {
	kind, err := runtimes.Resolve(job.Kind)
	if err != nil {
		return nil, err
	}
	if job.Limits.Timeout <= 0 || job.Limits.MemoryMB <= 0 {
		j := *job
		if j.Limits.Timeout <= 0 {
			j.Limits.Timeout = time.Minute
		}
		if j.Limits.MemoryMB <= 0 {
			j.Limits.MemoryMB = 256
		}
		job = &j
	}
	if uint64(job.Limits.MemoryMB)<<20 > e.cfg.AddressSpace-16<<20 {
		return nil, fmt.Errorf("snapshots: memory limit %d MB does not fit the %d MiB guest", job.Limits.MemoryMB, e.cfg.AddressSpace>>20)
	}
	timeout := job.Limits.Timeout
	out := &activation.Outcome{Path: activation.PathHot}
	inst := e.takeIdle(job, kind)
	if inst == nil {
		if err := e.reserve(job.Limits.MemoryMB); err != nil {
			return nil, err
		}
		var path activation.Path
		inst, path, err = e.deploy(ctx, kind, job)
		if err != nil {
			e.pool.Release(job.Limits.MemoryMB)
			return nil, err
		}
		out.Path = path
		e.pool.Add(inst, job.Key, job.Limits.MemoryMB)
	}
	e.mu.Lock()
	e.paths[out.Path]++
	e.mu.Unlock()
	inst.logs.Begin(job.Limits.LogBytes)

	if out.Path == activation.PathCold || out.Path == activation.PathBoot {
		line, err := runtimes.EncodeInit(&job.Init)
		if err != nil {
			e.discard(inst)
			return nil, fmt.Errorf("snapshots: encode init: %w", err)
		}
		out.InitStart = time.Now()
		ans, err := inst.request(ctx, line, out.InitStart.Add(timeout))
		out.InitEnd = time.Now()
		if err != nil {
			out.Err = e.fail(inst, err, activation.ErrInitTimeout, activation.ErrInitExited)
			out.Logs, out.LogsTruncated = inst.logs.Take()
			return out, nil
		}
		out.InitStatus, out.InitResponse, err = runtimes.DecodeReply(ans)
		if err != nil {
			e.discard(inst)
			return nil, fmt.Errorf("snapshots: init %s: %w", kind.Name, err)
		}
		if out.InitStatus != 200 {
			e.discard(inst)
			inst.logs.Wait(time.Now().Add(time.Second))
			out.Logs, out.LogsTruncated = inst.logs.Take()
			return out, nil
		}
		if out.Path == activation.PathCold && inst.parent != nil {
			e.captureFunction(ctx, inst, job, line)
		}
	}

	line, err := runtimes.EncodeRun(&job.Run)
	if err != nil {
		e.discard(inst)
		return nil, fmt.Errorf("snapshots: encode run: %w", err)
	}
	out.RunStart = time.Now()
	deadline := out.RunStart.Add(timeout)
	ans, err := inst.request(ctx, line, deadline)
	out.RunEnd = time.Now()
	if err != nil {
		out.Err = e.fail(inst, err, activation.ErrRunTimeout, activation.ErrRunExited)
		out.Logs, out.LogsTruncated = inst.logs.Take()
		return out, nil
	}
	out.RunStatus, out.RunResponse, err = runtimes.DecodeReply(ans)
	if err != nil {
		e.discard(inst)
		return nil, fmt.Errorf("snapshots: run %s: %w", kind.Name, err)
	}
	complete := inst.logs.Wait(earliest(deadline, time.Now().Add(logGrace)))
	out.Logs, out.LogsTruncated = inst.logs.Take()
	if out.RunStatus == 200 && complete && inst.replies.ok() {
		e.park(inst)
	} else {
		e.discard(inst)
	}
	return out, nil
}

const logGrace = 5 * time.Second

// pendingWait bounds how long a deploy waits for its action's function snapshot to be
// stored (a few milliseconds) before taking C itself.
const pendingWait = 100 * time.Millisecond

// captureWait bounds the wait for a C instance to become quiescent after its init.
const captureWait = 2 * time.Second

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// deploy provides a started instance for a job that has no hot one: W from its function
// snapshot, else C from the kind's runtime snapshot, else B (booting, and capturing the
// runtime snapshot on the way). A snapshot that fails to restore is logged, deleted if
// corrupt or mismatched, and the next path is tried.
func (e *Executor) deploy(ctx context.Context, kind runtimes.Kind, job *activation.Job) (*instance, activation.Path, error) {
	root, err := e.root(kind)
	if err != nil {
		return nil, "", err
	}
	if e.store == nil {
		inst, err := e.boot(ctx, kind, root, job, false)
		return inst, activation.PathBoot, err
	}
	idig := initDigest(&job.Init)
	fid := FunctionID(kind.Name, root.Digest(), job.Key.Namespace, job.Key.FQN, job.Key.Revision, job.Key.CodeDigest, idig)
	// Acquired: its pages stay in the page store while the restore reads them, whatever
	// happens to the snapshot meanwhile (released once they are copied in).
	f := e.store.Acquire(fid)
	if f == nil {
		e.pendingMu.Lock()
		ch := e.pending[fid]
		e.pendingMu.Unlock()
		if ch != nil {
			t := time.NewTimer(pendingWait)
			select {
			case <-ch:
				f = e.store.Acquire(fid)
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
		}
	}
	if f != nil {
		rt := e.store.Runtime(kind.Name, root.Digest())
		if rt == nil || rt.ID != f.File.Header.ParentID || rt.File.Digest != f.File.Header.ParentDigest {
			e.store.Release(f)
			e.log.Warn("snapshots: function snapshot without its runtime snapshot; deleting it", "id", fid, "action", job.Key.FQN)
			e.store.RemoveFunction(fid)
		} else if inst, err := e.restore(kind, root, job, rt, f); err == nil {
			e.store.Release(f)
			return inst, activation.PathWarm, nil
		} else {
			e.store.Release(f)
			e.log.Warn("snapshots: function snapshot not restored; falling back to the runtime snapshot", "id", fid, "action", job.Key.FQN, "err", err)
			if errors.Is(err, ErrCorruptSnapshot) || errors.Is(err, unikernel.ErrBadState) {
				e.store.RemoveFunction(fid)
			}
		}
	}
	for attempt := 0; attempt < 2; attempt++ {
		rt := e.store.Runtime(kind.Name, root.Digest())
		if rt == nil {
			lock := e.kindLock(kind.Name)
			lock.Lock()
			rt = e.store.Runtime(kind.Name, root.Digest())
			if rt == nil {
				// B: one booter per kind captures the runtime snapshot; the others wait here
				// and then take C.
				inst, err := e.boot(ctx, kind, root, job, true)
				lock.Unlock()
				return inst, activation.PathBoot, err
			}
			lock.Unlock()
		}
		inst, err := e.restore(kind, root, job, rt, nil)
		if err == nil {
			inst.fid, inst.initDigest = fid, idig // for its capture
			return inst, activation.PathCold, nil
		}
		e.log.Warn("snapshots: runtime snapshot not restored; falling back to boot", "id", rt.ID, "err", err)
		if !errors.Is(err, ErrCorruptSnapshot) && !errors.Is(err, unikernel.ErrBadState) {
			inst, err := e.boot(ctx, kind, root, job, false)
			return inst, activation.PathBoot, err
		}
		e.store.RemoveRuntime(rt.ID)
		e.shells.forget(rt)
	}
	return nil, "", fmt.Errorf("snapshots: no runtime snapshot of %s could be made", kind.Name)
}

// perActivation are init-env values that differ for every activation: left out of the
// function snapshot's key (the run message sets them again for each run), or no action
// would ever be deployed by W.
var perActivation = []string{"__OW_ACTIVATION_ID", "__OW_TRANSACTION_ID", "__OW_DEADLINE"}

func initDigest(m *activation.InitMessage) string {
	c := *m
	c.Env = make(map[string]string, len(m.Env))
	for k, v := range m.Env {
		c.Env[k] = v
	}
	for _, k := range perActivation {
		delete(c.Env, k)
	}
	b, _ := json.Marshal(&c)
	s := sha256.Sum256(b)
	return "sha256-" + hex.EncodeToString(s[:])
}

// boot starts the launcher in a fresh UC (path B). With capture, it first runs the
// warm-up activation and captures the kind's runtime snapshot (the anticipatory
// optimisation: every later C starts from warmed runtime paths); a failed capture is
// logged and the booted instance serves the job anyway.
func (e *Executor) boot(ctx context.Context, kind runtimes.Kind, root *runtimes.Root, job *activation.Job, capture bool) (*instance, error) {
	vm, err := e.shells.get()
	if err != nil {
		return nil, fmt.Errorf("snapshots: boot %s: %w", kind.Name, err)
	}
	inst := newInstance(kind, job.Key, job.Limits.MemoryMB)
	inst.vm = vm
	cfg := inst.config(root.Dir, job.Limits.MemoryMB)
	cfg.Env = append(append([]string(nil), runtimes.Env...), e.cfg.Env...)
	uc, err := unikernel.NewOnVM(vm, cfg)
	if err != nil {
		vm.Close()
		return nil, fmt.Errorf("snapshots: boot %s: %w", kind.Name, err)
	}
	inst.uc = uc
	if err := uc.Load(kind.Argv()); err != nil {
		inst.close()
		return nil, fmt.Errorf("snapshots: boot %s: %w", kind.Name, err)
	}
	if err := inst.start(); err != nil {
		inst.close()
		return nil, fmt.Errorf("snapshots: boot %s: %w", kind.Name, err)
	}
	if capture {
		if err := e.captureRuntime(ctx, inst, kind, root, time.Now().Add(job.Limits.Timeout)); err != nil {
			e.log.Warn("snapshots: runtime snapshot not captured", "kind", kind.Name, "err", err)
			select {
			case <-inst.exited:
				inst.close()
				return nil, fmt.Errorf("snapshots: boot %s: %w", kind.Name, err)
			default:
			}
		}
	}
	return inst, nil
}

func (e *Executor) captureRuntime(ctx context.Context, inst *instance, kind runtimes.Kind, root *runtimes.Root, deadline time.Time) error {
	ans, err := inst.request(ctx, runtimes.WarmupInit(kind), deadline)
	if err != nil {
		return fmt.Errorf("warm-up init: %w", err)
	}
	if st, _, err := runtimes.DecodeReply(ans); err != nil || st != 200 {
		return fmt.Errorf("warm-up init answered %q", ans)
	}
	if ans, err = inst.request(ctx, runtimes.WarmupRun, deadline); err != nil {
		return fmt.Errorf("warm-up run: %w", err)
	}
	if st, _, err := runtimes.DecodeReply(ans); err != nil || st != 200 {
		return fmt.Errorf("warm-up run answered %q", ans)
	}
	if !inst.logs.Wait(deadline) {
		return errors.New("warm-up: no sentinels")
	}
	inst.logs.Drop()
	qctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	if err := inst.uc.WaitQuiescent(qctx); err != nil {
		return err
	}
	defer inst.uc.Resume()
	st, err := inst.uc.Capture()
	if err != nil {
		return err
	}
	runs, err := inst.uc.MemoryRuns(true)
	if err != nil {
		return err
	}
	_, err = e.store.PutRuntime(Header{Kind: kind.Name, RootDigest: root.Digest()}, st, runs, inst.uc.Memory())
	return err
}

// capturePages holds the buffers a function snapshot's pages are copied into while its
// UC is paused (a few hundred KiB to a few MiB), until they are stored.
var capturePages = sync.Pool{New: func() any { return new([]byte) }}

// captureFunction captures a C instance after its init answered 200 and before its run:
// the state and the pages that differ from the runtime snapshot are copied while the UC
// is paused; the page store and the file are written in the background. A failure is
// logged and the activation goes on.
func (e *Executor) captureFunction(ctx context.Context, inst *instance, job *activation.Job, initLine []byte) {
	// Its id and init digest were computed by deploy (initDigest encodes and hashes the
	// whole init message: the action's code).
	h := Header{ID: inst.fid, Namespace: job.Key.Namespace, FQN: job.Key.FQN,
		Revision: job.Key.Revision, CodeDigest: job.Key.CodeDigest, InitDigest: inst.initDigest}
	// One capture per function at a time: C's of a new action that arrive together each
	// init their own UC, but only the first captures; the others' snapshots would replace
	// it with the same state (each capture costs its UC a pause and the store ~1-2 ms of
	// CPU). Deploys meanwhile wait on done for the first one's snapshot (pendingWait).
	done := make(chan struct{})
	e.pendingMu.Lock()
	if e.pending[h.ID] != nil {
		e.pendingMu.Unlock()
		e.mu.Lock()
		e.dupCaptures++
		e.mu.Unlock()
		return
	}
	e.pending[h.ID] = done
	e.pendingMu.Unlock()
	stored := false
	defer func() {
		if !stored {
			e.pendingMu.Lock()
			if e.pending[h.ID] == done {
				delete(e.pending, h.ID)
			}
			e.pendingMu.Unlock()
			close(done)
		}
	}()
	// The launcher is back in read(0) within about a millisecond of its answer; a guest
	// that is not (a thread busy, or asleep in a call that cannot be restarted) costs the
	// activation at most this long and goes without a function snapshot.
	qctx, cancel := context.WithTimeout(ctx, captureWait)
	defer cancel()
	t0 := time.Now()
	if err := inst.uc.WaitQuiescent(qctx); err != nil {
		e.log.Warn("snapshots: function snapshot not captured", "action", job.Key.FQN, "err", err)
		return
	}
	t1 := time.Now()
	st, err := inst.uc.Capture()
	t2 := time.Now()
	var runs []unikernel.PageRun
	if err == nil {
		runs, err = inst.uc.MemoryRuns(false)
	}
	t3 := time.Now()
	var pending []PendingRun
	var buf *[]byte
	if err == nil {
		// One pooled buffer for all the pages: a fresh allocation per run (bytes.Clone)
		// cost every C path first-touch faults on new heap memory and the collector's work.
		var n uint64
		for _, r := range runs {
			if !r.Zero {
				n += r.Pages * unikernel.PageSize
			}
		}
		buf = capturePages.Get().(*[]byte)
		if uint64(cap(*buf)) < n {
			*buf = make([]byte, n)
		}
		b := (*buf)[:n]
		mem := inst.uc.Memory()
		for _, r := range runs {
			p := PendingRun{PageRun: r}
			if !r.Zero {
				k := r.Pages * unikernel.PageSize
				p.Data = b[:k:k]
				copy(p.Data, mem[r.Addr:r.Addr+k])
				b = b[k:]
			}
			pending = append(pending, p)
		}
	}
	inst.uc.Resume()
	if err != nil {
		e.log.Warn("snapshots: function snapshot not captured", "action", job.Key.FQN, "err", err)
		return
	}
	if e.cfg.Trace != nil {
		e.cfg.Trace(RestoreTrace{Path: "capture", Quiesce: t1.Sub(t0), Capture: t2.Sub(t1), Scan: t3.Sub(t2), Copy: time.Since(t3)})
	}
	parent := inst.parent
	stored = true // the goroutine below ends the pending capture
	e.captures.add()
	go func() {
		defer e.captures.done()
		if _, err := e.store.PutFunction(h, parent, st, pending); err != nil {
			e.log.Warn("snapshots: function snapshot not stored", "action", job.Key.FQN, "err", err)
		}
		// PutFunction keeps none of the pages (the page store has written them).
		capturePages.Put(buf)
		e.pendingMu.Lock()
		if e.pending[h.ID] == done {
			delete(e.pending, h.ID)
		}
		e.pendingMu.Unlock()
		close(done)
	}()
}

// restore builds an instance from the runtime snapshot rt (C) or from the function
// snapshot f over it (W): the runtime memory file mapped MAP_PRIVATE into the guest, then
// the function's zero runs mapped fresh and its pages read from the page store.
func (e *Executor) restore(kind runtimes.Kind, root *runtimes.Root, job *activation.Job, rt *RuntimeSnapshot, f *FunctionSnapshot) (*instance, error) {
	if err := rt.VerifyMemory(); err != nil {
		return nil, err
	}
	st := rt.File.State
	if f != nil {
		if err := e.store.VerifyPages(f); err != nil {
			return nil, err
		}
		st = f.File.State
	}
	e.shells.want(len(st.VCPU))
	t0 := time.Now()
	if !e.cfg.NoRecycle {
		// A recycled VM runs the restored UC's first run in 0.3-1 ms where a fresh shell
		// takes 7-9 ms of first-touch faults (and costs a fresh shell's preparation): when
		// none is ready and none is on its way, the least recently used idle UC of this
		// runtime snapshot gives its VM (a W into a recycled VM costs about what H does).
		if e.shells.recyclingCount(rt) == 0 {
			e.shells.mu.Lock()
			none := len(e.shells.recycled[rt]) == 0
			e.shells.mu.Unlock()
			if none {
				e.evictIdleOf(rt)
			}
		}
		if vm, ok := e.shells.takeRecycled(rt, recycleWait); ok {
			inst, err := e.restoreOnVM(vm, true, time.Since(t0), kind, root, job, rt, f)
			if f == nil {
				e.recycleAhead(rt)
			}
			return inst, err
		}
	}
	vm, mapped, err := e.shells.getMapped(rt)
	if err != nil {
		return nil, err
	}
	inst, err := e.restoreOnVM(vm, mapped, time.Since(t0), kind, root, job, rt, f)
	if f == nil {
		e.recycleAhead(rt)
	}
	return inst, err
}

// keepIdle is how many idle UCs of a runtime snapshot, the most recently used, are never
// recycled ahead (recycleAhead): an action run again and again stays hot (H).
const keepIdle = 1

// recycleAhead keeps one recycled VM of rt ready for the next C: when none is ready or
// on its way, it recycles the least recently used idle UC of rt in the background, as the
// next C would otherwise do on its critical path (evictIdleOf, then 0.4-1 ms waiting for
// the copy). Only a C calls it (its restore, and its UC parking): it takes one idle UC
// per new function, as that C's successor would, one C earlier; a workload of repeats
// (H) or of W restores evicts nothing ahead, so it cannot set off a chain of evictions
// through a cycle of actions. The spare is one VM per runtime snapshot outside the
// memory budget, as the VMs recycled after an eviction are.
func (e *Executor) recycleAhead(rt *RuntimeSnapshot) {
	if e.cfg.NoRecycle || rt == nil {
		return
	}
	e.aheadMu.Lock()
	if !e.shells.spareWanted(rt) {
		e.aheadMu.Unlock()
		return
	}
	// None after Close (the pool is empty and refuses).
	victim, ok := e.pool.EvictOldest(func(inst *instance) bool { return inst.rt == rt }, keepIdle)
	if !ok {
		e.aheadMu.Unlock()
		return
	}
	// Counted on its way while aheadMu is held: a concurrent recycleAhead sees it.
	e.shells.recycleStart(rt)
	e.aheadMu.Unlock()
	e.shells.spares.Add(1)
	e.recycleVM(victim)
}

// recycleWait bounds how long a restore waits for a VM being recycled (a few hundred
// microseconds to a few milliseconds) before taking a fresh shell.
const recycleWait = 20 * time.Millisecond

// evictIdleOf ends the least recently used idle UC restored from rt, recycling its VM;
// false when there is none.
func (e *Executor) evictIdleOf(rt *RuntimeSnapshot) bool {
	victim, ok := e.pool.EvictOldest(func(inst *instance) bool { return inst.rt == rt }, 0)
	if !ok {
		return false
	}
	e.retire(victim)
	return true
}

// restoreOn is restore into the given VM (mapped: rt's memory is mapped there already).
func (e *Executor) restoreOn(vm *unikernel.VM, mapped bool, kind runtimes.Kind, root *runtimes.Root, job *activation.Job, rt *RuntimeSnapshot, f *FunctionSnapshot) (*instance, error) {
	if err := rt.VerifyMemory(); err != nil {
		vm.Close()
		return nil, err
	}
	return e.restoreOnVM(vm, mapped, 0, kind, root, job, rt, f)
}

func (e *Executor) restoreOnVM(vm *unikernel.VM, mapped bool, shell time.Duration, kind runtimes.Kind, root *runtimes.Root, job *activation.Job, rt *RuntimeSnapshot, f *FunctionSnapshot) (*instance, error) {
	st := rt.File.State
	if f != nil {
		st = f.File.State
	}
	var tr RestoreTrace
	tr.Shell = shell
	t1 := time.Now()
	inst := newInstance(kind, job.Key, job.Limits.MemoryMB)
	inst.vm = vm
	pages := e.store.Pages()
	uc, err := unikernel.RestoreOnVM(vm, inst.config(root.Dir, job.Limits.MemoryMB), st, func(g *unikernel.GuestMemory) error {
		defer func() { tr.Memory = time.Since(t1) }()
		if !mapped {
			if err := mapRuntime(g, rt); err != nil {
				return err
			}
		}
		tr.Map = time.Since(t1)
		if f == nil {
			return nil
		}
		for _, r := range f.File.Runs {
			n := uint64(r.Pages) * unikernel.PageSize
			if r.Zero {
				// Clear what is not zero already rather than mapping fresh memory: no mapping
				// changes, so a recycled VM keeps its page tables (untouched pages read as
				// the zero page or the runtime file's page, and stay mapped).
				b, err := g.Bytes(r.Addr, n)
				if err != nil {
					return err
				}
				for i := uint64(0); i < n; i += unikernel.PageSize {
					if p := b[i : i+unikernel.PageSize]; !allZero(p) {
						clear(p)
					}
				}
				continue
			}
			dst, err := g.Bytes(r.Addr, n)
			if err != nil {
				return err
			}
			if err := pages.Copy(dst, r.Slots); err != nil {
				return err
			}
			tr.DiffPages += len(r.Slots)
			tr.DiffReads++
		}
		return nil
	})
	if err != nil {
		vm.Close()
		return nil, err
	}
	t2 := time.Now()
	tr.State = t2.Sub(t1) - tr.Memory
	inst.uc = uc
	if f == nil {
		inst.parent = rt
	}
	inst.fsnap = f
	inst.rt = rt
	if err := inst.start(); err != nil {
		inst.close()
		return nil, err
	}
	tr.Start = time.Since(t2)
	if e.cfg.Trace != nil {
		tr.Path = activation.PathCold
		if f != nil {
			tr.Path = activation.PathWarm
		}
		e.cfg.Trace(tr)
	}
	rt.mu.Lock()
	rt.Hits++
	rt.mu.Unlock()
	return inst, nil
}

// --- the hot pool (hotpool.Pool; the executor ends what it lets go of) ---

func (e *Executor) takeIdle(job *activation.Job, kind runtimes.Kind) *instance {
	inst, _ := e.pool.TakeIdle(job.Key, func(inst *instance) bool {
		return inst.kind.Name == kind.Name && inst.memMB == job.Limits.MemoryMB
	})
	return inst
}

// reserve reserves memMB for a new UC. Room is made first by evicting idle UCs (least
// recently used first, Pool.Reserve), then, when busy UCs and recycled VMs still fill
// the budget, by closing recycled VMs, least recently recycled first. Idle UCs go
// first: an evicted idle UC frees its whole memory limit and its VM is recycled for its
// runtime snapshot, charged only its residue (a few MB for python, tens for node,
// against a limit of 256 MB by default), so its action's next activation (W into a
// recycled VM) costs about what H did; a recycled VM dropped frees only its residue,
// and every C and W of its runtime snapshot pays 7-9 ms of first-touch faults in a
// fresh shell while none is left.
func (e *Executor) reserve(memMB int) error {
	// Victims are out of the pool even when no room was made: they are ended all the
	// same (their memory is no longer counted).
	evict, err := e.pool.Reserve(memMB)
	for _, v := range evict {
		e.retire(v)
	}
	if !errors.Is(err, ErrNoCapacity) {
		return err
	}
	// With the shells' lock held, the VMs recycled from the victims above (in the
	// background) cannot take back the room freed here before it is reserved.
	var drop []*unikernel.VM
	e.shells.mu.Lock()
	if e.pool.Stats().ReservedMB-e.shells.recycledMB+memMB > e.cfg.MemoryBudgetMB {
		// Busy UCs alone leave no room: the recycled VMs stay.
		e.shells.mu.Unlock()
		return err
	}
	ok := e.pool.TryReserve(memMB)
	for !ok {
		vm := e.shells.dropOldestLocked()
		if vm == nil {
			break
		}
		drop = append(drop, vm)
		ok = e.pool.TryReserve(memMB)
	}
	e.shells.mu.Unlock()
	for _, vm := range drop {
		vm.Close()
	}
	if len(drop) > 0 {
		e.log.Debug("snapshots: recycled VMs closed to make room", "n", len(drop), "reserved", ok)
	}
	if !ok {
		return err
	}
	return nil
}

func (e *Executor) park(inst *instance) {
	ok, first := e.pool.Park(inst)
	if !ok {
		go inst.close()
		return
	}
	if first && inst.parent != nil {
		// A C instance parks after its first activation: its restore may have found no
		// idle UC to recycle ahead. Later parks (H) never recycle ahead.
		e.recycleAhead(inst.parent)
	}
}

func (e *Executor) discard(inst *instance) {
	e.pool.Remove(inst)
	inst.close()
}

// exitMemory is the python launcher's exit status after a MemoryError.
const exitMemory = 86

// fail ends an instance whose request failed and says why, as an Outcome.Err.
func (e *Executor) fail(inst *instance, err, timeoutErr, exitErr error) error {
	if errors.Is(err, errTimeout) {
		inst.flushLogs() // its logs so far, before it dies with them
	}
	e.discard(inst)
	<-inst.exited
	switch {
	case errors.Is(err, errTimeout):
		return timeoutErr
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	res := inst.result
	if inst.kind.Language() == "python" && res.Status == exitMemory && res.Err == nil || inst.logs.SawHeapOOM() {
		return fmt.Errorf("%w: the action exceeded its memory limit of %d MB", activation.ErrMemoryLimit, inst.memMB)
	}
	if res.Err != nil {
		return fmt.Errorf("%w: %v", exitErr, res.Err)
	}
	return fmt.Errorf("%w: exit status %d", exitErr, res.Status)
}

// Memory is the sharing picture, for /metrics and reports: what cached snapshots hold
// (from the page store's reference counts) and what live UCs use (the kernel's smaps
// over their guest memory).
type Memory struct {
	RuntimeSnapshots, FunctionSnapshots int
	// FunctionSnapshotBytes is what the cache's budget counts; FunctionPrivateBytes and
	// FunctionSharedBytes split the function snapshots' pages and state files into what
	// one snapshot holds alone and what several share.
	FunctionSnapshotBytes, FunctionPrivateBytes, FunctionSharedBytes int64
	PageStoreLivePages                                               uint64
	// LiveUCs, and their resident guest memory as the kernel counts it (smaps): shared
	// (file pages: the runtime snapshot's, one copy for every UC of the kind) and private
	// (anonymous: written since restore or boot).
	LiveUCs                           int
	LiveSharedBytes, LivePrivateBytes int64
}

// Memory reports the sharing picture now (it reads /proc/self/smaps: not for hot paths).
func (e *Executor) Memory() Memory {
	var m Memory
	if e.store != nil {
		for _, en := range e.store.List() {
			switch en.Type {
			case TypeRuntime:
				m.RuntimeSnapshots++
			case TypeFunction:
				m.FunctionSnapshots++
				m.FunctionPrivateBytes += en.PrivateBytes
				m.FunctionSharedBytes += en.SharedBytes
			}
		}
		m.FunctionSnapshotBytes, _, _ = e.store.Usage()
		m.PageStoreLivePages = e.store.Pages().Stats().Live
	}
	var ranges [][2]uintptr
	for _, inst := range e.pool.Live() {
		lo, hi := inst.uc.HostRange()
		ranges = append(ranges, [2]uintptr{lo, hi})
	}
	m.LiveUCs = len(ranges)
	if us, err := sharing.RangesUsage(ranges); err == nil {
		for _, u := range us {
			m.LiveSharedBytes += u.Shareable()
			m.LivePrivateBytes += u.Own()
		}
	}
	return m
}

// Prepare makes sure the kind's runtime snapshot exists, booting and capturing it if
// needed (what the first B would do), so that the first activation of the kind takes C.
func (e *Executor) Prepare(ctx context.Context, kindName string) error {
	if e.store == nil {
		return nil
	}
	// Counted before looking: a Close that has not yet closed the pool waits for it.
	e.captures.add()
	defer e.captures.done()
	if e.pool.Closed() {
		return ErrClosed
	}
	kind, err := runtimes.Resolve(kindName)
	if err != nil {
		return err
	}
	root, err := e.root(kind)
	if err != nil {
		return err
	}
	lock := e.kindLock(kind.Name)
	lock.Lock()
	defer lock.Unlock()
	job := &activation.Job{Kind: kind.Name, Limits: activation.Limits{Timeout: time.Minute, MemoryMB: 256}}
	rt := e.store.Runtime(kind.Name, root.Digest())
	if rt == nil {
		inst, err := e.boot(ctx, kind, root, job, true)
		if err != nil {
			return err
		}
		inst.close()
		if rt = e.store.Runtime(kind.Name, root.Digest()); rt == nil {
			return fmt.Errorf("snapshots: prepare %s: no runtime snapshot captured", kind.Name)
		}
	}
	if !e.cfg.NoRecycle {
		e.warmVMs(ctx, kind, root, job, rt)
	}
	return nil
}

// warmVMs fills the recycled VMs of rt up to maxRecycled with VMs whose hypervisor page
// tables are warm: a restore of the runtime snapshot into a fresh shell, its warm-up
// init and run (the pages a C touches), then recycled by copy. Without them the first
// C and W paths after a start restore into fresh shells and pay PVM's first-touch faults
// (7-9 ms each here, 35-70 ms through the invoker while the pool fills); with them every
// C and W lands in a VM that runs its first run in 0.3-1 ms. Best effort: a failure
// leaves fewer warm VMs.
func (e *Executor) warmVMs(ctx context.Context, kind runtimes.Kind, root *runtimes.Root, job *activation.Job, rt *RuntimeSnapshot) {
	e.shells.track(rt)
	n := maxRecycled - e.shells.recycledCount(rt)
	var insts []*instance
	for i := 0; i < n; i++ {
		// Fresh shells, not the recycled ones being made: each restore needs its own VM.
		e.shells.want(len(rt.File.State.VCPU))
		vm, err := newShell(e.cfg.AddressSpace, int(e.shells.vcpus.Load()))
		if err != nil {
			e.log.Warn("snapshots: VM not warmed", "kind", kind.Name, "err", err)
			break
		}
		inst, err := e.restoreOn(vm, false, kind, root, job, rt, nil)
		if err != nil {
			e.log.Warn("snapshots: VM not warmed", "kind", kind.Name, "err", err)
			break
		}
		insts = append(insts, inst)
	}
	deadline := time.Now().Add(job.Limits.Timeout)
	for _, inst := range insts {
		ok := false
		if ans, err := inst.request(ctx, runtimes.WarmupInit(kind), deadline); err == nil {
			if st, _, err := runtimes.DecodeReply(ans); err == nil && st == 200 {
				if ans, err = inst.request(ctx, runtimes.WarmupRun, deadline); err == nil {
					st, _, err = runtimes.DecodeReply(ans)
					ok = err == nil && st == 200 && inst.logs.Wait(deadline)
				}
			}
		}
		if !ok {
			e.log.Warn("snapshots: VM not warmed", "kind", kind.Name)
			inst.close()
			continue
		}
		inst.logs.Drop()
		e.retire(inst)
	}
	e.recycles.wait()
}

func allZero(p []byte) bool {
	for _, c := range p {
		if c != 0 {
			return false
		}
	}
	return true
}
