// Package runtimes owns the OpenWhisk action contract for the managed kinds seuss runs
// (nodejs:20 and python:3.11): the launchers that run inside a runtime instance (a
// unikernel context, or a host process for the baseline), the read-only root
// directory each kind runs in, and the decoding of the launchers' answers.
//
// It knows nothing of how an instance is created: package unikernel serves a root to a
// guest, package runtimes/process starts host processes. Both start a launcher with
// Kind.Argv and speak the protocol below.
//
// # Protocol (the actionloop protocol, openwhisk-protocol.md §6.5, extended to init)
//
// The executor writes one JSON line on the launcher's fd 0 per request and reads one
// line from its fd 3 per request. Logs are what the launcher writes on fds 1 and 2.
//
//	init:  {"value":{"name":…,"main":…,"code":…,"binary":…,"env":{…}}}
//	       (a line whose only top-level keys are "value" and, optionally, "warmup")
//	run:   {"value":…,"namespace":…,"action_name":…,"action_version":…,
//	        "activation_id":…,"transaction_id":…,"deadline":"…"[,"api_key":…]}
//	       (any line with another top-level key)
//
// A successful init writes no sentinel: logs printed while loading the action are
// flushed with the init answer and belong to the first activation, as with the stock
// runtimes. After every run, and after a failed init, the launcher writes the sentinel line
// XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX on both fd 1 and fd 2, before the answer on
// fd 3, so that once the answer is read the logs are complete as soon as the pipes are
// drained. Each stream's pending logs go out in one write at the end of an activation
// (or every 64 KiB): inside a unikernel context each system call is a VM exit.
//
// # Logs of an activation killed at its time limit
//
// The stock runtimes write logs through, so the record of an action killed at its time
// limit holds what it printed before. The launchers keep that without a system call
// more on the normal path:
//
//   - The flush request. Before it kills a launcher whose init or run outlived its time
//     limit, the executor sends it SIGUSR2 (a host process: kill(2) to its pid; a UC:
//     unikernel.UC.Signal) and waits at most 100 ms for the line "!flushed" on fd 3; the
//     launcher writes the logs it holds on fds 1 and 2 first (no sentinels). The python
//     launcher blocks SIGUSR2 in every thread and keeps a thread asleep in sigwait for
//     it: woken whatever the main thread does (a busy loop gives up the interpreter lock
//     within the switch interval, a blocking call has given it up), and the only way a
//     signal from outside reaches a UC, which has no asynchronous delivery. A launcher
//     that does not take the signal is ended by it (nodejs, host process) or never sees
//     it (nodejs, UC: no wait).
//   - Late write-through. The nodejs launcher arms a timer at each run (libuv keeps
//     timers in user space: no system call to arm or clear it); a run still going after
//     100 ms writes its logs out then and every later line as it comes. The timer fires
//     only where the event loop waits (a promise that never settles, a long await): a
//     synchronous infinite loop keeps its lines buffered and they are lost when it is
//     killed (a thread of its own, as python's, would not help: the buffer is the main
//     isolate's).
//
// Either way the lines reach the record as any others (activation.LogLine, the stream,
// the time they were read) and count against the activation's log limit.
//
// # Status encoding on fd 3
//
// The stock runtimes answer over HTTP with a status; the launchers encode it on the
// answer line:
//
//	{"payload":"hi"}            status 200, body = the whole line (any JSON text)
//	!502 {"error":"…"}          status 502, body = the JSON after "!<status> "
//
// A JSON text never begins with '!', so the two forms cannot be confused, and a line
// from an unmodified actionloop launcher (always bare JSON) decodes as 200. DecodeReply
// implements this.
//
// # Snapshot points and warm-up
//
// Between requests a launcher is blocked in read(0): once before its first init
// ("ready, awaiting init") and after a successful init ("initialised, awaiting run").
// An init line with "warmup": true starts a dummy activation: the launcher answers the
// init and the next run exactly as usual (answers, logs, sentinels), then forgets the
// action (environment, working directory, loaded modules, extracted files) and is again
// awaiting its first init. Runtime snapshots are taken after a warm-up, so the
// interpreter's code paths for init and run are already warm in every restored
// instance. WarmupInit and WarmupRun are the messages to send.
//
// # Roots
//
// A root is a directory holding the interpreter at its host path (/usr/bin/node,
// /usr/bin/python3.11), its shared libraries (as ldd resolves them, for python's
// extension modules too) and /lib64/ld-linux-x86-64.so.2, its standard library
// (python's without tests, IDLE, Tk, ensurepip and the static libraries), the
// launcher under /seuss/, an empty /tmp (where a unikernel context mounts its
// in-memory /tmp), and manifest.json: every file's size, mode and SHA-256, and a root
// digest over the kind, the argv and all files, by which snapshots are keyed. BuildRoot
// makes one (make rootfs runs ./runtimes/mkroot), rebuilding only when the digest
// changes; LoadRoot reads one back; Kind.Argv and Env start the launcher inside it.
package runtimes
