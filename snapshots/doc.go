// Package snapshots deploys OpenWhisk activations into unikernel contexts (UCs) by
// SEUSS's paths, and owns the snapshot files, their cache and the pools behind them.
// Executor implements activation.Executor; unikernel provides capture and restore of a
// UC (VMState, MemoryRuns, RestoreOnVM), sharing the page store and accounting. It knows
// the launchers' protocol (package runtimes) but nothing of Kafka or the stores.
//
// # Paths
//
//   - B: no runtime snapshot of the kind (in this root) yet. Boot the launcher in a fresh
//     UC, send the warm-up activation (runtimes.WarmupInit, WarmupRun: the anticipatory
//     optimisation), wait until every thread is asleep in a restartable call
//     (UC.WaitQuiescent: the launcher blocked reading fd 0), capture the runtime
//     snapshot, then init and run the job in the same UC. One booter per kind; the others
//     wait for it and take C.
//   - C: restore the runtime snapshot, init, capture the function snapshot (the state,
//     and the pages that differ from the runtime snapshot, copied while the UC is paused,
//     stored in the background), run. Key: kind, root digest, invoking namespace, action
//     FQN, revision, code digest and the init message's digest (per-activation __OW_*
//     values left out).
//   - W: restore the function snapshot (the runtime memory, then its diff), run.
//   - H: an idle live UC of the same ActionKey (never across actions, revisions or
//     namespaces), kept for Config.IdleTTL under a memory budget (LRU eviction).
//
// Config.NoSnapshots is the boot baseline: every non-hot activation takes B without
// warm-up and nothing is captured.
//
// A snapshot that is corrupt, truncated or does not match (another root, parent or host)
// is never run: Decode checks sizes, versions and the checksum before anything else and
// the contents after; a runtime memory file is checked against its digest and a function
// snapshot's pages against their hashes the first time a process uses them. The store
// logs and deletes it and the executor falls back: W to C, C to B.
//
// # Restore
//
// A restore takes a VM shell from a pool (KVM VM, memory slot, system area and as many
// vCPUs as the snapshot has threads, made ahead), preferably one where the runtime
// snapshot's memory file is already mapped MAP_PRIVATE (its data ranges only: the rest of
// a fresh shell is zero like the file's holes), or better a recycled VM: the VM of an
// idle C or W UC that was evicted, with the runtime image copied back into the pages the UC
// changed (UC.RecycleVM, resetToRuntime). No mapping changes in a recycled VM, so the
// hypervisor's page tables survive and the next guest's first run does not fault the
// runtime in again (W 1-2 ms instead of 8-13). A W restore then copies the function's
// pages from the page store (a mapped file) and clears its zero runs in place;
// unikernel.RestoreOnVM writes the library OS and the vCPUs.
// Threads asleep in a call when captured make that call again when restored.
//
// # Files
//
// A Store directory (Config.SnapshotDir) holds runtimes/<id>.snap and <id>.mem, the
// function log functions/seg-<seq>.log (function snapshots' state files as appended
// records, drawn in funclog.go; functions/<id>.snap of earlier stores still load) and
// pages/ (see Store). A state file (.snap, or a function log record's payload), format
// 1.1 (the format version is independent of releases; a reader refuses an unknown major
// or a newer minor and reads every older minor of its major; golden files per version in
// testdata/):
//
//	offset  size  field
//	0       8     magic "SEUSSNAP"
//	8       2     format major (little endian), 1
//	10      2     format minor, 1 (see FormatMinor)
//	12      4     header length H (<= 64 KiB)
//	16      8     payload length P (<= 256 MiB)
//	24      8     diff length D (<= 64 MiB)
//	32      H     header: JSON of Header
//	32+H    P     payload: JSON of unikernel.VMState
//	32+H+P  D     runs: R runs, then the page references, little endian:
//	                u32 R; R x {u64 addr, u32 pages, u32 flags (bit 0: zero, bit 1: in
//	                the memory file)}; for each page of each run with neither flag, in
//	                order: {u32 slot, [32]byte sha256}
//	end-32  32    SHA-256 of everything before it
//
// A runtime snapshot's memory is a separate sparse file, <id>.mem, offset = guest
// address; its data pages hash to Header.MemoryDigest. A function snapshot's pages live in
// the shared page store (package sharing), found by slot and checked by hash.
//
// # Sharing
//
// Every UC of a kind maps the same runtime memory file (one copy in the page cache,
// copied on write). Runtime text is in that file, not mapped from the root's files: a
// restored guest must find every page of a mapping even where the booted UC never
// touched it, and one mapping per file range would cost a system call per range on every
// restore. A function snapshot's pages live once in the content-addressed page store,
// shared by every function snapshot holding the same page; zero pages are runs, not
// pages. Store.List reports each function snapshot's own and shared bytes from the page
// store's reference counts; Executor.LivePrivateBytes each live UC's private memory from
// the host's page tables.
package snapshots
