package snapshots

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/runtimes"
	"github.com/seuss-go/seuss/unikernel"
)

// instance is one live UC running a launcher.
type instance struct {
	key   activation.ActionKey
	kind  runtimes.Kind
	memMB int
	uc    *unikernel.UC
	vm    *unikernel.VM

	in      *lineFeed    // fd 0
	replies *replyWriter // fd 3
	logs    *runtimes.LogCollector

	exited  chan struct{} // closed when the UC has ended (after start)
	started bool
	result  unikernel.Result

	// parent is the runtime snapshot it was restored from (C: its function snapshot is a
	// diff over it); nil for booted and W instances.
	parent *RuntimeSnapshot
	// fsnap is the function snapshot a W instance was restored from; rt the runtime
	// snapshot under a C or W instance (its VM can be recycled for rt).
	fsnap *FunctionSnapshot
	rt    *RuntimeSnapshot
	// fid and initDigest name the function snapshot a C instance captures.
	fid, initDigest string
}

func newInstance(kind runtimes.Kind, key activation.ActionKey, memMB int) *instance {
	return &instance{key: key, kind: kind, memMB: memMB, in: newLineFeed(), replies: newReplyWriter(), logs: runtimes.NewLogCollector(), exited: make(chan struct{})}
}

// config is the UC configuration that connects the instance's streams.
func (inst *instance) config(root string, memMB int) unikernel.Config {
	return unikernel.Config{
		Root:         root,
		Memory:       uint64(memMB) << 20,
		Stdin:        inst.in,
		Stdout:       inst.logs.Stream(0),
		Stderr:       inst.logs.Stream(1),
		ExtraWriters: []io.Writer{inst.replies},
		MaxOutput:    -1, // the collector caps logs per activation
	}
}

// start runs the UC and watches for its end.
func (inst *instance) start() error {
	if err := inst.uc.Start(); err != nil {
		return err
	}
	inst.started = true
	go func() {
		// The exit status only: no memory accounting at every UC's end (a scan of the
		// guest's page table entries, paid on every recycled VM otherwise).
		res, _ := inst.uc.WaitExit(context.Background())
		inst.result = res
		inst.in.close()
		inst.logs.End()
		close(inst.exited)
	}()
	return nil
}

// stop ends the UC and waits until its watcher has taken the result.
func (inst *instance) stop() {
	if inst.uc != nil {
		inst.uc.Close()
	}
	if inst.started {
		<-inst.exited
	}
}

// close ends the UC and releases its VM.
func (inst *instance) close() {
	inst.stop()
	if inst.vm != nil {
		inst.vm.Close()
	}
}

var (
	errExited  = errors.New("launcher exited")
	errTimeout = errors.New("deadline passed")
)

// request writes one line on fd 0 and waits for one answer line on fd 3.
func (inst *instance) request(ctx context.Context, line []byte, deadline time.Time) ([]byte, error) {
	inst.in.send(line)
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case ans := <-inst.replies.lines:
		return ans, nil
	case <-inst.exited:
		// An answer written just before the end still counts.
		select {
		case ans := <-inst.replies.lines:
			return ans, nil
		default:
		}
		return nil, errExited
	case <-t.C:
		return nil, errTimeout
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// lineFeed is fd 0's source: lines queued by the executor, read by the UC's feeder.
type lineFeed struct {
	mu     sync.Mutex
	cond   *sync.Cond
	buf    []byte
	closed bool
}

func newLineFeed() *lineFeed {
	f := &lineFeed{}
	f.cond = sync.NewCond(&f.mu)
	return f
}

func (f *lineFeed) send(b []byte) {
	f.mu.Lock()
	f.buf = append(f.buf, b...)
	f.mu.Unlock()
	f.cond.Broadcast()
}

func (f *lineFeed) close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.cond.Broadcast()
}

// Read implements io.Reader for unikernel.Config.Stdin.
func (f *lineFeed) Read(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(f.buf) == 0 && !f.closed {
		f.cond.Wait()
	}
	if len(f.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(p, f.buf)
	f.buf = f.buf[n:]
	if len(f.buf) == 0 {
		f.buf = nil
	}
	return n, nil
}

// replyWriter is fd 3: it splits what the launcher writes into answer lines.
type replyWriter struct {
	mu      sync.Mutex
	partial []byte
	lines   chan []byte
	broken  bool
}

// maxReply caps one answer line (OpenWhisk's result limit is far below).
const maxReply = 64 << 20

func newReplyWriter() *replyWriter { return &replyWriter{lines: make(chan []byte, 4)} }

func (w *replyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	data := p
	for len(data) > 0 && !w.broken {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			if len(w.partial)+len(data) > maxReply {
				w.broken = true
				break
			}
			w.partial = append(w.partial, data...)
			break
		}
		line := append(w.partial, data[:i+1]...)
		w.partial = nil
		select {
		case w.lines <- line:
		default:
			w.broken = true // answers nobody asked for: the instance is not reused
		}
		data = data[i+1:]
	}
	return len(p), nil
}

func (w *replyWriter) ok() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.broken && len(w.partial) == 0 && len(w.lines) == 0
}
