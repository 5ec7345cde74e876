package unikernel

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// State is a UC's lifecycle state.
//
//	created --Start--> running --Pause--> paused --Resume--> running
//	running --guest exits, Kill, timeout--> exited
//	any --Close--> closed
type State int

const (
	StateCreated State = iota
	StateRunning
	StatePaused
	StateExited
	StateClosed
)

func (s State) String() string {
	return [...]string{"created", "running", "paused", "exited", "closed"}[s]
}

// UC is a unikernel context: a VM, its guest threads and the library OS serving them.
type UC struct {
	cfg   Config
	vm    *VM
	ownVM bool
	k     *Kernel
	root  *rootFS
	// stdin is fd 0's pipe (fed by Config.Stdin): snapshots save it as "stdin", not as a
	// guest pipe, and bind the restored UC's own.
	stdin *pipe
	// track records, in a UC restored from a snapshot, the ranges remapped since (see
	// snapshot.go); nil otherwise.
	track *remapTracker

	stopCh   chan struct{}
	stopOnce sync.Once
	done     chan struct{} // closed when the last thread has left its loop

	exits        atomic.Uint64
	patched      atomic.Uint64 // syscall sites rewritten to a direct port write
	runNanos     atomic.Int64  // time inside KVM_RUN (guest code, exits, faults)
	handlerNanos atomic.Int64  // time in exit handlers (the library OS)
	mode         atomic.Int32

	mu         sync.Mutex
	cond       *sync.Cond
	state      State
	loaded     bool
	threads    []*Thread
	alive      int
	pauseReq   bool
	stopping   bool       // set by stop: no new threads
	clock      clockState // the vDSO's time page (vdso.go)
	live       int        // guest threads that have not called exit
	created    int        // threads ever started, peak the most alive at once (stats)
	peak       int
	status     int
	stopErr    error
	started    time.Time
	ended      time.Time
	timer      *time.Timer
	guard      *time.Timer // the memory guard's next check (memguard.go)
	guardExits uint64      // exits at the guard's last check
}

// New creates a UC in a new VM sized for cfg.
func New(cfg Config) (*UC, error) {
	cfg.setDefaults()
	vm, err := NewVM(cfg.AddressSpace)
	if err != nil {
		return nil, err
	}
	uc, err := NewOnVM(vm, cfg)
	if err != nil {
		vm.Close()
		return nil, err
	}
	uc.ownVM = true
	return uc, nil
}

// NewOnVM creates a UC in a fresh VM shell taken from a pool (created ahead with NewVM).
// The UC does not own the VM: the caller closes it after the UC. A VM serves one UC only
// (guest memory and vCPUs hold that UC's state), so a VM that has been used is refused.
func NewOnVM(vm *VM, cfg Config) (*UC, error) {
	vm.mu.Lock()
	used := vm.used || vm.closed
	vm.used = true
	vm.mu.Unlock()
	if used {
		return nil, fmt.Errorf("%w: VM already used or closed", ErrState)
	}
	cfg.setDefaults()
	cfg.AddressSpace = vm.Size
	if cfg.Memory+stackSize > vm.Size {
		cfg.Memory = vm.Size - stackSize
	}
	root, err := openRoot(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("unikernel: open root %s: %w", cfg.Root, err)
	}
	uc := &UC{cfg: cfg, vm: vm, root: root, stopCh: make(chan struct{}), done: make(chan struct{})}
	uc.cond = sync.NewCond(&uc.mu)
	as := newAddrSpace(vm.mem, cfg.Memory)
	base := hostAddr(vm.mem)
	as.reset = func(addr, n uint64) error {
		return mmapFixed(base+uintptr(addr), uintptr(n), unix.PROT_READ|unix.PROT_WRITE,
			unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE, -1, 0)
	}
	as.mapFile = func(addr, n uint64, fd int, off int64) error {
		return mmapFixed(base+uintptr(addr), uintptr(n), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE, fd, off)
	}
	uc.k = newKernel(&uc.cfg, as, root, uc.stopCh)
	uc.k.exitGroup = uc.exitGroup
	uc.k.threads = uc
	uc.k.hostMadvise = func(addr, n uint64) error {
		return madvise(base+uintptr(addr), uintptr(n), unix.MADV_DONTNEED)
	}
	return uc, nil
}

// State returns the UC's lifecycle state.
func (uc *UC) State() State {
	uc.mu.Lock()
	defer uc.mu.Unlock()
	return uc.state
}

// Mode reports how this host's KVM ran the guest's system calls (known after the first).
func (uc *UC) Mode() Mode { return Mode(uc.mode.Load()) }

