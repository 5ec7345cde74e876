package unikernel

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestSyscallsInUC(t *testing.T) {
	requireKVM(t)
	root := testRoot(t, "syscalls")
	res, out, _ := runUC(t, Config{Root: root, Timeout: time.Minute}, "/syscalls")
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "FAIL") {
			t.Error(line)
		}
	}
	if res.Status != 0 || res.Err != nil || !strings.Contains(out, "done 0") {
		t.Fatalf("status %d, err %v, output:\n%s", res.Status, res.Err, out)
	}
	if n := strings.Count(out, "\nok "); n < 65 {
		t.Errorf("only %d checks passed", n)
	}
	if res.Stats.Mode == ModeUnknown {
		t.Error("mode not detected")
	}
	t.Logf("mode %s, %d exits", res.Stats.Mode, res.Stats.Exits)
}

func TestExitStatusAndArgs(t *testing.T) {
	requireKVM(t)
	root := testRoot(t, "hostile")
	res, _, _ := runUC(t, Config{Root: root}, "/hostile", "exit", "42")
	if res.Status != 42 || res.Err != nil {
		t.Fatalf("status %d err %v, want 42", res.Status, res.Err)
	}
}

func TestStdin(t *testing.T) {
	requireKVM(t)
	root := testRoot(t, "hostile")
	res, out, _ := runUC(t, Config{Root: root, Stdin: strings.NewReader("line one\nline two\n")}, "/hostile", "echo")
	if res.Status != 0 || out != "line one\nline two\n" {
		t.Fatalf("status %d output %q", res.Status, out)
	}
}

// TestHostileGuests: each misbehaviour ends its own UC with a clear error, and the
// process goes on serving UCs afterwards.
func TestHostileGuests(t *testing.T) {
	requireKVM(t)
	root := testRoot(t, "hostile", "syscalls")
	cases := []struct {
		mode    string
		cfg     Config
		status  int
		err     error
		errText string
		out     string
	}{
		{mode: "null", status: 139, err: ErrGuestFault, errText: "page fault at 0x10"},
		{mode: "wild", status: 139, err: ErrGuestFault, errText: "page fault at 0x7f0000000000"},
		{mode: "sysarea", status: 139, err: ErrGuestFault, errText: "page fault at 0x1000"},
		{mode: "port", status: 139, err: ErrGuestFault, errText: "general protection"},
		{mode: "excport", status: 139, err: ErrGuestFault, errText: "general protection"},
		{mode: "stubjump", status: 139, err: ErrGuestFault, errText: "general protection"},
		{mode: "hlt", status: 139, err: ErrGuestFault, errText: "general protection"},
		{mode: "ud2", status: 132, err: ErrGuestFault, errText: "invalid opcode"},
		{mode: "int80", err: ErrGuestFault},
		{mode: "abort", status: 134},
		{mode: "loop", cfg: Config{Timeout: 300 * time.Millisecond}, status: 137, err: ErrTimeout},
		{mode: "sleep", cfg: Config{Timeout: 200 * time.Millisecond}, status: 137, err: ErrTimeout},
		{mode: "bomb", cfg: Config{Memory: 64 << 20}, out: "then ENOMEM"},
		{mode: "mmapbomb", cfg: Config{Memory: 64 << 20}, out: "then errno 12"},
		{mode: "enosys", out: "syscall 4242 = -1 errno 38\nsyscall 335 = -1 errno 38"},
		{mode: "fds", cfg: Config{MaxFDs: 100}, out: "opened 97 then errno 24"},
		{mode: "escape", out: "../../../../etc/passwd: No such file or directory\n/../../etc/passwd: No such file or directory\n/dir/../../etc/passwd: No such file or directory\n/abslink: No such file or directory\n/rellink: No such file or directory\n/dir/../abslink: No such file or directory\n/proc/self/root/etc/passwd: No such file or directory\n"},
	}
	for _, c := range cases {
		t.Run(c.mode, func(t *testing.T) {
			cfg := c.cfg
			cfg.Root = root
			if cfg.Timeout == 0 {
				cfg.Timeout = 30 * time.Second
			}
			res, out, _ := runUC(t, cfg, "/hostile", c.mode)
			if c.err != nil && !errors.Is(res.Err, c.err) {
				t.Fatalf("err %v, want %v", res.Err, c.err)
			}
			if c.err == nil && res.Err != nil {
				t.Fatalf("unexpected err %v", res.Err)
			}
			if c.errText != "" && !strings.Contains(res.Err.Error(), c.errText) {
				t.Errorf("err %q does not say %q", res.Err, c.errText)
			}
			if c.status != 0 && res.Status != c.status {
				t.Errorf("status %d, want %d", res.Status, c.status)
			}
			if c.out != "" && !strings.Contains(out, c.out) {
				t.Errorf("output %q, want it to contain %q", out, c.out)
			}
			if mode := c.mode; mode == "enosys" {
				if len(res.Stats.Unknown) != 2 {
					t.Errorf("unknown calls %v, want 4242 and 335", res.Stats.Unknown)
				}
			}
		})
	}
	// Still serving: a well-behaved UC runs fine after all of that.
	res, out, _ := runUC(t, Config{Root: root}, "/syscalls")
	if res.Status != 0 || !strings.Contains(out, "done 0") {
		t.Fatalf("UC after hostile guests: status %d err %v\n%s", res.Status, res.Err, out)
	}
}

