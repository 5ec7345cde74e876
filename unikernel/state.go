package unikernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// The state tree of a quiescent UC, everything but the contents of guest memory:
//
//	VMState{VCPU: []ThreadState, LibOS: LibOSState, Memory: MemoryState}
//
// Each component has a save method (reading the live object) and a restore method
// (writing a fresh one); restoreUC orders them. The tree is plain data (package snapshots
// encodes it, versioned); a new library-OS object adds a field here, a save and a restore,
// and a test that a UC holding one survives capture and restore. Whatever a restored UC
// gets afresh instead is listed with the reason next to the struct it would belong to.

// VMState is a captured UC without its memory contents.
type VMState struct {
	// AddressSpace is the guest's size: a restore needs a VM shell of exactly this size
	// (the page tables of the system area depend on it).
	AddressSpace uint64
	// Mode is how the host ran system calls when captured: a thread captured inside the
	// VMX entry stub cannot resume under PVM and the reverse.
	Mode   Mode
	VCPU   []ThreadState
	LibOS  LibOSState
	Memory MemoryState
}

// ThreadState is one guest thread: its vCPU and the library OS's per-thread state.
//
// Not saved: the segment registers, descriptor tables, control registers and the syscall
// MSRs (STAR, LSTAR, FMASK...), which setupVCPU writes identically for every vCPU; CPUID
// and XCR0, the host's; TSC (a restored guest sees the host's TSC).
type ThreadState struct {
	TID int
	// GPRs mirrors struct kvm_regs: rax rbx rcx rdx rsi rdi rsp rbp r8-r15 rip rflags.
	GPRs [18]uint64
	// InCall: the thread was asleep in a system call; GPRs are the call's entry state with
	// RIP on the 2-byte port write, so the restored thread makes the call again.
	InCall bool
	// KernelMode: captured inside the VMX entry stub (CPL0); restored with kernel CS/SS.
	KernelMode bool
	// XSAVE is struct kvm_xsave (4 KiB) without its trailing zero bytes (most of it: the
	// AVX-512 state of a thread that never used it); restore pads it.
	XSAVE          []byte
	FSBase, GSBase uint64

	ClearTID, RobustList, Sigmask, Rseq uint64
	// SigPending: signals sent to the thread and not yet delivered (signal.go).
	SigPending uint64 `json:",omitempty"`
	Altstack   []byte
}

// LibOSState is the library OS (Kernel) apart from the memory map.
//
// Not saved: statistics (system-call counts, unknown calls), the output byte count and
// truncation flag (each UC has its own budget), the CPU-time origin, futex waiters (a
// thread asleep in FUTEX_WAIT is saved InCall and queues again when restored).
type LibOSState struct {
	PID int
	// NextTID is the last thread id handed out.
	NextTID int
	Cwd     string
	Umask   uint32
	Exe     string
	Argv0   string
	// Sigactions holds the raw struct sigaction of each signal that has one set.
	Sigactions []SigactionState
	// Files are the open file descriptions; FDs point into it (dup'ed descriptors share).
	Files []FileState
	FDs   []FDState
	// Pipes are the guest's own pipes, referred to by FileState.Pipe.
	Pipes []PipeState
	Tmp   TmpState
}

// SigactionState is one signal's recorded action.
type SigactionState struct {
	Sig int
	Act []byte
}

// File kinds of FileState.Kind.
const (
	FileStdin = "stdin" // fd 0's pipe, fed by Config.Stdin
	FileOut   = "out"   // a host writer: Stream 1, 2 (Stdout, Stderr) or 3+ (ExtraWriters)
	FileHost  = "host"  // a file or directory of the read-only root, reopened by Path
	FileTmp   = "tmp"   // a file or directory of /tmp
	FileDev   = "dev"   // /dev/null, /dev/zero, /dev/urandom
	FilePipe  = "pipe"  // an end of one of the guest's pipes
	FileEvent = "event" // an eventfd
	FileEpoll = "epoll" // an epoll instance (its registrations in Items)
	FileSock  = "sock"  // an end of a socketpair: reads Pipe, writes Pipe2
	FileProc  = "proc"  // a generated /proc file: regenerated from the restored UC, at Offset
)

