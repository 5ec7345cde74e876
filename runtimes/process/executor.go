package process

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/runtimes"
	"github.com/seuss-go/seuss/runtimes/hotpool"
)

// Config configures an Executor. The zero value is usable.
type Config struct {
	// IdleTTL is how long an idle instance is kept for its action (default 10 minutes,
	// OpenWhisk's idle container timeout).
	IdleTTL time.Duration
	// MemoryBudgetMB bounds the sum of MemoryMB over live instances (default 2048,
	// OpenWhisk's default user memory). Idle instances are evicted, least recently used
	// first, to make room; when busy ones alone fill it, Run returns ErrNoCapacity.
	MemoryBudgetMB int
	// Env is added to every launcher's environment, e.g. "__OW_API_HOST=https://…".
	Env []string
	// TempDir holds the launchers and each instance's directory (default os.TempDir()).
	TempDir string
	// Warmup runs the launchers' warm-up activation in every new instance before its
	// init, as runtime snapshots do (it costs one more round trip per cold start).
	Warmup bool
	// NoCgroup disables cgroup v2 memory limits even where they are available.
	NoCgroup bool
	// UID and GID, when UID is not 0, are the user the launchers run as (e.g. 65534,
	// nobody): actions then cannot touch the invoker's files. Default: the invoker's.
	UID, GID uint32
}

// ErrNoCapacity is returned by Run when busy instances fill the memory budget.
var ErrNoCapacity = errors.New("process: memory budget exhausted by busy instances")

// ErrClosed is returned by Run after Close.
var ErrClosed = errors.New("process: executor closed")

// Executor implements activation.Executor with host processes.
type Executor struct {
	cfg       Config
	dir       string            // launchers are written here
	launchers map[string]string // kind name → launcher path on the host
	cg        *cgroupV2         // nil: rlimit fallback
	cgReason  string            // why cg is nil

	// pool holds the live instances, the idle ones by action, and the MB reserved for
	// them; it has its own lock.
	pool *hotpool.Pool[activation.ActionKey, *instance]
}

var _ activation.Executor = (*Executor)(nil)

// New prepares an executor: writes the launchers and sets up cgroups if it can.
func New(cfg Config) (*Executor, error) {
	if cfg.IdleTTL <= 0 {
		cfg.IdleTTL = 10 * time.Minute
	}
	if cfg.MemoryBudgetMB <= 0 {
		cfg.MemoryBudgetMB = 2048
	}
	if cfg.TempDir == "" {
		cfg.TempDir = os.TempDir()
	}
	dir, err := os.MkdirTemp(cfg.TempDir, "seuss-launchers-")
	if err == nil {
		err = os.Chmod(dir, 0o755) // readable by Config.UID
	}
	if err != nil {
		return nil, fmt.Errorf("process: new: %w", err)
	}
	e := &Executor{cfg: cfg, dir: dir, launchers: map[string]string{}}
	e.pool = hotpool.New[activation.ActionKey](hotpool.Config[*instance]{
		BudgetMB: cfg.MemoryBudgetMB, IdleTTL: cfg.IdleTTL, Expire: (*instance).kill,
		ErrNoCapacity: ErrNoCapacity, ErrClosed: ErrClosed,
	})
	for _, k := range runtimes.Kinds() {
		p := filepath.Join(dir, k.Language()+"-"+k.LauncherName)
		if err := os.WriteFile(p, k.LauncherSource(), 0o444); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("process: new: write launcher: %w", err)
		}
		e.launchers[k.Name] = p
	}
	if cfg.NoCgroup {
		e.cgReason = "disabled by configuration"
	} else if cg, err := setupCgroup(); err != nil {
		e.cgReason = err.Error()
	} else {
		e.cg = cg
	}
	return e, nil
}

// MemoryLimitMechanism says how memory limits are enforced, for logs and reports.
func (e *Executor) MemoryLimitMechanism() string {
	if e.cg != nil {
		return "cgroup v2 memory.max under " + e.cg.dir
	}
	return "rlimit fallback (python: RLIMIT_AS; node: --max-old-space-size, heap only): no cgroup v2 (" + e.cgReason + ")"
}

// Close kills every instance and removes the executor's files.
func (e *Executor) Close() error {
	for _, inst := range e.pool.Close() {
		inst.kill()
		<-inst.exited
	}
	if e.cg != nil {
		e.cg.close()
	}
	return os.RemoveAll(e.dir)
}

// Stats is a snapshot of the executor's pool.
type Stats = hotpool.Stats

// Stats reports the pool's size.
func (e *Executor) Stats() Stats { return e.pool.Stats() }

// DropIdle ends every idle instance now and returns how many there were.
func (e *Executor) DropIdle() int {
	all := e.pool.DropIdle()
	for _, inst := range all {
		inst.kill()
		<-inst.exited
	}
	return len(all)
}

// takeIdle returns the most recently used idle instance for the job, if any.
func (e *Executor) takeIdle(job *activation.Job, kind runtimes.Kind) *instance {
	inst, _ := e.pool.TakeIdle(job.Key, func(inst *instance) bool {
		return inst.kind.Name == kind.Name && inst.memMB == job.Limits.MemoryMB
	})
	return inst
}

// reserve makes room for a new instance of memMB, evicting idle instances.
func (e *Executor) reserve(memMB int) error {
	// Victims are out of the pool even when no room was made: they are ended all the
	// same (their memory is no longer counted).
	evict, err := e.pool.Reserve(memMB)
	for _, v := range evict {
		v.kill()
	}
	return err
}

