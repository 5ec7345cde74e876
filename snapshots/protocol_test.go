package snapshots

import (
	"context"
	"testing"
	"time"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/runtimes"
	"github.com/seuss-go/seuss/runtimes/conformance"
)

// ucConn adapts a UC restored from a runtime snapshot to conformance.Conn.
type ucConn struct {
	e    *Executor
	inst *instance
}

func (c ucConn) Request(ctx context.Context, line []byte) ([]byte, error) {
	return c.inst.request(ctx, line, time.Now().Add(30*time.Second))
}

func (c ucConn) Close() error {
	c.e.discard(c.inst)
	<-c.inst.exited
	return nil
}

// TestProtocolInUC runs the launcher protocol checks (second init refused, run before
// init refused, the warm-up leaving the launcher pristine) against UCs restored from
// each kind's runtime snapshot: the state every C path starts from, taken after the
// anticipatory warm-up.
func TestProtocolInUC(t *testing.T) {
	for _, name := range []string{"python:3.11", "nodejs:20"} {
		kind, err := runtimes.Resolve(name)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(kind.Language(), func(t *testing.T) {
			roots := requireUC(t, name)
			e := newExec(t, Config{RootsDir: roots, SnapshotDir: t.TempDir()})
			defer e.Close()
			if err := e.Prepare(context.Background(), name); err != nil {
				t.Fatal(err)
			}
			root, err := e.root(kind)
			if err != nil {
				t.Fatal(err)
			}
			rt := e.store.Runtime(kind.Name, root.Digest())
			if rt == nil {
				t.Fatal("no runtime snapshot after Prepare")
			}
			job := &activation.Job{Kind: name, Limits: activation.Limits{Timeout: 30 * time.Second, MemoryMB: 256}}
			conformance.Protocol(t, kind, func() (conformance.Conn, error) {
				inst, err := e.restore(kind, root, job, rt, nil)
				if err != nil {
					return nil, err
				}
				return ucConn{e, inst}, nil
			})
		})
	}
}