// FileState is one open file description.
type FileState struct {
	Kind   string
	Flags  int    // O_ACCMODE | O_APPEND | O_NONBLOCK ...
	Path   string // guest path (host, tmp, dev)
	Offset int64  // host and tmp files
	Append bool   // tmp
	Stream int    // out
	Pipe   int    // pipe, sock: index into LibOSState.Pipes
	Writer bool   // pipe
	Pipe2  int    // sock: the pipe it writes
	// event: the counter and EFD_SEMAPHORE.
	Count     uint64
	Semaphore bool
	// epoll: the registrations. Edge-triggered ones report their next readiness once
	// after a restore (the change they last reported is not saved).
	Items []EpollItemState
}

// EpollItemState is one epoll registration: the descriptor number and the open file
// description it was made for (an index into LibOSState.Files).
type EpollItemState struct {
	FD       int
	File     int
	Events   uint32
	Data     uint64
	Disabled bool
}

// FDState is one descriptor.
type FDState struct {
	FD      int
	File    int // index into LibOSState.Files
	CloExec bool
}

// PipeState is a guest pipe: what it holds and how many ends are open.
type PipeState struct {
	Buf              []byte
	Cap              int
	Readers, Writers int
}

// TmpState is /tmp. Directory listings in progress (tmpFile.dirents) are not saved: a
// restored getdents lists the directory again from the saved offset.
type TmpState struct {
	Ino   uint64
	Nodes []TmpNodeState
}

// TmpNodeState is one file or directory of /tmp ("" is /tmp itself).
type TmpNodeState struct {
	Path  string
	Dir   bool
	Mode  uint32
	Ino   uint64
	MTime int64 // Unix nanoseconds
	Data  []byte
}

// MemoryState is the memory map (addrSpace); the contents are the snapshot's memory.
// The commit limit is not saved: the restoring Config.Memory sets it.
type MemoryState struct {
	VMAs      []VMAState
	Committed uint64
	BrkStart  uint64
	Brk       uint64
	MmapTop   uint64
}

// VMAState is one mapping.
type VMAState struct {
	Start, End uint64
	Prot       int
	Shared     bool
	File       string
	Off        int64
}

// Limits on what a state may hold, checked by Validate (states come from files).
const (
	maxStateThreads = 1024
	maxStateVMAs    = 1 << 16
	maxStateFiles   = 1 << 16
	maxStatePath    = 4096
)

// ErrBadState: a VMState is inconsistent (it comes from an untrusted file).
var ErrBadState = errors.New("unikernel: bad VM state")

