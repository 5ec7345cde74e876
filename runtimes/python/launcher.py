"""seuss launcher for python:3.11: the OpenWhisk action contract over the actionloop
protocol (runtimes/doc.go describes the wire format).

fd 0: one JSON line per request (init or run); fd 3: one reply line per request;
fd 1 and 2: the action's logs, buffered and written once per activation, each
followed by the sentinel after every run and after a failed init. SIGUSR2 asks for the
buffered logs at once (the executor's flush request before it kills a launcher at its
time limit): a thread waiting in sigwait writes them and answers "!flushed" on fd 3.

Between requests the launcher is blocked in read(0): those are the snapshot points
("ready, awaiting init" and "initialised, awaiting run"). An init line carrying
"warmup": true is a dummy activation: after the run that follows it the launcher
forgets the action and is again awaiting its first init.

Behaviour and message texts follow openwhisk-runtime-python (core/python3Action/lib/
launcher.py, bin/compile) behind the actionloop proxy of openwhisk-runtime-go; this is an
independent implementation. Run with -S -E -B: no site packages of the host, only the
standard library and what the action brings.
"""

import _thread
import io
import json
import os
import signal
import sys

SENTINEL = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX\n"
REPLY_FD = 3
# A MemoryError means the action outgrew its memory limit (an address-space rlimit on
# host processes): the launcher exits with this status, as an out-of-memory kill would.
EXIT_MEMORY = 86

NOT_A_DICT = "The action did not return a dictionary or array."
CANNOT_START = "Cannot start action. Check logs for details."
NO_BINARY = "The action failed to generate or locate a binary. See logs for details."


class _LogStream(io.TextIOWrapper):
    """A log stream that remembers whether its output ends a line, so that the
    sentinel always starts one."""

    ends_line = True

    def write(self, s):
        if s:
            self.ends_line = s[-1] == "\n"
        return super().write(s)


def _log_stream(fd):
    # One write per flush: a 64 KiB buffer, no line buffering (stderr is line-buffered
    # by default since Python 3.9, which would cost one write per line).
    raw = io.FileIO(fd, "wb", closefd=False)
    return _LogStream(
        io.BufferedWriter(raw, buffer_size=64 << 10),
        encoding="utf-8",
        errors="backslashreplace",
        line_buffering=False,
        write_through=False,
    )


# The host-process executor bounds the address space here, before any action code
# runs (it cannot prlimit a process of another user without CAP_SYS_RESOURCE).
_limit = os.environ.pop("SEUSS_RLIMIT_AS", None)
if _limit:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (int(_limit), int(_limit)))

sys.stdout = _log_stream(1)
sys.stderr = _log_stream(2)


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


# The flush request (runtimes/doc.go): an action that hangs past its time limit keeps
# the lines it printed. A thread asleep in sigwait costs nothing per activation (no
# system call on the normal path) and is woken by the signal alone, whatever the main
# thread is doing: in a busy loop the main thread gives up the interpreter lock within
# the switch interval; in a blocking call it has given it up already. Blocked in every
# thread (the main thread's mask is inherited), so no handler ever runs on the main
# thread. Inside a UC the library OS hands a host signal to a thread waiting for it.
FLUSH_SIGNAL = signal.SIGUSR2
FLUSHED = b"!flushed\n"


def _flusher():
    while True:
        try:
            signal.sigwait((FLUSH_SIGNAL,))
        except OSError:
            return
        # Each write gives up the interpreter lock and takes it back from a main thread
        # that may be spinning: after a switch interval (5 ms) each time by default. The
        # launcher is about to be killed: hand the lock over at once, so that the three
        # writes fit the executor's bounded wait even on a loaded host.
        sys.setswitchinterval(1e-6)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        try:
            _write_all(REPLY_FD, FLUSHED)
        except OSError:
            return


signal.pthread_sigmask(signal.SIG_BLOCK, (FLUSH_SIGNAL,))
_thread.start_new_thread(_flusher, ())


_carry = b""
_rbuf = bytearray(1 << 20)


