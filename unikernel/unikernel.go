// Package unikernel runs unmodified Linux x86-64 programs in unikernel contexts (UCs): a
// KVM guest that executes only at CPL3, whose system calls exit to this process and are
// served by a library OS written in Go (Kernel).
//
// The package owns the VM and vCPUs (through gokvm's kvm package plus the ioctls it lacks),
// the static guest set-up (identity page tables, GDT, TSS with an I/O bitmap that admits only
// the system-call port, IDT, the entry stub), the ELF loader, and the library OS: memory
// map, descriptors, a read-only root served from a host directory, an in-memory /tmp, a few
// generated /proc files (proc.go), threads (clone.go), futexes (futex.go), epoll, eventfd,
// poll and socketpairs (epoll.go), self-sent signals (signal.go), and time without exits
// through a vDSO and a time page (vdso.go). It knows nothing of OpenWhisk, snapshots or pools; those build on VM (a reusable
// shell created ahead of time), UC (its lifecycle) and the plain state structs.
//
// Threads: one vCPU per guest thread, driven by a goroutine locked to an OS thread that
// loops on KVM_RUN (clone.go says why not several threads per vCPU: the host scheduler
// then preempts busy guest threads, and a blocked thread costs a parked OS thread). A
// system call costs one KVM_RUN (KVM_CAP_SYNC_REGS): the guest's
// `syscall` lands in a stub that writes SyscallPort; the handler runs in Go on that goroutine
// and may block there, so "every thread is inside a system call" is the natural quiescent
// point for a snapshot.
//
// Layout of guest memory (guest virtual = guest physical, one host mapping, one slot):
//
//	[0, 2 MiB)           system area, supervisor-only 4 KiB pages (page 0 unmapped):
//	                     page tables, GDT, IDT, exception stubs, TSS + I/O bitmap,
//	                     exception stack; user read-only: the syscall stub page, the
//	                     time page (0x60000) and the vDSO (0x61000, 2 pages)
//	[2 MiB, ...)         ET_EXEC images at their addresses; ET_DYN programs at 16 MiB;
//	                     the brk heap after the program
//	[..., size-8 MiB)    mmap area, allocated top-down (ld.so, libraries, anonymous memory)
//	[size-8 MiB, size)   the initial thread's stack
//
// The guest can touch every page of its address space without asking (the page tables are
// static); Config.Memory is the commit limit the library OS enforces on mmap, brk and
// mprotect, and the memory guard (memguard.go) stops a UC that touches more than a little
// host memory outside what it committed, so host memory stays near the limit although the
// address space is larger (runtimes reserve far more than they commit).
//
// System calls: a `syscall` instruction enters the stub at LSTAR; the first call from each
// site rewrites that site into the stub's own 2-byte port write, so later calls from it cost
// one trap under PVM instead of two (Thread.syscall). Under hardware VMX the stub runs at
// CPL0 and returns with sysretq; under PVM it stays at CPL3 and the VMM returns by writing
// RIP and RFLAGS. HostMode probes which, once per process.
//
// What a snapshot (a later package) needs, and where it is: guest memory is VM.mem, one
// host mapping (file mappings of runtime text are recorded per vma with their guest path
// and offset); per thread, the vCPU's registers, XSAVE area (getXSAVE) and MSRs, with the
// FS/GS bases mirrored in Thread and the library OS's per-thread state in threadState;
// the library OS's state is Kernel: the vma list, brk and commit charge (addrSpace), the
// descriptor table (each open file description keeps the guest path it was opened by, so
// root files can be reopened), cwd, umask, signal actions, /tmp (tmpFS: plain maps and
// byte slices), futex waiters. Quiescence: Pause returns once no thread is inside KVM_RUN;
// threads blocked in a handler (read(0) of the next request) stay there.
package unikernel

import (
	"errors"
	"io"
	"log/slog"
	"time"
)

