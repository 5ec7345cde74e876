package process

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/runtimes"
)

// instance is one live launcher process.
type instance struct {
	key    activation.ActionKey
	kind   runtimes.Kind
	memMB  int
	cmd    *exec.Cmd
	dir    string // working directory and TMPDIR, removed when the process is gone
	cgroup string // the instance's cgroup, "" without cgroups

	stdin *os.File // our end of fd 0
	reply *os.File // our end of fd 3
	rd    *bufio.Reader
	logs  *runtimes.LogCollector

	exited   chan struct{} // closed once the process has been reaped
	exitCode int           // valid after exited: status, or -1 when killed by a signal
	signaled syscall.Signal
}

// errExited is returned by request when the launcher closed fd 3 (it died).
var errExited = errors.New("launcher exited")

// errTimeout is returned by request when the deadline passed first.
var errTimeout = errors.New("deadline passed")

func pipeSize(f *os.File, size int) {
	if rc, err := f.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) { _, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, size) })
	}
}

// start launches a fresh launcher process for a job.
func (e *Executor) start(kind runtimes.Kind, job *activation.Job) (_ *instance, err error) {
	dir, err := os.MkdirTemp(e.cfg.TempDir, "seuss-proc-")
	if err != nil {
		return nil, fmt.Errorf("process: start %s: %w", kind.Name, err)
	}
	inst := &instance{key: job.Key, kind: kind, memMB: job.Limits.MemoryMB, dir: dir, logs: runtimes.NewLogCollector(), exited: make(chan struct{})}
	var closeLater []*os.File
	defer func() {
		for _, f := range closeLater {
			f.Close()
		}
		if err != nil {
			if inst.stdin != nil {
				inst.stdin.Close()
			}
			if inst.reply != nil {
				inst.reply.Close()
			}
			os.RemoveAll(dir)
			if inst.cgroup != "" {
				os.Remove(inst.cgroup)
			}
			err = fmt.Errorf("process: start %s: %w", kind.Name, err)
		}
	}()
	pipe := func() (r, w *os.File, err error) {
		r, w, err = os.Pipe()
		if err == nil {
			closeLater = append(closeLater, r, w)
		}
		return r, w, err
	}
	inR, inW, err := pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := pipe()
	if err != nil {
		return nil, err
	}
	repR, repW, err := pipe()
	if err != nil {
		return nil, err
	}
	// 256 KiB instead of 64 KiB: a 1 MB argument or result crosses in a few system
	// calls. Not more: pipe buffers count against the user's pipe-user-pages-soft.
	pipeSize(inW, 256<<10)
	pipeSize(repR, 256<<10)

	var extra []string
	var cgFile *os.File
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if e.cfg.UID != 0 {
		attr.Credential = &syscall.Credential{Uid: e.cfg.UID, Gid: e.cfg.GID, NoSetGroups: true}
		if err := os.Chown(dir, int(e.cfg.UID), int(e.cfg.GID)); err != nil {
			return nil, err
		}
	}
	if e.cg != nil {
		cgDir, f, cerr := e.cg.create(filepath.Base(dir), job.Limits.MemoryMB)
		if cerr != nil {
			return nil, cerr
		}
		cgFile = f
		closeLater = append(closeLater, cgFile)
		inst.cgroup = cgDir
		attr.UseCgroupFD = true
		attr.CgroupFD = int(cgFile.Fd())
	} else {
		extra = kind.HeapFlags(job.Limits.MemoryMB)
	}
	argv := kind.HostArgv(e.launchers[kind.Name], extra...)
	env := make([]string, 0, len(runtimes.Env)+len(e.cfg.Env))
	for _, v := range runtimes.Env {
		switch {
		case strings.HasPrefix(v, "HOME="):
			v = "HOME=" + dir
		case strings.HasPrefix(v, "TMPDIR="):
			v = "TMPDIR=" + dir
		}
		env = append(env, v)
	}
	env = append(env, e.cfg.Env...)
	if e.cg == nil && kind.Language() == "python" {
		// The launcher sets RLIMIT_AS itself at start, before any action code runs.
		env = append(env, "SEUSS_RLIMIT_AS="+strconv.FormatInt(int64(job.Limits.MemoryMB)<<20, 10))
	}
	cmd := &exec.Cmd{
		Path:        argv[0],
		Args:        argv,
		Env:         env,
		Dir:         dir,
		Stdin:       inR,
		Stdout:      outW,
		Stderr:      errW,
		ExtraFiles:  []*os.File{repW},
		SysProcAttr: attr,
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	inst.cmd = cmd
	// Keep our ends; the child's ends are closed by the deferred function.
	closeLater = []*os.File{inR, outW, errW, repW}
	if cgFile != nil {
		closeLater = append(closeLater, cgFile)
	}
	inst.stdin, inst.reply = inW, repR
	inst.rd = bufio.NewReaderSize(repR, 64<<10)
	go inst.logs.ReadFrom(0, outR)
	go inst.logs.ReadFrom(1, errR)
	go inst.wait(e)
	return inst, nil
}

// wait reaps the process and cleans its directory and cgroup.
func (inst *instance) wait(e *Executor) {
	err := inst.cmd.Wait()
	inst.exitCode = inst.cmd.ProcessState.ExitCode()
	if ws, ok := inst.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		inst.signaled = ws.Signal()
	}
	_ = err
	// Anything the action left behind in its group goes too.
	_ = syscall.Kill(-inst.cmd.Process.Pid, syscall.SIGKILL)
	close(inst.exited)
	os.RemoveAll(inst.dir)
	if inst.cgroup != "" {
		os.Remove(inst.cgroup)
	}
	e.forget(inst)
}

// kill ends the instance's process group; wait does the rest.
func (inst *instance) kill() {
	_ = syscall.Kill(-inst.cmd.Process.Pid, syscall.SIGKILL)
	inst.stdin.Close()
	inst.reply.Close()
}

// memoryExceeded says whether a dead instance died of its memory limit.
func (inst *instance) memoryExceeded() bool {
	if inst.cgroup != "" && oomKilled(inst.cgroup) {
		return true
	}
	if inst.exitCode == exitMemory && inst.kind.Language() == "python" {
		return true
	}
	return inst.kind.Language() == "nodejs" && inst.logs.SawHeapOOM()
}

// exitMemory is the python launcher's exit status after a MemoryError.
const exitMemory = 86

// request writes one line on fd 0 and reads one answer line from fd 3, both before
// deadline; ctx cancels it.
func (inst *instance) request(ctx context.Context, line []byte, deadline time.Time) ([]byte, error) {
	stop := context.AfterFunc(ctx, func() {
		_ = inst.stdin.SetWriteDeadline(time.Now())
		_ = inst.reply.SetReadDeadline(time.Now())
	})
	defer stop()
	_ = inst.stdin.SetWriteDeadline(deadline)
	_ = inst.reply.SetReadDeadline(deadline)
	if _, err := inst.stdin.Write(line); err != nil {
		return nil, inst.classify(ctx, err)
	}
	ans, err := inst.rd.ReadBytes('\n')
	if err != nil {
		return nil, inst.classify(ctx, err)
	}
	return ans, nil
}

func (inst *instance) classify(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return errTimeout
	}
	return errExited
}