def _read_line():
    """Blocks in read(0) until a whole line is there; None at end of input."""
    global _carry
    parts = [_carry] if _carry else []
    nl = _carry.find(b"\n")
    total = len(_carry)
    while nl < 0:
        # Into a buffer kept for the launcher's life: os.read would map and unmap a
        # fresh 1 MiB object on every call (two extra system calls per activation).
        n = os.readv(0, [_rbuf])
        if n == 0:
            return None
        piece = bytes(_rbuf[:n])
        i = piece.find(b"\n")
        if i >= 0:
            nl = total + i
        parts.append(piece)
        total += len(piece)
    data = parts[0] if len(parts) == 1 else b"".join(parts)
    _carry = data[nl + 1 :]
    return data[:nl]


def _reply(status, body, sentinels, text=None):
    """Writes the logs (with the sentinels when an activation ended), then the answer:
    bare JSON for 200, "!<status> <json>" otherwise."""
    for stream in (sys.stdout, sys.stderr):
        if sentinels:
            if not getattr(stream, "ends_line", True):
                stream.write("\n")
            stream.write(SENTINEL)
        stream.flush()
    if text is None:
        text = json.dumps(body, ensure_ascii=False)
    if status != 200:
        text = "!%d %s" % (status, text)
    _write_all(REPLY_FD, (text + "\n").encode("utf-8"))


def _traceback():
    import traceback

    return traceback.format_exc()


# ---- state -------------------------------------------------------------------------

_base_env = dict(os.environ)
_base_cwd = os.getcwd()
_base_path = list(sys.path)
_counter = 0
_pid = os.getpid()

_state = "ready"  # ready | stopped
_main = None
_workdir = None
_warming = False


def _rmtree(top):
    for root, dirs, files in os.walk(top, topdown=False):
        for f in files:
            os.unlink(os.path.join(root, f))
        for d in dirs:
            p = os.path.join(root, d)
            if os.path.islink(p):
                os.unlink(p)
            else:
                os.rmdir(p)
    os.rmdir(top)


def _pristine():
    """Forgets the action: back to a launcher awaiting its first init."""
    global _state, _main, _workdir, _warming
    os.environ.clear()
    os.environ.update(_base_env)
    os.chdir(_base_cwd)
    sys.path[:] = _base_path
    if _workdir is not None:
        for name, mod in list(sys.modules.items()):
            f = getattr(mod, "__file__", None) or ""
            if name == "main__" or f.startswith(_workdir + os.sep):
                del sys.modules[name]
        try:
            _rmtree(_workdir)
        except OSError:
            pass
    _state, _main, _workdir, _warming = "ready", None, None, False


def _extract(data, workdir):
    """Unpacks a binary action as the actionloop proxy does: zip, tar.gz, or else the
    bytes are the source file itself."""
    if data[:4] == b"PK\x03\x04":
        import zipfile

        with zipfile.ZipFile(io.BytesIO(data)) as z:
            z.extractall(workdir)
    elif data[:2] == b"\x1f\x8b":
        import tarfile

        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as t:
            # Python 3.11.2 has no extraction filters: refuse what would escape.
            root = os.path.realpath(workdir)
            for m in t.getmembers():
                dest = os.path.realpath(os.path.join(root, m.name))
                if not (dest == root or dest.startswith(root + os.sep)) or m.islnk() or m.issym() and os.path.isabs(m.linkname) or m.isdev():
                    raise ValueError("archive member %r escapes the action directory" % m.name)
            t.extractall(workdir)
    else:
        with open(os.path.join(workdir, "__main__.py"), "wb") as f:
            f.write(data)


def _virtualenv(workdir):
    """The virtualenv/ activation script of a zip action: None without a virtualenv,
    "" for an invalid one (reported on stderr, as the stock build step does)."""
    venv = os.path.join(workdir, "virtualenv")
    if not os.path.isdir(venv):
        return None
    for sub in ("bin", "Scripts"):
        activate = os.path.join(venv, sub, "activate_this.py")
        if os.path.exists(activate):
            return activate
    sys.stderr.write("Invalid virtualenv. Zip file does not include 'activate_this.py'.\n")
    return ""