// Validate checks a state's internal consistency: every index in range, every address
// inside the address space, sizes within limits. Restore calls it; decoders may too.
func (s *VMState) Validate() error {
	bad := func(f string, a ...any) error { return fmt.Errorf("%w: %s", ErrBadState, fmt.Sprintf(f, a...)) }
	if s.AddressSpace < 2*largePage || s.AddressSpace%largePage != 0 || s.AddressSpace > maxGuestSize {
		return bad("address space %d", s.AddressSpace)
	}
	if len(s.VCPU) == 0 || len(s.VCPU) > maxStateThreads {
		return bad("%d threads", len(s.VCPU))
	}
	for i, t := range s.VCPU {
		if len(t.XSAVE) > 4096 {
			return bad("thread %d: XSAVE of %d bytes", i, len(t.XSAVE))
		}
		if len(t.Altstack) != 0 && len(t.Altstack) != 24 {
			return bad("thread %d: altstack of %d bytes", i, len(t.Altstack))
		}
	}
	m := &s.Memory
	if len(m.VMAs) > maxStateVMAs {
		return bad("%d mappings", len(m.VMAs))
	}
	prev := uint64(userBase)
	for i, v := range m.VMAs {
		if v.Start%pageSize != 0 || v.End%pageSize != 0 || v.Start < prev || v.End <= v.Start || v.End > s.AddressSpace {
			return bad("mapping %d [%#x, %#x)", i, v.Start, v.End)
		}
		if len(v.File) > maxStatePath || v.Off < 0 || v.Off%pageSize != 0 {
			return bad("mapping %d file", i)
		}
		prev = v.End
	}
	if m.Brk < m.BrkStart || m.Brk > s.AddressSpace || m.MmapTop > s.AddressSpace || m.Committed > s.AddressSpace {
		return bad("brk %#x..%#x, mmap top %#x, committed %d", m.BrkStart, m.Brk, m.MmapTop, m.Committed)
	}
	l := &s.LibOS
	if len(l.Files) > maxStateFiles || len(l.FDs) > maxStateFiles || len(l.Pipes) > maxStateFiles {
		return bad("%d files, %d descriptors, %d pipes", len(l.Files), len(l.FDs), len(l.Pipes))
	}
	if len(l.Cwd) > maxStatePath || len(l.Exe) > maxStatePath || len(l.Argv0) > maxStatePath {
		return bad("path too long")
	}
	for i, f := range l.Files {
		if len(f.Path) > maxStatePath {
			return bad("file %d path", i)
		}
		switch f.Kind {
		case FileStdin, FileHost, FileTmp, FileDev, FileProc:
		case FileOut:
			if f.Stream < 1 || f.Stream > 64 {
				return bad("file %d stream %d", i, f.Stream)
			}
		case FilePipe:
			if f.Pipe < 0 || f.Pipe >= len(l.Pipes) {
				return bad("file %d pipe %d", i, f.Pipe)
			}
		case FileSock:
			if f.Pipe < 0 || f.Pipe >= len(l.Pipes) || f.Pipe2 < 0 || f.Pipe2 >= len(l.Pipes) {
				return bad("file %d pipes %d, %d", i, f.Pipe, f.Pipe2)
			}
		case FileEvent:
		case FileEpoll:
			if len(f.Items) > maxStateFiles {
				return bad("file %d: %d registrations", i, len(f.Items))
			}
			for _, it := range f.Items {
				if it.File < 0 || it.File >= len(l.Files) || it.FD < 0 || it.FD >= 1<<20 || l.Files[it.File].Kind == FileEpoll {
					return bad("file %d: registration of %d", i, it.FD)
				}
			}
		default:
			return bad("file %d kind %q", i, f.Kind)
		}
		if f.Offset < 0 {
			return bad("file %d offset", i)
		}
	}
	seen := map[int]bool{}
	for _, d := range l.FDs {
		if d.FD < 0 || d.FD >= 1<<20 || seen[d.FD] || d.File < 0 || d.File >= len(l.Files) {
			return bad("descriptor %d -> %d", d.FD, d.File)
		}
		seen[d.FD] = true
	}
	for i, p := range l.Pipes {
		if p.Cap <= 0 || p.Cap > 1<<20 || len(p.Buf) > p.Cap || p.Readers < 0 || p.Writers < 0 || p.Readers > maxStateFiles || p.Writers > maxStateFiles {
			return bad("pipe %d", i)
		}
	}
	for _, sa := range l.Sigactions {
		if sa.Sig < 1 || sa.Sig > 64 || len(sa.Act) != 32 {
			return bad("sigaction %d", sa.Sig)
		}
	}
	for _, n := range l.Tmp.Nodes {
		if len(n.Path) > maxStatePath || (n.Dir && len(n.Data) > 0) {
			return bad("tmp node %q", n.Path)
		}
	}
	return nil
}

// --- memory map ---

