package main

import (
	"context"
	"path/filepath"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/snapshots"
)

// The UC executor (package snapshots) as two targets: seuss (H, W, C, B with function
// snapshots) and boot (snapshots off: every cold start boots the runtime).
func init() {
	register(target{Name: "seuss", Snapshots: true, New: newSnapshots(false), SnapshotBytes: snapshotBytes, LiveBytes: liveBytes})
	register(target{Name: "boot", New: newSnapshots(true), LiveBytes: liveBytes})
}

func newSnapshots(noSnapshots bool) func(context.Context, execOptions) (activation.Executor, func() error, error) {
	return func(_ context.Context, o execOptions) (activation.Executor, func() error, error) {
		e, err := snapshots.New(snapshots.Config{
			RootsDir:       o.RootsDir,
			SnapshotDir:    filepath.Join(o.TempDir, "snapshots"),
			NoSnapshots:    noSnapshots,
			CacheBytes:     o.CacheBytes,
			MemoryBudgetMB: o.MemoryBudgetMB,
			Log:            o.Logger,
		})
		if err != nil {
			return nil, nil, err
		}
		return e, e.Close, nil
	}
}

// snapshotBytes: each function snapshot's own bytes (Entry.PrivateBytes: its unshared
// pages and its state file) and the cache's footprint: the page store's live pages
// (function pages only, each stored once) plus every function state file.
func snapshotBytes(e activation.Executor) ([]int64, int64, error) {
	x := e.(*snapshots.Executor)
	x.WaitSnapshots()
	st := x.Store()
	if st == nil {
		return nil, 0, nil
	}
	var own []int64
	total := st.Pages().Stats().LiveBytes
	for _, en := range st.List() {
		if en.Type == snapshots.TypeFunction {
			own = append(own, en.PrivateBytes)
			total += en.StateBytes
		}
	}
	if used, budget, n := st.Usage(); debugUsage != nil {
		debugUsage(used, budget, n)
	}
	return own, total, nil
}

// debugUsage, when set (density -v), is told the cache's own accounting: the bytes
// its eviction budget counts, the budget and the number of function snapshots.
var debugUsage func(used, budget int64, n int)

func liveBytes(e activation.Executor) ([]int64, error) {
	return e.(*snapshots.Executor).LivePrivateBytes(), nil
}