// Config is what a UC is created with. Zero fields take the defaults shown.
type Config struct {
	// Root is the host directory served read-only as the guest's "/" (default "/").
	Root string
	// Memory is the commit limit: anonymous and private writable mappings, brk and the
	// stack. Past it mmap and brk fail with ENOMEM (default 256 MiB).
	Memory uint64
	// AddressSpace is the guest's size (the KVM slot), default Memory + 2 GiB rounded up to
	// 2 MiB: runtimes reserve far more address space than they commit (V8's code range per
	// isolate, so per worker thread,
	// glibc's 64 MiB per-thread malloc arenas, 8 MiB thread stacks, all PROT_NONE until
	// used). The mapping is MAP_NORESERVE, so only touched pages cost host memory; the
	// size costs ~0.7 ms per GiB of slot registration. It also bounds host memory: the
	// guest can touch every page of it.
	AddressSpace uint64
	// Timeout stops the UC after this wall time (0: none).
	Timeout time.Duration
	// Env is the guest's environment, "K=V" strings.
	Env []string
	// Cwd is the initial working directory (default "/").
	Cwd string
	// Stdin, Stdout and Stderr are fds 0, 1 and 2 (nil: empty input, discarded output).
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// ExtraWriters become descriptors 3, 4, ... open for writing in the guest (the
	// actionloop protocol answers on fd 3). They do not count against MaxOutput.
	ExtraWriters []io.Writer
	// MaxOutput caps the bytes written to fds 1 and 2 together; the rest is dropped
	// (default 16 MiB; negative: unlimited).
	MaxOutput int64
	// MaxFDs caps open descriptors (default 1024).
	MaxFDs int
	// MaxThreads caps live guest threads, each with its own vCPU; past it clone fails
	// with EAGAIN (default DefaultMaxThreads).
	MaxThreads int
	// NoVDSO gives the guest no vDSO: every clock_gettime is a system call (for
	// comparisons; see vdso.go).
	NoVDSO bool
	// NoSyscallPatching keeps every `syscall` instruction as it is. By default the first
	// call from each site rewrites it into a direct port write, which halves the cost of a
	// system call under PVM (see Thread.syscall).
	NoSyscallPatching bool
	// Log receives warnings such as the first use of an unimplemented system call.
	Log *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Root == "" {
		c.Root = "/"
	}
	if c.Memory == 0 {
		c.Memory = 256 << 20
	}
	if c.AddressSpace == 0 {
		c.AddressSpace = min(c.Memory+2<<30, maxGuestSize)
	}
	c.AddressSpace = (c.AddressSpace + largePage - 1) &^ (largePage - 1)
	if c.MaxOutput == 0 {
		c.MaxOutput = 16 << 20
	}
	if c.MaxFDs == 0 {
		c.MaxFDs = 1024
	}
	if c.MaxThreads <= 0 {
		c.MaxThreads = DefaultMaxThreads
	}
}

// Errors that end a UC; Result.Err wraps one of them.
var (
	// ErrTimeout: the UC ran past Config.Timeout and was stopped.
	ErrTimeout = errors.New("unikernel: time limit exceeded")
	// ErrGuestFault: the guest took an exception it cannot handle (no signal delivery yet).
	ErrGuestFault = errors.New("unikernel: guest fault")
	// ErrVMExit: the VM stopped in a way a well-behaved guest never causes (shutdown,
	// failed entry, an unexpected port).
	ErrVMExit = errors.New("unikernel: unexpected VM exit")
	// ErrKilled: Close or Kill stopped the UC.
	ErrKilled = errors.New("unikernel: killed")
	// ErrState: the operation is not allowed in the UC's current state.
	ErrState = errors.New("unikernel: wrong state")
)

// Result is how a UC ended.
type Result struct {
	// Status is the exit status (0-255), 128+signal when the guest was killed by one.
	Status int
	// Err is nil when the guest exited by itself, else why it was stopped.
	Err error
	// OutputTruncated says output past Config.MaxOutput was dropped.
	OutputTruncated bool
	Stats           Stats
}

// Stats describes a UC's run.
type Stats struct {
	Exits    uint64 // KVM_RUN returns
	Syscalls []SyscallCount
	Unknown  []uint64 // unimplemented system calls the guest made
	// PagesTouched counts the 4 KiB pages of guest memory mapped in the host at the end
	// (touched by the guest, or around its faults by the host's fault-around), and
	// PagesPrivate those of them that are the UC's own (anonymous or copied on write).
	PagesTouched, PagesPrivate uint64
	Committed                  uint64 // bytes charged against the memory limit at the end
	Wall                       time.Duration
	// InGuest is the time spent inside KVM_RUN (guest code plus the exit and entry cost
	// and guest page faults); InHandlers the time the library OS spent serving exits.
	InGuest, InHandlers time.Duration
	Mode                Mode
	// PatchedSites counts syscall instructions rewritten into direct port writes.
	PatchedSites uint64
	// Threads is how many guest threads ran (the first included), ThreadsPeak the most
	// alive at once (each had a vCPU).
	Threads, ThreadsPeak int
}