func (as *addrSpace) save() MemoryState {
	as.mu.Lock()
	defer as.mu.Unlock()
	m := MemoryState{Committed: as.committed, BrkStart: as.brkStart, Brk: as.brk, MmapTop: as.mmapTop}
	for _, v := range as.vmas {
		m.VMAs = append(m.VMAs, VMAState{Start: v.start, End: v.end, Prot: v.prot, Shared: v.shared, File: v.file, Off: v.off})
	}
	return m
}

// restore replaces the map; memory contents are the caller's.
func (as *addrSpace) restore(m MemoryState) error {
	as.mu.Lock()
	defer as.mu.Unlock()
	as.vmas = as.vmas[:0]
	var committed uint64
	for _, s := range m.VMAs {
		v := vma{start: s.Start, end: s.End, prot: s.Prot, shared: s.Shared, file: s.File, off: s.Off}
		as.vmas = append(as.vmas, v)
		if v.committed() {
			committed += v.end - v.start
		}
	}
	if committed != m.Committed {
		return fmt.Errorf("%w: committed %d, mappings add up to %d", ErrBadState, m.Committed, committed)
	}
	if committed > as.limit {
		return fmt.Errorf("unikernel: restore: the snapshot commits %d MiB, more than the memory limit of %d MiB", committed>>20, as.limit>>20)
	}
	as.committed = committed
	as.brkStart, as.brk, as.mmapTop = m.BrkStart, m.Brk, m.MmapTop
	return nil
}

// --- library OS ---

// saveLibOS reads the kernel's state. The caller makes sure no handler runs (the UC is
// paused and every thread inside a call is asleep).
func (k *Kernel) saveLibOS(stdin *pipe) (LibOSState, error) {
	k.mu.Lock()
	s := LibOSState{PID: k.pid, NextTID: k.nextTID, Cwd: k.cwd, Umask: k.umask, Exe: k.exe, Argv0: k.argv0}
	for sig := range k.sigactions {
		if k.sigactions[sig] != ([32]byte{}) {
			s.Sigactions = append(s.Sigactions, SigactionState{Sig: sig, Act: append([]byte(nil), k.sigactions[sig][:]...)})
		}
	}
	k.mu.Unlock()

	files := map[*ofd]int{}
	pipes := map[*pipe]int{}
	k.fds.mu.Lock()
	entries := append([]*fdEntry(nil), k.fds.fds...)
	k.fds.mu.Unlock()
	var epolls []*ofd
	add := func(d *ofd) (int, error) {
		if idx, ok := files[d]; ok {
			return idx, nil
		}
		fs, err := saveFile(d, stdin, pipes, &s)
		if err != nil {
			return 0, err
		}
		if fs.Kind == FileEpoll {
			epolls = append(epolls, d)
		}
		files[d] = len(s.Files)
		s.Files = append(s.Files, fs)
		return len(s.Files) - 1, nil
	}
	for fd, e := range entries {
		if e == nil {
			continue
		}
		idx, err := add(e.d)
		if err != nil {
			return s, fmt.Errorf("fd %d: %w", fd, err)
		}
		s.FDs = append(s.FDs, FDState{FD: fd, File: idx, CloExec: e.cloexec})
	}
	// Registrations name descriptions, which may no longer have a descriptor (Linux
	// drops those when the description closes; here they are dropped at the next wait).
	for _, d := range epolls {
		ep := d.f.(*epollFile)
		ep.mu.Lock()
		var items []EpollItemState
		for fd, it := range ep.interest {
			if _, ok := it.d.f.(*epollFile); ok {
				continue
			}
			if cur, e := k.fds.get(uint64(fd)); e != 0 || cur != it.d {
				continue // stale: dropped at the next wait anyway
			}
			idx, err := add(it.d)
			if err != nil {
				ep.mu.Unlock()
				return s, fmt.Errorf("epoll registration of fd %d: %w", fd, err)
			}
			items = append(items, EpollItemState{FD: fd, File: idx, Events: it.events, Data: it.data, Disabled: it.disabled})
		}
		ep.mu.Unlock()
		sort.Slice(items, func(i, j int) bool { return items[i].FD < items[j].FD })
		s.Files[files[d]].Items = items
	}
	s.Tmp = k.tmp.save()
	return s, nil
}