// Load loads the program argv[0] (a guest path inside the root) with its interpreter and
// builds the initial thread. Allowed once, in state created.
func (uc *UC) Load(argv []string) error {
	uc.mu.Lock()
	defer uc.mu.Unlock()
	if uc.state != StateCreated || uc.loaded {
		return fmt.Errorf("%w: load in state %s (loaded %v)", ErrState, uc.state, uc.loaded)
	}
	if len(argv) == 0 {
		return fmt.Errorf("unikernel: load: no program")
	}
	k := uc.k
	if st, e := k.statPath(k.cwd, k.cwd, false); e != 0 || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("unikernel: working directory %s: not a directory in the root", k.cwd)
	}
	prog := argv[0]
	if !path.IsAbs(prog) {
		prog = path.Join(k.cwd, prog)
	}
	img, fd, size, err := uc.openELF(prog)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var base uint64
	if img.typ == 3 { // ET_DYN
		base = 16 << 20
	}
	bias, err := k.loadELF(img, fd, prog, size, base)
	if err != nil {
		return fmt.Errorf("unikernel: load %s: %w", prog, err)
	}
	k.as.brkStart = img.hi + bias
	k.as.brk = k.as.brkStart
	entry := img.entry + bias
	var interpBase uint64
	if img.interp != "" {
		iimg, ifd, isize, err := uc.openELF(img.interp)
		if err != nil {
			return fmt.Errorf("unikernel: interpreter of %s: %w", prog, err)
		}
		ib, err := k.loadELF(iimg, ifd, img.interp, isize, 0)
		unix.Close(ifd)
		if err != nil {
			return fmt.Errorf("unikernel: load %s: %w", img.interp, err)
		}
		interpBase = iimg.lo + ib
		entry = iimg.entry + ib
	}
	top := uc.vm.Size
	if _, e := k.as.mmap(top-stackSize, stackSize, unix.PROT_READ|unix.PROT_WRITE, true, false, false, -1, "", 0, 0); e != 0 {
		return fmt.Errorf("unikernel: map stack: %w", e)
	}
	auxv := [][2]uint64{
		{atPhdr, img.phdr + bias}, {atPhent, 56}, {atPhnum, img.phnum}, {atPagesz, pageSize},
		{atBase, interpBase}, {atFlags, 0}, {atEntry, img.entry + bias},
		{atUID, 1000}, {atEUID, 1000}, {atGID, 1000}, {atEGID, 1000},
		{atHwcap, uc.vm.host.hwcap}, {atHwcap2, 0}, {atClktck, 100}, {atSecure, 0},
	}
	if !uc.cfg.NoVDSO {
		auxv = append(auxv, [2]uint64{atSysinfoEhd, vdsoAddr}) // written by NewVM (vdso.go)
	}
	sp, _, err := buildStack(uc.vm.mem, top, argv, uc.cfg.Env, auxv, prog)
	if err != nil {
		return err
	}
	k.exe = prog
	k.argv0 = argv[0]
	if err := uc.setupStdio(); err != nil {
		return err
	}
	cpu, err := uc.vm.newVCPU(entry, sp, 0)
	if err != nil {
		return err
	}
	uc.threads = append(uc.threads, &Thread{uc: uc, tid: k.pid, cpu: cpu})
	uc.live = 1
	uc.created, uc.peak = 1, 1
	uc.loaded = true
	return nil
}

func (uc *UC) openELF(p string) (*elfImage, int, int64, error) {
	fd, e := uc.root.open(p, unix.O_RDONLY, false)
	if e != 0 {
		return nil, -1, 0, fmt.Errorf("unikernel: open %s in root %s: %w", p, uc.cfg.Root, e)
	}
	f := os.NewFile(uintptr(fd), p)
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, -1, 0, fmt.Errorf("unikernel: %s: not a regular file", p)
	}
	img, err := parseELF(f)
	if err != nil {
		f.Close()
		return nil, -1, 0, fmt.Errorf("%s: %w", p, err)
	}
	nfd, err := unix.Dup(fd)
	f.Close()
	if err != nil {
		return nil, -1, 0, err
	}
	unix.CloseOnExec(nfd)
	return img, nfd, st.Size(), nil
}