// park returns a healthy instance to the idle pool.
func (e *Executor) park(inst *instance) {
	if ok, _ := e.pool.Park(inst); !ok {
		go inst.kill()
	}
}

// discard kills an instance that must not be reused.
func (e *Executor) discard(inst *instance) {
	e.forget(inst)
	inst.kill()
}

// forget drops an instance from the accounting (idempotent).
func (e *Executor) forget(inst *instance) {
	e.pool.Remove(inst)
}

// Run implements activation.Executor.
func (e *Executor) Run(ctx context.Context, job *activation.Job) (*activation.Outcome, error) {
	kind, err := runtimes.Resolve(job.Kind)
	if err != nil {
		return nil, err
	}
	if job.Limits.Timeout <= 0 || job.Limits.MemoryMB <= 0 {
		// OpenWhisk's defaults: 60 s, 256 MB.
		j := *job
		if j.Limits.Timeout <= 0 {
			j.Limits.Timeout = time.Minute
		}
		if j.Limits.MemoryMB <= 0 {
			j.Limits.MemoryMB = 256
		}
		job = &j
	}
	timeout := job.Limits.Timeout
	out := &activation.Outcome{Path: activation.PathHot}
	inst := e.takeIdle(job, kind)
	if inst == nil {
		out.Path = activation.PathBoot
		if err := e.reserve(job.Limits.MemoryMB); err != nil {
			return nil, err
		}
		inst, err = e.start(kind, job)
		if err != nil {
			e.pool.Release(job.Limits.MemoryMB)
			return nil, err
		}
		e.pool.Add(inst, job.Key, job.Limits.MemoryMB)
	}
	inst.logs.Begin(job.Limits.LogBytes)

	if out.Path == activation.PathBoot {
		if e.cfg.Warmup {
			if err := e.warmup(ctx, inst, kind, time.Now().Add(timeout)); err != nil {
				e.discard(inst)
				return nil, fmt.Errorf("process: warm-up %s: %w", kind.Name, err)
			}
		}
		line, err := runtimes.EncodeInit(&job.Init)
		if err != nil {
			e.discard(inst)
			return nil, fmt.Errorf("process: encode init: %w", err)
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
			return nil, fmt.Errorf("process: init %s: %w", kind.Name, err)
		}
		if out.InitStatus != 200 {
			// Never reused: end it and keep everything it wrote.
			e.discard(inst)
			<-inst.exited
			inst.logs.Wait(time.Now().Add(time.Second))
			out.Logs, out.LogsTruncated = inst.logs.Take()
			return out, nil
		}
	}

	line, err := runtimes.EncodeRun(&job.Run)
	if err != nil {
		e.discard(inst)
		return nil, fmt.Errorf("process: encode run: %w", err)
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
		return nil, fmt.Errorf("process: run %s: %w", kind.Name, err)
	}
	// The launcher wrote its sentinels before answering: this returns at once unless
	// the pipes still hold unread logs.
	complete := inst.logs.Wait(earliest(deadline, time.Now().Add(logGrace)))
	out.Logs, out.LogsTruncated = inst.logs.Take()
	if out.RunStatus == 200 && complete {
		e.park(inst)
	} else {
		e.discard(inst)
	}
	return out, nil
}

// fail ends an instance whose request failed and says why, as an Outcome.Err.
func (e *Executor) fail(inst *instance, err error, timeoutErr, exitErr error) error {
	if errors.Is(err, errTimeout) {
		inst.flushLogs() // its logs so far, before it dies with them
	}
	e.discard(inst)
	<-inst.exited
	// The pipes are closed now that the process group is dead: drain what it wrote.
	inst.logs.Wait(time.Now().Add(time.Second))
	switch {
	case errors.Is(err, errTimeout):
		return timeoutErr
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case inst.memoryExceeded():
		return fmt.Errorf("%w: the action exceeded its memory limit of %d MB", activation.ErrMemoryLimit, inst.memMB)
	default:
		if inst.signaled != 0 {
			return fmt.Errorf("%w: killed by signal %v", exitErr, inst.signaled)
		}
		return fmt.Errorf("%w: exit status %d", exitErr, inst.exitCode)
	}
}

// warmup sends the launchers' dummy activation through the whole path.
func (e *Executor) warmup(ctx context.Context, inst *instance, kind runtimes.Kind, deadline time.Time) error {
	ans, err := inst.request(ctx, runtimes.WarmupInit(kind), deadline)
	if err != nil {
		return err
	}
	if st, _, err := runtimes.DecodeReply(ans); err != nil || st != 200 {
		return fmt.Errorf("init answered %q", ans)
	}
	ans, err = inst.request(ctx, runtimes.WarmupRun, deadline)
	if err != nil {
		return err
	}
	if st, _, err := runtimes.DecodeReply(ans); err != nil || st != 200 {
		return fmt.Errorf("run answered %q", ans)
	}
	if !inst.logs.Wait(deadline) {
		return errors.New("no sentinels")
	}
	inst.logs.Take()
	return nil
}

// logGrace bounds the wait for the sentinels once the answer is in: they are written
// before it, so only a launcher that breaks the protocol makes this wait out (and its
// instance is not reused).
const logGrace = 5 * time.Second

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