def _init(value, warmup):
    global _state, _main, _workdir, _warming, _counter
    if _main is not None:
        return _reply(403, {"error": "Cannot initialize the action more than once."}, False)
    if _state != "ready":
        return _reply(502, {"error": "System not ready, status is %s." % _state}, False)
    if not isinstance(value, dict):
        value = {}
    code = value.get("code")
    if not isinstance(code, str) or code == "":
        return _reply(403, {"error": "Missing main/no code to execute."}, False)
    name = value.get("main") or "main"
    env = value.get("env")
    if isinstance(env, dict):
        for k, v in env.items():
            os.environ[str(k)] = v if isinstance(v, str) else json.dumps(v)

    def fail(msg):
        if warmup:
            _pristine()
        else:
            globals()["_state"] = "stopped"
        return _reply(502, {"error": msg}, True)

    _counter += 1
    tmp = os.environ.get("TMPDIR") or "/tmp"
    _workdir = os.path.join(tmp, "action-%d-%d" % (_pid, _counter))
    os.mkdir(_workdir)
    path = os.path.join(_workdir, "main__.py")
    source = code
    try:
        if value.get("binary"):
            import binascii

            _extract(binascii.a2b_base64(code), _workdir)
            src = os.path.join(_workdir, "__main__.py")
            if os.path.exists(src):
                os.rename(src, path)
            if not os.path.exists(path):
                sys.stderr.write("Zip file does not include main__\n")
                return fail(NO_BINARY)
            with open(path, "rb") as f:
                source = f.read()
        else:
            # Written for tracebacks' sake (3 system calls), compiled from memory.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                _write_all(fd, code.encode("utf-8"))
            finally:
                os.close(fd)
    except Exception:
        sys.stderr.write(_traceback())
        return fail(NO_BINARY)
    try:
        compiled = compile(source, path, "exec")
    except SyntaxError as er:
        sys.stderr.write("%s\n" % er)
        return fail(NO_BINARY)

    activate = _virtualenv(_workdir)
    if activate == "":
        return fail(NO_BINARY)

    os.chdir(_workdir)
    sys.path.insert(0, _workdir)
    try:
        if activate:
            with open(activate) as f:
                exec(compile(f.read(), activate, "exec"), dict(__file__=activate))
        import types

        mod = types.ModuleType("main__")
        mod.__file__ = path
        sys.modules["main__"] = mod
        exec(compiled, mod.__dict__)
        fn = getattr(mod, name, None)
        if fn is None:
            raise ImportError("cannot import name '%s' from 'main__' (%s)" % (name, path))
    except MemoryError:
        _die_of_memory()
    except BaseException:
        sys.stderr.write(_traceback())
        return fail(CANNOT_START)
    _main, _warming = fn, bool(warmup)
    return _reply(200, {"ok": True}, False)


def _die_of_memory():
    sys.stderr.write(_traceback())
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_MEMORY)


def _run(args):
    if _main is None:
        return _reply(500, {"error": "no action defined yet"}, True)
    payload = {}
    for key, v in args.items():
        if key == "value":
            payload = v
        else:
            os.environ["__OW_%s" % key.upper()] = v if isinstance(v, str) else json.dumps(v)
    try:
        res = _main(payload)
    except MemoryError:
        _die_of_memory()
    except Exception as ex:
        print(_traceback(), file=sys.stderr)
        res = {"error": str(ex)}
    try:
        text = json.dumps(res, ensure_ascii=False)
    except Exception:
        # The stock launcher dies here too; the invoker sees the runtime exit.
        sys.stderr.write(_traceback())
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    if isinstance(res, (dict, list)):
        _reply(200, None, True, text)
    else:
        _reply(502, {"error": NOT_A_DICT}, True)
    if _warming:
        _pristine()


def _is_init(msg):
    for k in msg:
        if k != "value" and k != "warmup":
            return False
    return True


def main():
    while True:
        line = _read_line()
        if line is None:
            break
        try:
            msg = json.loads(line)
        except ValueError:
            msg = None
        if not isinstance(msg, dict):
            _reply(400, {"error": "Error unmarshaling request"}, False)
            continue
        if _is_init(msg):
            _init(msg.get("value"), msg.get("warmup") is True)
        else:
            _run(msg)
    sys.stdout.flush()
    sys.stderr.flush()


if __name__ == "__main__":
    main()