func saveFile(d *ofd, stdin *pipe, pipes map[*pipe]int, s *LibOSState) (FileState, error) {
	fs := FileState{Flags: d.flags, Path: d.path}
	switch f := d.f.(type) {
	case *pipeEnd:
		if f.p == stdin && !f.isWriter {
			fs.Kind = FileStdin
			return fs, nil
		}
		fs.Kind, fs.Pipe, fs.Writer = FilePipe, pipeIndex(f.p, pipes, s), f.isWriter
	case *outFile:
		fs.Kind, fs.Stream = FileOut, f.fd
	case *eventFile:
		f.mu.Lock()
		fs.Kind, fs.Count, fs.Semaphore = FileEvent, f.count, f.semaphore
		f.mu.Unlock()
	case *epollFile:
		fs.Kind = FileEpoll
	case *socketEnd:
		fs.Kind = FileSock
		fs.Pipe = pipeIndex(f.rx.p, pipes, s)
		fs.Pipe2 = pipeIndex(f.tx.p, pipes, s)
	case *hostFile:
		fs.Kind = FileHost
		off, err := unix.Seek(f.fd, 0, 1)
		if err != nil {
			off = 0 // O_PATH descriptors have no offset
		}
		fs.Offset = off
	case *tmpFile:
		f.mu.Lock()
		fs.Kind, fs.Offset, fs.Append, fs.Path = FileTmp, f.off, f.append, f.path
		f.mu.Unlock()
	case *devFile:
		fs.Kind, fs.Path = FileDev, f.name
	case *procFile:
		f.mu.Lock()
		fs.Kind, fs.Offset = FileProc, f.off
		f.mu.Unlock()
	default:
		return fs, fmt.Errorf("unikernel: capture: an open %T cannot be saved yet", d.f)
	}
	return fs, nil
}

func pipeIndex(p *pipe, pipes map[*pipe]int, s *LibOSState) int {
	if i, ok := pipes[p]; ok {
		return i
	}
	p.mu.Lock()
	ps := PipeState{Buf: append([]byte(nil), p.buf...), Cap: p.cap, Readers: p.readers, Writers: p.writers}
	p.mu.Unlock()
	s.Pipes = append(s.Pipes, ps)
	pipes[p] = len(s.Pipes) - 1
	return len(s.Pipes) - 1
}

func (t *tmpFS) save() TmpState {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := TmpState{Ino: t.ino}
	for p, n := range t.nodes {
		s.Nodes = append(s.Nodes, TmpNodeState{Path: p, Dir: n.dir, Mode: n.mode, Ino: n.ino, MTime: n.mtime.UnixNano(), Data: append([]byte(nil), n.data...)})
	}
	sort.Slice(s.Nodes, func(i, j int) bool { return s.Nodes[i].Path < s.Nodes[j].Path })
	return s
}

func (t *tmpFS) restore(s TmpState) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.nodes = map[string]*tmpNode{}
	t.bytes = 0
	t.ino = s.Ino
	for _, n := range s.Nodes {
		t.nodes[n.Path] = &tmpNode{dir: n.Dir, mode: n.Mode, ino: n.Ino, mtime: time.Unix(0, n.MTime), data: append([]byte(nil), n.Data...)}
		t.bytes += int64(len(n.Data))
	}
	if t.nodes[""] == nil || !t.nodes[""].dir {
		return fmt.Errorf("%w: /tmp has no root directory", ErrBadState)
	}
	if t.bytes > t.limit {
		return fmt.Errorf("unikernel: restore: /tmp holds %d bytes, more than its limit %d", t.bytes, t.limit)
	}
	return nil
}