func (uc *UC) setupStdio() error {
	k := uc.k
	in := newPipe()
	uc.stdin = in
	in.writers = 0
	if uc.cfg.Stdin != nil {
		in.writers = 1
		go in.feed(uc.cfg.Stdin, uc.stopCh)
	}
	ents := []*ofd{
		{f: &pipeEnd{p: in, nonblock: new(atomicBool)}, flags: unix.O_RDONLY},
		{f: &outFile{w: uc.cfg.Stdout, fd: 1}, flags: unix.O_WRONLY},
		{f: &outFile{w: uc.cfg.Stderr, fd: 2}, flags: unix.O_WRONLY},
	}
	for i, w := range uc.cfg.ExtraWriters {
		ents = append(ents, &ofd{f: &outFile{w: w, fd: 3 + i, uncounted: true}, flags: unix.O_WRONLY})
	}
	for i, d := range ents {
		if e := k.fds.installAt(d, i, false); e != 0 {
			return fmt.Errorf("unikernel: stdio: %w", e)
		}
	}
	return nil
}

// Start runs the loaded program. Allowed once, in state created after Load.
func (uc *UC) Start() error {
	uc.mu.Lock()
	defer uc.mu.Unlock()
	if uc.state != StateCreated || !uc.loaded {
		return fmt.Errorf("%w: start in state %s (loaded %v)", ErrState, uc.state, uc.loaded)
	}
	uc.state = StateRunning
	uc.started = time.Now()
	if uc.cfg.Timeout > 0 {
		uc.timer = time.AfterFunc(uc.cfg.Timeout, func() {
			uc.stop(fmt.Errorf("%w: %v", ErrTimeout, uc.cfg.Timeout), 128+int(unix.SIGKILL))
		})
	}
	for _, t := range uc.threads {
		uc.alive++
		go t.loop()
	}
	uc.mu.Unlock()
	uc.startMemGuard()
	uc.mu.Lock()
	return nil
}

// Wait blocks until the UC has exited (or ctx ends, which kills it) and returns how.
func (uc *UC) Wait(ctx context.Context) (Result, error) {
	uc.mu.Lock()
	st := uc.state
	uc.mu.Unlock()
	if st == StateCreated || st == StateClosed {
		return Result{}, fmt.Errorf("%w: wait in state %s", ErrState, st)
	}
	select {
	case <-uc.done:
	case <-ctx.Done():
		uc.stop(fmt.Errorf("%w: %v", ErrKilled, context.Cause(ctx)), 128+int(unix.SIGKILL))
		<-uc.done
	}
	return uc.result(), nil
}

// WaitExit is Wait without the memory accounting in Result.Stats (PagesTouched and
// PagesPrivate stay zero): those read the host's page tables over the whole guest
// (/proc/self/pagemap, ~1-3 ms for a 1-2 GiB guest), which an executor that only wants
// the exit status should not pay for every UC that ends.
func (uc *UC) WaitExit(ctx context.Context) (Result, error) {
	uc.mu.Lock()
	st := uc.state
	uc.mu.Unlock()
	if st == StateCreated || st == StateClosed {
		return Result{}, fmt.Errorf("%w: wait in state %s", ErrState, st)
	}
	select {
	case <-uc.done:
	case <-ctx.Done():
		uc.stop(fmt.Errorf("%w: %v", ErrKilled, context.Cause(ctx)), 128+int(unix.SIGKILL))
		<-uc.done
	}
	uc.mu.Lock()
	defer uc.mu.Unlock()
	return Result{Status: uc.status, Err: uc.stopErr, OutputTruncated: uc.k.outTruncated.Load()}, nil
}

// Run is Start then Wait.
func (uc *UC) Run(ctx context.Context) (Result, error) {
	if err := uc.Start(); err != nil {
		return Result{}, err
	}
	return uc.Wait(ctx)
}

func (uc *UC) result() Result {
	uc.mu.Lock()
	defer uc.mu.Unlock()
	return Result{Status: uc.status, Err: uc.stopErr, OutputTruncated: uc.k.outTruncated.Load(), Stats: uc.statsLocked()}
}

func (uc *UC) statsLocked() Stats {
	s := Stats{Threads: uc.created, ThreadsPeak: uc.peak, Exits: uc.exits.Load(), InGuest: time.Duration(uc.runNanos.Load()), InHandlers: time.Duration(uc.handlerNanos.Load()), PatchedSites: uc.patched.Load(), Syscalls: uc.k.syscallCounts(), Unknown: uc.k.Unknown(), Mode: uc.Mode()}
	end := uc.ended
	if end.IsZero() {
		end = time.Now()
	}
	if !uc.started.IsZero() {
		s.Wall = end.Sub(uc.started)
	}
	uc.k.as.mu.Lock()
	s.Committed = uc.k.as.committed
	uc.k.as.mu.Unlock()
	if uc.vm.mem != nil {
		s.PagesTouched, s.PagesPrivate = residentPages(uc.vm.mem[userBase:])
	}
	return s
}

