package unikernel

import (
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Kernel is the library OS of one UC: everything a Linux process would find in the kernel,
// as plain Go state (so that snapshots can save and restore it). It knows nothing of KVM:
// threads reach the vCPU through the Thread type.
type Kernel struct {
	cfg  *Config
	as   *addrSpace
	root *rootFS
	tmp  *tmpFS
	fds  fdTable
	log  *slog.Logger

	// stopped is closed when the UC stops; blocking handlers give up (EINTR) on it.
	stopped <-chan struct{}
	// exitGroup ends the UC with a status (called by exit_group, fatal signals).
	exitGroup func(status int)
	// threads creates and ends guest threads (nil: single-threaded, in unit tests).
	threads threadOps

	mu         sync.Mutex
	cwd        string
	umask      uint32
	sigactions [65][32]byte // raw struct sigaction per signal, recorded
	exe        string       // guest path of the program
	argv0      string

	pid     int
	nextTID int // last thread id handed out (guarded by the UC's mu)
	start   time.Time
	futexes futexTable

	outBytes     atomic.Int64
	outTruncated atomic.Bool

	// sleeping counts threads asleep in a restartable wait (see asleep in quiesce.go):
	// snapshots capture a UC only when every thread inside a system call is asleep. It
	// wakes a waiter for quiescence when a thread falls asleep (sleepCount).
	sleeping sleepCount

	// Statistics.
	counts        [512]atomic.Uint64
	other         atomic.Uint64
	unknownMu     sync.Mutex
	unknownLogged map[uint64]bool
	warned        sync.Map // warnOnce keys
	// hostMadvise drops host pages (MADV_DONTNEED) of guest memory; nil in tests.
	hostMadvise func(addr, n uint64) error
}

func newKernel(cfg *Config, as *addrSpace, root *rootFS, stopped <-chan struct{}) *Kernel {
	k := &Kernel{
		cfg: cfg, as: as, root: root, tmp: newTmpFS(int64(cfg.Memory) / 2),
		log: cfg.Log, stopped: stopped, cwd: "/", umask: 0o022, pid: 2, start: time.Now(),
		unknownLogged: map[uint64]bool{},
	}
	k.nextTID = k.pid
	if cfg.Cwd != "" {
		k.cwd = cfg.Cwd
	}
	k.fds.max = cfg.MaxFDs
	k.futexes.waiters = map[uint64][]*futexWaiter{}
	if k.exitGroup == nil {
		k.exitGroup = func(int) {}
	}
	return k
}

// SyscallCount is one line of the per-call statistics.
type SyscallCount struct {
	Nr    uint64
	Name  string
	Count uint64
}

// syscallCounts returns the calls made so far, most frequent first.
func (k *Kernel) syscallCounts() []SyscallCount {
	var out []SyscallCount
	for nr := range k.counts {
		if c := k.counts[nr].Load(); c > 0 {
			out = append(out, SyscallCount{Nr: uint64(nr), Name: syscallName(uint64(nr)), Count: c})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Nr < out[j].Nr
	})
	return out
}

func syscallName(nr uint64) string {
	if n, ok := syscallNames[nr]; ok {
		return n
	}
	return fmt.Sprintf("syscall_%d", nr)
}

// sysThread is what system-call handlers need from the calling thread. The KVM thread
// implements it; tests and the fuzz target use a plain one.
type sysThread interface {
	TID() int
	setFSBase(v uint64) error
	fsBaseValue() uint64
	setGSBase(v uint64) error
	state() *threadState
}

// threadState is the library OS's per-thread state (saved by snapshots).
type threadState struct {
	clearTID   uint64
	robustList uint64
	sigmask    uint64
	sigPending uint64 // signals waiting for delivery, accessed atomically (signal.go)
	altstack   [24]byte
	rseq       uint64
	exiting    bool
	exitStatus int
}
