package main

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/runtimes/process"
)

// The executors a run can target, by name. The process baseline is registered below;
// the UC executor (package snapshots) registers "seuss" (snapshots on) and "boot"
// (snapshots off) with one line each, in snapshots.go. A new executor plugs in the same
// way: a New func, plus, for deploy's W samples, DropIdle() int on the executor (end
// the hot instances, keep the function snapshots) and, for density, SnapshotBytes.
//
// seuss and boot are also registered here as "planned", so that a build without
// snapshots.go lists them and says clearly that they are not available yet; a planned
// entry never replaces an available one, whatever order the files' init functions run
// in. The stand-in tests (TestCompareWithStandIns, TestDeployAndDensityWithStandIns)
// exercise the plumbing independently of the UC executor.
var targets = map[string]*target{}

// target is one executor the load generator can run a workload against.
type target struct {
	Name string
	// New builds a fresh executor; the returned func releases it.
	New func(ctx context.Context, o execOptions) (activation.Executor, func() error, error)
	// Snapshots: the executor deploys by C and W (function snapshots); deploy then
	// measures W by dropping hot instances between runs.
	Snapshots bool
	// SnapshotBytes, for executors with a function-snapshot cache, returns the bytes
	// each cached function snapshot holds of its own (pages no other snapshot has, and
	// its state), and the cache's whole footprint (every stored page once, plus the
	// states): shared pages count once, as PSS counts them for processes. density
	// fills the cache until the footprint reaches its budget.
	SnapshotBytes func(e activation.Executor) (own []int64, total int64, err error)
	// LiveBytes returns the private bytes of each live (hot or running) instance, for
	// deploy's live_uc_private_kib_p50; nil for executors that are not UCs.
	LiveBytes func(e activation.Executor) ([]int64, error)
	// Unavailable, when set, says why New cannot be used yet.
	Unavailable string
}

// execOptions are what the load generator asks of an executor.
type execOptions struct {
	// MemoryBudgetMB bounds the memory of live instances (the invoker's user memory).
	MemoryBudgetMB int
	// TempDir is a directory the executor may use (launchers, snapshots).
	TempDir string
	// RootsDir holds the runtime roots (`make rootfs`); "" means the executor's default.
	RootsDir string
	// CacheBytes bounds a function-snapshot cache; 0 means the executor's default.
	CacheBytes int64
	// Logger is the load generator's (quiet unless -v).
	Logger *slog.Logger
}

// dropper is implemented by executors that can end their idle instances at once
// (process.Executor.DropIdle); deploy uses it to force the W path.
type dropper interface{ DropIdle() int }

// preparer is implemented by executors that build a kind's runtime snapshot ahead
// (snapshots.Executor.Prepare, which standalone calls at start).
type preparer interface {
	Prepare(ctx context.Context, kind string) error
}

// snapshotWaiter is implemented by executors that capture function snapshots in the
// background (snapshots.Executor.WaitSnapshots): deploy and density wait for captures
// before forcing W or counting the cache.
type snapshotWaiter interface{ WaitSnapshots() }

// register adds t, replacing a planned entry of the same name; a planned t never
// replaces an available one.
func register(t target) {
	if old := targets[t.Name]; old != nil && old.Unavailable == "" && t.Unavailable != "" {
		return
	}
	targets[t.Name] = &t
}

// defaultTarget is what runs when no --target is given: seuss when it is available.
const defaultTarget = "seuss"

const notYet = "not available yet: the UC executor with snapshots (package snapshots) is not built; use --target process"

func init() {
	register(target{Name: "process", New: newProcess})
	// Planned until package snapshots registers the real ones (see above).
	register(target{Name: "seuss", Snapshots: true, Unavailable: notYet})
	register(target{Name: "boot", Unavailable: notYet})
}

func newProcess(_ context.Context, o execOptions) (activation.Executor, func() error, error) {
	e, err := process.New(process.Config{MemoryBudgetMB: o.MemoryBudgetMB, TempDir: o.TempDir})
	if err != nil {
		return nil, nil, err
	}
	return e, e.Close, nil
}

// lookupTarget returns the named target, or an error that says what is available.
func lookupTarget(name string) (*target, error) {
	t, ok := targets[name]
	if !ok {
		return nil, fmt.Errorf("unknown target %q (known: %s)", name, strings.Join(targetNames(), ", "))
	}
	if t.Unavailable != "" {
		return nil, fmt.Errorf("target %s: %s", name, t.Unavailable)
	}
	return t, nil
}

// resolveDefault picks the default target: seuss, else process with a note.
func resolveDefault(explicit string) (name, note string) {
	if explicit != "" {
		return explicit, ""
	}
	if t := targets[defaultTarget]; t != nil && t.Unavailable == "" {
		return defaultTarget, ""
	}
	return "process", "note: target seuss is " + notYet[:strings.Index(notYet, ";")] + "; running the process baseline"
}

func targetNames() []string {
	var out []string
	for n, t := range targets {
		if t.Unavailable != "" {
			n += " (not available yet)"
		}
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