// restoreLibOS fills a fresh kernel (of a UC created by NewOnVM) from s. stdin is the
// UC's new fd-0 pipe; out files are bound to the UC's Config writers.
func (uc *UC) restoreLibOS(s *LibOSState) error {
	k := uc.k
	k.mu.Lock()
	k.pid, k.cwd, k.umask, k.exe, k.argv0 = s.PID, s.Cwd, s.Umask, s.Exe, s.Argv0
	if s.NextTID > k.nextTID {
		k.nextTID = s.NextTID
	}
	for _, sa := range s.Sigactions {
		copy(k.sigactions[sa.Sig][:], sa.Act)
	}
	k.mu.Unlock()
	if err := k.tmp.restore(s.Tmp); err != nil {
		return err
	}
	pipes := make([]*pipe, len(s.Pipes))
	for i, ps := range s.Pipes {
		p := newPipe()
		p.buf, p.cap, p.readers, p.writers = append([]byte(nil), ps.Buf...), ps.Cap, ps.Readers, ps.Writers
		pipes[i] = p
	}
	var stdin *pipe
	ofds := make([]*ofd, len(s.Files))
	for i, fs := range s.Files {
		d := &ofd{flags: fs.Flags, path: fs.Path}
		nb := new(atomicBool)
		nb.Store(fs.Flags&unix.O_NONBLOCK != 0)
		switch fs.Kind {
		case FileStdin:
			if stdin == nil {
				stdin = newPipe()
				stdin.writers = 0
				if uc.cfg.Stdin != nil {
					stdin.writers = 1
					go stdin.feed(uc.cfg.Stdin, uc.stopCh)
				}
			}
			d.f = &pipeEnd{p: stdin, nonblock: nb}
		case FilePipe:
			d.f = &pipeEnd{p: pipes[fs.Pipe], isWriter: fs.Writer, nonblock: nb}
		case FileOut:
			var w = uc.cfg.Stdout
			switch {
			case fs.Stream == 2:
				w = uc.cfg.Stderr
			case fs.Stream >= 3:
				w = nil
				if i := fs.Stream - 3; i < len(uc.cfg.ExtraWriters) {
					w = uc.cfg.ExtraWriters[i]
				}
			}
			d.f = &outFile{w: w, fd: fs.Stream, uncounted: fs.Stream >= 3}
		case FileHost:
			hflags := unix.O_RDONLY | fs.Flags&(unix.O_DIRECTORY|unix.O_PATH)
			fd, e := uc.root.open(fs.Path, hflags, false)
			if e != 0 {
				closeOFDs(ofds)
				return fmt.Errorf("unikernel: restore: reopen %s: %w", fs.Path, e)
			}
			if fs.Offset > 0 {
				if _, err := unix.Seek(fd, fs.Offset, 0); err != nil {
					unix.Close(fd)
					closeOFDs(ofds)
					return fmt.Errorf("unikernel: restore: seek %s: %w", fs.Path, err)
				}
			}
			d.f = &hostFile{fd: fd}
		case FileTmp:
			node, e := k.tmp.lookup(fs.Path)
			if e != 0 {
				closeOFDs(ofds)
				return fmt.Errorf("%w: open /tmp%s is not in /tmp", ErrBadState, fs.Path)
			}
			d.f = &tmpFile{fs: k.tmp, node: node, path: fs.Path, off: fs.Offset, append: fs.Append}
		case FileDev:
			d.f = &devFile{name: fs.Path}
		case FileProc:
			pf, e := k.openProc(fs.Path, unix.O_RDONLY)
			if e != 0 {
				closeOFDs(ofds)
				return fmt.Errorf("%w: open %s: %v", ErrBadState, fs.Path, e)
			}
			pf.(*procFile).off = max(fs.Offset, 0)
			d.f = pf
		case FileEvent:
			ef := &eventFile{count: fs.Count, semaphore: fs.Semaphore, changed: make(chan struct{})}
			ef.nonblock.Store(fs.Flags&unix.O_NONBLOCK != 0)
			d.f = ef
		case FileEpoll:
			d.f = &epollFile{interest: map[int]*epollItem{}}
		case FileSock:
			d.f = &socketEnd{rx: &pipeEnd{p: pipes[fs.Pipe], nonblock: nb}, tx: &pipeEnd{p: pipes[fs.Pipe2], isWriter: true, nonblock: nb}}
		}
		ofds[i] = d
	}
	// Registrations last: they point at descriptions made above.
	for i, fs := range s.Files {
		if fs.Kind != FileEpoll {
			continue
		}
		ep := ofds[i].f.(*epollFile)
		for _, it := range fs.Items {
			ep.interest[it.FD] = &epollItem{fd: it.FD, d: ofds[it.File], events: it.Events, data: it.Data, disabled: it.Disabled}
		}
	}
	for _, fd := range s.FDs {
		if e := k.fds.installAt(ofds[fd.File], fd.FD, fd.CloExec); e != 0 {
			closeOFDs(ofds)
			return fmt.Errorf("unikernel: restore: descriptor %d: %w", fd.FD, e)
		}
	}
	// The descriptors hold the references now; a description no descriptor uses is closed.
	for _, d := range ofds {
		if d.refs.Load() == 0 {
			d.f.close()
		}
	}
	uc.stdin = stdin
	return nil
}