func TestOutputLimit(t *testing.T) {
	requireKVM(t)
	root := testRoot(t, "hostile")
	res, out, _ := runUC(t, Config{Root: root, MaxOutput: 10000}, "/hostile", "output")
	if len(out) != 10000 || !res.OutputTruncated || res.Status != 0 {
		t.Fatalf("got %d bytes, truncated %v, status %d", len(out), res.OutputTruncated, res.Status)
	}
}

func TestLifecycleRefusals(t *testing.T) {
	requireKVM(t)
	root := testRoot(t, "hostile")
	uc, err := New(Config{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if uc.State() != StateCreated {
		t.Fatalf("state %s", uc.State())
	}
	if err := uc.Start(); !errors.Is(err, ErrState) {
		t.Errorf("Start before Load: %v", err)
	}
	if err := uc.Pause(); !errors.Is(err, ErrState) {
		t.Errorf("Pause in created: %v", err)
	}
	if err := uc.Resume(); !errors.Is(err, ErrState) {
		t.Errorf("Resume in created: %v", err)
	}
	if _, err := uc.Wait(ctx); !errors.Is(err, ErrState) {
		t.Errorf("Wait in created: %v", err)
	}
	if err := uc.Kill(); !errors.Is(err, ErrState) {
		t.Errorf("Kill in created: %v", err)
	}
	if err := uc.Load([]string{"/missing"}); err == nil {
		t.Error("Load of a missing program succeeded")
	}
	if err := uc.Load([]string{"/hostile", "loop"}); err != nil {
		t.Fatal(err)
	}
	if err := uc.Load([]string{"/hostile"}); !errors.Is(err, ErrState) {
		t.Errorf("second Load: %v", err)
	}
	if err := uc.Start(); err != nil {
		t.Fatal(err)
	}
	if uc.State() != StateRunning {
		t.Fatalf("state %s", uc.State())
	}
	if err := uc.Start(); !errors.Is(err, ErrState) {
		t.Errorf("second Start: %v", err)
	}
	if err := uc.Resume(); !errors.Is(err, ErrState) {
		t.Errorf("Resume while running: %v", err)
	}
	if err := uc.Pause(); err != nil {
		t.Fatal(err)
	}
	if uc.State() != StatePaused {
		t.Fatalf("state %s", uc.State())
	}
	if err := uc.Pause(); !errors.Is(err, ErrState) {
		t.Errorf("second Pause: %v", err)
	}
	exits := uc.Stats().Exits
	if err := uc.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := uc.Kill(); err != nil {
		t.Fatal(err)
	}
	res, err := uc.Wait(ctx)
	if err != nil || !errors.Is(res.Err, ErrKilled) || res.Status != 137 {
		t.Fatalf("Wait after Kill: %v %+v", err, res)
	}
	if res.Stats.Exits < exits {
		t.Errorf("exits went down")
	}
	if uc.State() != StateExited {
		t.Fatalf("state %s", uc.State())
	}
	if err := uc.Pause(); !errors.Is(err, ErrState) {
		t.Errorf("Pause after exit: %v", err)
	}
	if err := uc.Close(); err != nil {
		t.Fatal(err)
	}
	if uc.State() != StateClosed {
		t.Fatalf("state %s", uc.State())
	}
	if err := uc.Close(); !errors.Is(err, ErrState) {
		t.Errorf("second Close: %v", err)
	}
	if _, err := uc.Wait(ctx); !errors.Is(err, ErrState) {
		t.Errorf("Wait after Close: %v", err)
	}
	if err := uc.Load([]string{"/hostile"}); !errors.Is(err, ErrState) {
		t.Errorf("Load after Close: %v", err)
	}
}

func TestCloseWithoutRun(t *testing.T) {
	requireKVM(t)
	uc, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := uc.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestContextCancelKills(t *testing.T) {
	requireKVM(t)
	root := testRoot(t, "hostile")
	uc, err := New(Config{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	if err := uc.Load([]string{"/hostile", "loop"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	res, err := uc.Run(ctx)
	if err != nil || !errors.Is(res.Err, ErrKilled) {
		t.Fatalf("%v %+v", err, res.Err)
	}
}

const hostPython = "/usr/bin/python3.11"

func requirePython(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(hostPython); err != nil {
		t.Fatalf("%s is needed (Debian's python3.11): %v", hostPython, err)
	}
}

// TestPython runs Debian's python3.11 in a UC and compares its output with the host's.
func TestPython(t *testing.T) {
	requireKVM(t)
	requirePython(t)
	scripts := map[string]string{
		"print":       `print("hello from a UC")`,
		"json":        `import json; print(json.dumps({"a": [1, 2.5, None, True], "b": "é"}, sort_keys=True)); print(json.loads('{"x": [1,2,3]}')["x"][2])`,
		"hashlib":     `import hashlib; print(hashlib.sha256(b"seuss").hexdigest(), hashlib.md5(b"x").hexdigest(), hashlib.blake2b(b"y").hexdigest()[:16])`,
		"re":          `import re; print(re.findall(r"(\w+)@(\w+)\.com", "a@b.com, c@d.com"), re.sub(r"\d+", "#", "a1b22c333"))`,
		"collections": `import collections; c = collections.Counter("mississippi"); print(sorted(c.items()), collections.OrderedDict(a=1), collections.deque([1,2,3], maxlen=2))`,
		"datetime":    `import datetime; d = datetime.datetime(2020, 4, 27, 12, 30) + datetime.timedelta(days=3, hours=13); print(d.isoformat(), d.strftime("%A %j"), datetime.date(2024, 2, 29).weekday())`,
		"base64":      `import base64; print(base64.b64encode(b"\x00\xffseuss"), base64.b32decode(b"MFRGG==="), base64.urlsafe_b64encode(bytes(range(250, 256))))`,
		"zlib":        `import zlib; d = b"seuss " * 1000; c = zlib.compress(d, 9); print(len(c), zlib.crc32(d), zlib.decompress(c) == d, zlib.adler32(b"x"))`,
		"readfile":    `import hashlib; b = open("/usr/lib/python3.11/os.py", "rb").read(); print(len(b), hashlib.sha1(b).hexdigest())`,
		"all":         `import json, hashlib, re, collections, datetime, base64, zlib, os; print(json.dumps(sorted(os.listdir("/usr/lib/python3.11/json"))), os.path.exists("/etc"), sum(range(10**6)))`,
		"tmp":         `import os; open("/tmp/x.txt", "w").write("data"); print(open("/tmp/x.txt").read(), os.listdir("/tmp"))`,
		"exit":        `import sys; print("bye"); sys.exit(3)`,
	}
	// A few coreutils too: dynamic glibc programs other than python.
	for _, argv := range [][]string{{"/usr/bin/ls", "-la", "/usr/lib/python3.11/json"}, {"/usr/bin/cat", "/etc/os-release"}} {
		t.Run(argv[0], func(t *testing.T) {
			want, err := exec.Command(argv[0], argv[1:]...).Output()
			if err != nil {
				t.Fatal(err)
			}
			res, out, errOut := runUC(t, Config{}, argv...)
			if res.Status != 0 || out != string(want) {
				t.Errorf("status %d err %v stderr %q\nUC:   %q\nhost: %q", res.Status, res.Err, errOut, out, want)
			}
		})
	}
	for name, src := range scripts {
		t.Run(name, func(t *testing.T) {
			host := exec.Command(hostPython, "-c", src)
			host.Env = []string{}
			want, err := host.Output()
			wantStatus := 0
			if ee, ok := err.(*exec.ExitError); ok {
				wantStatus = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if name == "tmp" {
				// The host's /tmp is not empty; the UC's is.
				want = []byte("data ['x.txt']\n")
			}
			res, out, errOut := runUC(t, Config{Timeout: time.Minute}, hostPython, "-c", src)
			if res.Err != nil || res.Status != wantStatus {
				t.Fatalf("status %d (want %d), err %v\nstderr: %s", res.Status, wantStatus, res.Err, errOut)
			}
			if out != string(want) {
				t.Errorf("output differs\nUC:   %q\nhost: %q", out, want)
			}
			if len(res.Stats.Unknown) > 0 {
				t.Logf("unimplemented calls: %v", res.Stats.Unknown)
			}
		})
	}
}

// TestPythonLimits: a Python memory bomb and an endless loop end with clear errors.
func TestPythonLimits(t *testing.T) {
	requireKVM(t)
	requirePython(t)
	res, _, errOut := runUC(t, Config{Memory: 64 << 20}, hostPython, "-c", "x = [bytearray(1 << 20) for i in range(200)]")
	if res.Status != 1 || !strings.Contains(errOut, "MemoryError") {
		t.Errorf("memory bomb: status %d err %v stderr %q", res.Status, res.Err, errOut)
	}
	res, _, _ = runUC(t, Config{Timeout: 500 * time.Millisecond}, hostPython, "-c", "while True: pass")
	if !errors.Is(res.Err, ErrTimeout) {
		t.Errorf("loop: %v", res.Err)
	}
	res, _, errOut = runUC(t, Config{}, hostPython, "-c", "open('/etc/x', 'w')")
	if !strings.Contains(errOut, "Read-only file system") {
		t.Errorf("write to root: %q", errOut)
	}
}

// TestSyscallPatching: sites get rewritten in the guest's private copy only; results are
// the same either way.
func TestSyscallPatching(t *testing.T) {
	requireKVM(t)
	root := testRoot(t, "hostile", "syscalls")
	before, _ := os.ReadFile(root + "/syscalls")
	for _, noPatch := range []bool{false, true} {
		res, out, _ := runUC(t, Config{Root: root, NoSyscallPatching: noPatch}, "/syscalls")
		if res.Status != 0 || !strings.Contains(out, "done 0") {
			t.Fatalf("noPatch=%v: status %d\n%s", noPatch, res.Status, out)
		}
		if noPatch != (res.Stats.PatchedSites == 0) {
			t.Errorf("noPatch=%v: %d sites patched", noPatch, res.Stats.PatchedSites)
		}
	}
	after, _ := os.ReadFile(root + "/syscalls")
	if string(before) != string(after) {
		t.Fatal("patching changed the host file")
	}
	res, _, _ := runUC(t, Config{Root: root}, "/hostile", "getpid", "1000")
	if res.Stats.PatchedSites == 0 || res.Stats.Exits < 1000 {
		t.Errorf("getpid loop: %d patched, %d exits", res.Stats.PatchedSites, res.Stats.Exits)
	}
}

// TestXSAVERoundTrip: the XSAVE wrappers (which snapshots use) read and write a vCPU's
// extended state.
func TestXSAVERoundTrip(t *testing.T) {
	requireKVM(t)
	vm, err := NewVM(64 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	c, err := vm.newVCPU(userBase, userBase+pageSize, 0x1234000)
	if err != nil {
		t.Fatal(err)
	}
	x, err := getXSAVE(c.fd)
	if err != nil {
		t.Fatal(err)
	}
	x.Region[6] = 0x1f80 | 0x6000 // MXCSR: round toward zero
	x.Region[128] |= 2            // XSTATE_BV: SSE state present, so MXCSR is loaded
	if err := setXSAVE(c.fd, x); err != nil {
		t.Fatal(err)
	}
	y, err := getXSAVE(c.fd)
	if err != nil {
		t.Fatal(err)
	}
	if y.Region[6] != x.Region[6] {
		t.Errorf("MXCSR %#x, want %#x", y.Region[6], x.Region[6])
	}
	if fs, err := getMSR(c.fd, msrFSBase); err != nil || fs != 0x1234000 {
		t.Errorf("FS base %#x %v", fs, err)
	}
	if r, err := getRegs(c.fd); err != nil || r.RIP != userBase {
		t.Errorf("regs %+v %v", r, err)
	}
}

// TestPooledVM: a VM shell created ahead serves exactly one UC.
func TestPooledVM(t *testing.T) {
	requireKVM(t)
	root := testRoot(t, "hostile")
	vm, err := NewVM(128 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	uc, err := NewOnVM(vm, Config{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if err := uc.Load([]string{"/hostile", "exit", "5"}); err != nil {
		t.Fatal(err)
	}
	res, err := uc.Run(context.Background())
	if err != nil || res.Status != 5 {
		t.Fatalf("%v %+v", err, res)
	}
	if err := uc.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := NewOnVM(vm, Config{Root: root}); !errors.Is(err, ErrState) {
		t.Errorf("second UC on a VM: %v", err)
	}
	if _, err := NewVM(3 << 20); err == nil {
		t.Error("NewVM accepted a size that is not a multiple of 2 MiB")
	}
}

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestCloseReleasesEverything: many UCs one after the other, some killed mid-run, leave no
// descriptors behind in the invoker process; several run in parallel.
func TestCloseReleasesEverything(t *testing.T) {
	requireKVM(t)
	root := testRoot(t, "hostile", "syscalls")
	runUC(t, Config{Root: root}, "/syscalls") // warm up (musl build, KVM host state)
	before := openFDs(t)
	for i := 0; i < 20; i++ {
		switch i % 4 {
		case 0:
			runUC(t, Config{Root: root}, "/syscalls")
		case 1:
			runUC(t, Config{Root: root, Timeout: 20 * time.Millisecond}, "/hostile", "loop")
		case 2:
			runUC(t, Config{Root: root}, "/hostile", "null")
		case 3:
			runUC(t, Config{Root: root, MaxFDs: 64}, "/hostile", "fds")
		}
	}
	if after := openFDs(t); after > before {
		t.Errorf("open descriptors grew from %d to %d", before, after)
	}
	done := make(chan error, 4)
	for i := 0; i < 4; i++ {
		go func() {
			uc, err := New(Config{Root: root})
			if err != nil {
				done <- err
				return
			}
			defer uc.Close()
			if err := uc.Load([]string{"/syscalls"}); err != nil {
				done <- err
				return
			}
			res, err := uc.Run(context.Background())
			if err == nil && res.Status != 0 {
				err = errors.New("syscalls failed in a parallel UC")
			}
			done <- err
		}()
	}
	for i := 0; i < 4; i++ {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func TestHostMode(t *testing.T) {
	requireKVM(t)
	m, err := HostMode()
	if err != nil || m == ModeUnknown {
		t.Fatalf("%v %v", m, err)
	}
	_, pvm := os.Stat("/sys/module/kvm_pvm")
	if (pvm == nil) != (m == ModePVM) {
		t.Errorf("mode %s, kvm_pvm module present: %v", m, pvm == nil)
	}
	t.Logf("host mode: %s", m)
}

// TestExtraWriters: fd 3 (the actionloop answer channel) reaches the host.
func TestExtraWriters(t *testing.T) {
	requireKVM(t)
	requirePython(t)
	var fd3 strings.Builder
	res, out, errOut := runUC(t, Config{ExtraWriters: []io.Writer{&fd3}, MaxOutput: 4},
		hostPython, "-c", `import os, sys; print("log"); os.write(3, b'{"ok": true}\n')`)
	if res.Status != 0 || fd3.String() != "{\"ok\": true}\n" || out != "log\n" {
		t.Fatalf("status %d fd3 %q out %q stderr %q", res.Status, fd3.String(), out, errOut)
	}
}
