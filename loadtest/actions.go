package main

import (
	"context"
	"fmt"
	"math/rand"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/store"
)

// The OpenWhisk guest identity (standalone's default namespace and key).
const (
	guestNamespace = "guest"
	guestUUID      = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502"
	guestKey       = "123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP"
)

// actionCode is the function SEUSS's load generator ran by default: a CPU spin loop,
// here for args.spin milliseconds. It measures its own time with the runtime's
// monotonic clock and returns it as fn_us, so that the invoker's overhead is the end to
// end latency minus fn_us. tag makes each function's code distinct (its own digest, so
// its own function snapshot), as distinct functions in SEUSS's workload were.
func actionCode(kind, tag string) (string, error) {
	switch kind {
	case "python:3.11":
		return fmt.Sprintf(`# seuss loadtest function %s
import time

def main(args):
    t0 = time.perf_counter_ns()
    end = t0 + int(float(args.get("spin", 0)) * 1e6)
    n = 0
    while time.perf_counter_ns() < end:
        n += 1
    return {"fn_us": (time.perf_counter_ns() - t0) / 1000.0, "n": n, "fn": %q}
`, tag, tag), nil
	case "nodejs:20":
		return fmt.Sprintf(`// seuss loadtest function %s
function main(args) {
  const t0 = process.hrtime.bigint();
  const end = t0 + BigInt(Math.round(Number(args.spin || 0) * 1e6));
  let n = 0;
  while (process.hrtime.bigint() < end) n++;
  return { fn_us: Number(process.hrtime.bigint() - t0) / 1000, n: n, fn: %q };
}
`, tag, tag), nil
	}
	return "", fmt.Errorf("kind %q: want nodejs:20 or python:3.11", kind)
}

// action is a created action: its name and the revision to put in messages.
type action struct {
	Name string
	Rev  string
}

// createActions creates n distinct actions named prefix-0 … prefix-(n-1) in st.
func createActions(ctx context.Context, st store.Store, kind, prefix string, n, memoryMB int) ([]action, error) {
	out := make([]action, n)
	for i := range out {
		name := fmt.Sprintf("%s-%d", prefix, i)
		code, err := actionCode(kind, name)
		if err != nil {
			return nil, err
		}
		lim := activation.DefaultActionLimits()
		lim.Memory = memoryMB
		a := &activation.WhiskAction{
			Namespace:   guestNamespace,
			Name:        name,
			Exec:        activation.Exec{Kind: kind},
			Parameters:  []activation.KeyValue{},
			Limits:      lim,
			Version:     "0.0.1",
			Annotations: []activation.KeyValue{},
		}
		rev, err := st.PutAction(ctx, a, []byte(code))
		if err != nil {
			return nil, fmt.Errorf("create action %s: %w", name, err)
		}
		out[i] = action{Name: name, Rev: rev}
	}
	return out, nil
}

// Scenarios: which action each activation invokes.
var scenarios = []string{"new-functions", "repeat", "zipf", "burst"}

// plan returns, for each of n activations, the index of the action it invokes, and the
// number of actions to create.
//   - new-functions, burst: every activation a distinct action (the C path);
//   - repeat: one action (W and H);
//   - zipf: k actions, ranks drawn from a Zipf law (s = 1.1) with a fixed seed.
func plan(scenario string, n, k int, seed int64) (idx []int, actions int, err error) {
	idx = make([]int, n)
	switch scenario {
	case "new-functions", "burst":
		for i := range idx {
			idx[i] = i
		}
		return idx, n, nil
	case "repeat":
		return idx, 1, nil
	case "zipf":
		if k < 1 {
			k = 1
		}
		z := rand.NewZipf(rand.New(rand.NewSource(seed)), 1.1, 1, uint64(k-1))
		for i := range idx {
			idx[i] = int(z.Uint64())
		}
		return idx, k, nil
	}
	return nil, 0, fmt.Errorf("scenario %q: want one of %v", scenario, scenarios)
}
