package process

import (
	"context"
	"testing"
	"time"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/runtimes"
	"github.com/seuss-go/seuss/runtimes/conformance"
)

// conn adapts an instance to conformance.Conn.
type conn struct {
	e    *Executor
	inst *instance
}

func (c conn) Request(ctx context.Context, line []byte) ([]byte, error) {
	return c.inst.request(ctx, line, time.Now().Add(30*time.Second))
}

func (c conn) Close() error {
	c.e.discard(c.inst)
	<-c.inst.exited
	return nil
}

func TestProtocol(t *testing.T) {
	e := newExec(t, Config{})
	for _, name := range []string{"nodejs:20", "python:3.11"} {
		kind, _ := runtimes.Resolve(name)
		t.Run(kind.Language(), func(t *testing.T) {
			conformance.Protocol(t, kind, func() (conformance.Conn, error) {
				inst, err := e.start(kind, &activation.Job{Kind: name, Limits: activation.Limits{MemoryMB: 256}})
				if err != nil {
					return nil, err
				}
				inst.logs.Begin(0)
				return conn{e, inst}, nil
			})
		})
	}
}
