package runtimes

import (
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

//go:embed nodejs/launcher.js
var nodeLauncher []byte

//go:embed python/launcher.py
var pythonLauncher []byte

// ErrUnknownKind is returned by Resolve for a kind seuss has no runtime for.
var ErrUnknownKind = errors.New("runtimes: unknown kind")

// Kind is one runtime kind: how to start its launcher, inside a root or on the host.
type Kind struct {
	// Name is the canonical kind, e.g. "nodejs:20".
	Name string
	// Aliases are the other kind names that resolve to it, e.g. "nodejs:default".
	Aliases []string
	// Interpreter is the interpreter's path, the same inside the root and on the host,
	// so that it finds its standard library relative to itself in both.
	Interpreter string
	// Flags are the interpreter's arguments before the launcher path.
	Flags []string
	// Launcher is the launcher's path inside the root.
	Launcher string
	// LauncherName is the launcher's file name (its base name under runtimes/<lang>/).
	LauncherName string
	// Libraries lists directories (inside the root and on the host) holding the
	// interpreter's own tree, copied whole into the root, with Excluded paths (relative
	// to the library directory; a trailing * matches any suffix) left out.
	Libraries []string
	Excluded  []string
	// InitOK is the body of a successful init answer, as the stock runtime gives it.
	InitOK string

	source []byte
	lang   string
}

var kinds = []Kind{
	{
		Name:         "nodejs:20",
		Aliases:      []string{"nodejs:default"},
		Interpreter:  "/usr/bin/node",
		Launcher:     "/seuss/launcher.js",
		LauncherName: "launcher.js",
		InitOK:       `{"OK":true}`,
		source:       nodeLauncher,
		lang:         "nodejs",
	},
	{
		Name:        "python:3.11",
		Aliases:     []string{"python:3", "python:default"},
		Interpreter: "/usr/bin/python3.11",
		// -S: no site (no host site-packages; the virtualenv/ of an action adds its own);
		// -E: no PYTHON* variables; -B: no .pyc writes into a read-only root.
		Flags:        []string{"-S", "-E", "-B"},
		Launcher:     "/seuss/launcher.py",
		LauncherName: "launcher.py",
		Libraries:    []string{"/usr/lib/python3.11"},
		// Tests, IDLE, Tk, ensurepip, the static libraries for building extensions, and
		// the test extension modules.
		Excluded: []string{"test", "idlelib", "tkinter", "ensurepip", "turtledemo", "turtle.py",
			"lib2to3/tests", "distutils/tests", "unittest/test", "ctypes/test", "sqlite3/test",
			"config-3.11-x86_64-linux-gnu", "lib-dynload/_test*", "lib-dynload/_ctypes_test*",
			"lib-dynload/xxlimited*", "lib-dynload/_xxtestfuzz*", "lib-dynload/_tkinter*"},
		InitOK: `{"ok": true}`,
		source: pythonLauncher,
		lang:   "python",
	},
}

// Env is the environment a launcher starts with, inside a root: the in-memory /tmp is
// its home and temporary directory. The process executor uses it with its own
// directories. Init-time env and the per-activation __OW_* values come on top.
var Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp", "TMPDIR=/tmp", "LANG=C.UTF-8"}

// Kinds lists the supported kinds.
func Kinds() []Kind { return append([]Kind(nil), kinds...) }

// Resolve returns the kind for a name or one of its aliases.
func Resolve(kind string) (Kind, error) {
	for _, k := range kinds {
		if k.Name == kind {
			return k, nil
		}
		for _, a := range k.Aliases {
			if a == kind {
				return k, nil
			}
		}
	}
	// A stock controller resolves "nodejs:default" through its own runtimes manifest,
	// which may name another version (the devtools manifest says nodejs:14), and its
	// health-test action arrives with that kind: the invoker must run it to become
	// healthy. So other versions of a family run on the one runtime seuss has for it.
	if lang, version, ok := strings.Cut(kind, ":"); ok {
		for _, k := range kinds {
			if k.lang == lang && compatibleVersion(k.Name, version) {
				return k, nil
			}
		}
	}
	return Kind{}, fmt.Errorf("%w %q", ErrUnknownKind, kind)
}

// compatibleVersion reports whether version ("14", "3.9") names a release of the
// family whose canonical kind is name: any Node.js major for nodejs, any Python 3 minor
// for python.
func compatibleVersion(name, version string) bool {
	major, minor, hasMinor := strings.Cut(version, ".")
	if _, err := strconv.Atoi(major); err != nil {
		return false
	}
	if hasMinor {
		if _, err := strconv.Atoi(minor); err != nil {
			return false
		}
	}
	switch {
	case strings.HasPrefix(name, "nodejs:"):
		return !hasMinor
	case strings.HasPrefix(name, "python:"):
		return major == "3"
	}
	return false
}

// Language is "nodejs" or "python": the directory under runtimes/ of its launcher.
func (k Kind) Language() string { return k.lang }

// LauncherSource is the launcher's text, built into the binary.
func (k Kind) LauncherSource() []byte { return k.source }

// Argv is the command line that starts the launcher inside a root (paths are the
// root's). Extra interpreter flags (e.g. a heap limit) go before the launcher.
func (k Kind) Argv(extra ...string) []string {
	return k.argv(k.Launcher, extra)
}

// HostArgv is the command line that starts the launcher as a host process, with the
// host's interpreter and the launcher at launcherPath.
func (k Kind) HostArgv(launcherPath string, extra ...string) []string {
	return k.argv(launcherPath, extra)
}

func (k Kind) argv(launcher string, extra []string) []string {
	argv := []string{k.Interpreter}
	argv = append(argv, k.Flags...)
	argv = append(argv, extra...)
	return append(argv, launcher)
}

// HeapFlags are interpreter flags that bound the heap to memoryMB where the
// interpreter has such a flag (Node's V8 old space); nil otherwise.
func (k Kind) HeapFlags(memoryMB int) []string {
	if k.lang == "nodejs" && memoryMB > 0 {
		return []string{"--max-old-space-size=" + strconv.Itoa(memoryMB)}
	}
	return nil
}
