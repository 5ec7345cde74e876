// Package process is the host-process executor: the baseline seuss is measured
// against. Each cold start (Path B) starts a fresh host process running the kind's
// launcher (package runtimes) with the host's interpreter; the instance stays alive
// while warm and serves later activations of the same ActionKey (Path H), until it is
// idle longer than Config.IdleTTL or evicted to fit Config.MemoryBudgetMB.
//
// Limits, per activation:
//   - time: init and run each get Limits.Timeout; past it the process group is killed
//     (ErrInitTimeout, ErrRunTimeout);
//   - memory: a cgroup v2 memory.max per instance when this process can create one (as
//     root, with the memory controller delegated); otherwise an honest approximation:
//     RLIMIT_AS = MemoryMB for python (the launcher sets it at start from
//     SEUSS_RLIMIT_AS, before any action code; a MemoryError makes it exit with status
//     86) and V8's --max-old-space-size = MemoryMB for node (heap only: native buffers
//     are not bounded). Either way the outcome wraps ErrMemoryLimit.
//     Executor.MemoryLimitMechanism says which is in use;
//   - logs: at most Limits.LogBytes of line text, LogsTruncated when more was dropped;
//   - death: a process that exits before answering gives ErrInitExited/ErrRunExited.
//
// An instance whose init or run did not answer 200 is never reused, as OpenWhisk
// destroys a container after a developer error.
//
// Isolation is that of a host process: with Config.UID the launchers run as another
// user (e.g. nobody), in their own process group and directory; nothing more. It is a
// baseline for speed, not a sandbox.
//
// It knows nothing of unikernels or snapshots; it must stay honest and fast: no sleeps,
// no polling (pipe deadlines through Go's poller, one goroutine per output stream).
package process