func closeOFDs(ofds []*ofd) {
	for _, d := range ofds {
		if d != nil && d.f != nil && d.refs.Load() == 0 {
			d.f.close()
		}
	}
}

// --- threads ---

func gprsOf(r *[18]uint64, rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp, r8, r9, r10, r11, r12, r13, r14, r15, rip, rflags uint64) {
	*r = [18]uint64{rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp, r8, r9, r10, r11, r12, r13, r14, r15, rip, rflags}
}

// save reads a paused thread's state. Its registers are in the kvm_run sync area, which
// is authoritative both after an exit and after a handler wrote the call's result.
func (t *Thread) save(mem []byte) (ThreadState, error) {
	r := t.cpu.run.regs()
	s := ThreadState{TID: t.tid, InCall: t.inCall.Load()}
	gprsOf(&s.GPRs, r.RAX, r.RBX, r.RCX, r.RDX, r.RSI, r.RDI, r.RSP, r.RBP, r.R8, r.R9, r.R10, r.R11, r.R12, r.R13, r.R14, r.R15, r.RIP, r.RFLAGS)
	if s.InCall {
		// Back onto the port write that made the call: `out %al, $SyscallPort` (e6 f0), in
		// the stub or at a patched site.
		rip := r.RIP
		if rip < 2 || rip > uint64(len(mem)) || mem[rip-2] != 0xe6 || mem[rip-1] != SyscallPort {
			return s, fmt.Errorf("unikernel: capture: thread %d is in a call not made by a 2-byte port write (rip %#x)", t.tid, rip)
		}
		s.GPRs[16] = rip - 2
		s.KernelMode = rip == addrStub+2 && t.uc.vm.host.mode == ModeVMX
	}
	x, err := getXSAVE(t.cpu.fd)
	if err != nil {
		return s, err
	}
	xs := make([]byte, 4096)
	for i, w := range x.Region {
		binary.LittleEndian.PutUint32(xs[4*i:], w)
	}
	n := len(xs)
	for n > 0 && xs[n-1] == 0 {
		n--
	}
	s.XSAVE = xs[:n:n]
	if s.FSBase, err = getMSR(t.cpu.fd, msrFSBase); err != nil {
		return s, err
	}
	if s.GSBase, err = getMSR(t.cpu.fd, msrGSBase); err != nil {
		return s, err
	}
	ts := &t.ts
	s.ClearTID, s.RobustList, s.Sigmask, s.Rseq = ts.clearTID, ts.robustList, ts.sigmask, ts.rseq
	s.SigPending = atomic.LoadUint64(&ts.sigPending)
	if ts.altstack != ([24]byte{}) {
		s.Altstack = append([]byte(nil), ts.altstack[:]...)
	}
	return s, nil
}