// residentPages counts the pages of mem present in this process's page tables (touched by
// the guest or by the library OS on its behalf) and, of those, the private ones (anonymous
// or copied on write, as opposed to page-cache pages of mapped files), from
// /proc/self/pagemap: bit 63 present, bit 61 file-page or shared-anonymous.
func residentPages(mem []byte) (present, private uint64) {
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	base := uint64(hostAddr(mem))
	n := uint64(len(mem)) / pageSize
	buf := make([]byte, 8*4096)
	for i := uint64(0); i < n; i += 4096 {
		c := min(4096, n-i)
		if _, err := f.ReadAt(buf[:8*c], int64((base/pageSize+i)*8)); err != nil {
			return present, private
		}
		for j := uint64(0); j < c; j++ {
			e := binary.LittleEndian.Uint64(buf[8*j:])
			if e&(1<<63) != 0 {
				present++
				if e&(1<<61) == 0 {
					private++
				}
			}
		}
	}
	return present, private
}

// Stats returns the statistics so far.
func (uc *UC) Stats() Stats {
	uc.mu.Lock()
	defer uc.mu.Unlock()
	return uc.statsLocked()
}

// exitGroup is the library OS's exit_group: every thread stops, the status is kept.
func (uc *UC) exitGroup(status int) { uc.stop(nil, status) }

// stop ends the UC once: the first caller's reason and status win.
func (uc *UC) stop(reason error, status int) {
	uc.stopOnce.Do(func() {
		uc.mu.Lock()
		uc.stopErr = reason
		uc.stopping = true
		uc.status = status
		if uc.timer != nil {
			uc.timer.Stop()
		}
		uc.stopMemGuardLocked()
		threads := append([]*Thread(nil), uc.threads...)
		uc.pauseReq = false
		uc.cond.Broadcast()
		uc.mu.Unlock()
		close(uc.stopCh)
		for _, t := range threads {
			t.kick()
		}
	})
}

// Kill stops a running or paused UC with ErrKilled.
func (uc *UC) Kill() error {
	uc.mu.Lock()
	st := uc.state
	uc.mu.Unlock()
	if st != StateRunning && st != StatePaused {
		return fmt.Errorf("%w: kill in state %s", ErrState, st)
	}
	uc.stop(ErrKilled, 128+int(unix.SIGKILL))
	return nil
}

// Pause stops every thread from running guest code: when it returns, each thread is
// either parked outside KVM_RUN or blocked in a system call handler (whose return will
// park it). Allowed in state running.
func (uc *UC) Pause() error {
	uc.mu.Lock()
	if uc.state != StateRunning {
		st := uc.state
		uc.mu.Unlock()
		return fmt.Errorf("%w: pause in state %s", ErrState, st)
	}
	uc.pauseReq = true
	uc.state = StatePaused
	threads := append([]*Thread(nil), uc.threads...)
	uc.mu.Unlock()
	for _, t := range threads {
		t.kick()
	}
	uc.mu.Lock()
	defer uc.mu.Unlock()
	for {
		busy := false
		for _, t := range uc.threads {
			if t.inGuest {
				busy = true
			}
		}
		if !busy || uc.state != StatePaused {
			return nil
		}
		uc.cond.Wait()
	}
}

// Resume lets a paused UC run again.
func (uc *UC) Resume() error {
	uc.mu.Lock()
	defer uc.mu.Unlock()
	if uc.state != StatePaused {
		return fmt.Errorf("%w: resume in state %s", ErrState, uc.state)
	}
	uc.pauseReq = false
	uc.state = StateRunning
	uc.cond.Broadcast()
	return nil
}

// Close stops the UC if needed and releases everything it holds: threads, descriptors,
// the root and (when the UC created it) the VM. Closing twice is an error.
func (uc *UC) Close() error {
	uc.mu.Lock()
	if uc.state == StateClosed {
		uc.mu.Unlock()
		return fmt.Errorf("%w: close in state closed", ErrState)
	}
	started := uc.state != StateCreated
	uc.mu.Unlock()
	uc.stop(ErrKilled, 128+int(unix.SIGKILL))
	if started {
		<-uc.done
	}
	uc.mu.Lock()
	uc.state = StateClosed
	uc.mu.Unlock()
	uc.k.fds.closeAll()
	err := uc.root.close()
	if uc.ownVM {
		if e := uc.vm.Close(); e != nil && err == nil {
			err = e
		}
	}
	return err
}

// threadDone is called by each thread as it leaves its loop.
func (uc *UC) threadDone() {
	uc.mu.Lock()
	uc.alive--
	last := uc.alive == 0
	if last {
		uc.ended = time.Now()
		if uc.state != StateClosed {
			uc.state = StateExited
		}
	}
	uc.cond.Broadcast()
	uc.mu.Unlock()
	if last {
		close(uc.done)
	}
}
