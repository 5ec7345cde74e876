package unikernel

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestProcFiles(t *testing.T) {
	k, done := newFakeKernel(t)
	defer done()
	k.exe = "/usr/bin/node"
	for _, c := range []struct {
		path, want string
	}{
		{"/proc/self/stat", "2 (node) R 1 2 2 "},
		{"/proc/2/stat", "2 (node) R "},
		{"/proc/thread-self/statm", " 0 0 0 "},
		{"/proc/self/cgroup", "0::/\n"},
		{"/proc/meminfo", "MemTotal:           8192 kB\n"},
		{"/proc/stat", "cpu0 "},
		{"/proc/cpuinfo", "processor\t: 0\n"},
		{"/proc/self/maps", "00200000-00300000 rw-p 00000000 00:00 0\n"},
	} {
		f, e := k.openProc(c.path, unix.O_RDONLY)
		if e != 0 {
			t.Errorf("%s: %v", c.path, e)
			continue
		}
		b := make([]byte, 4096)
		n, _ := f.read(k, b)
		if !strings.Contains(string(b[:n]), c.want) {
			t.Errorf("%s = %q, want it to contain %q", c.path, b[:n], c.want)
		}
		if c.path == "/proc/self/stat" {
			if fields := strings.Fields(string(b[:n])); len(fields) != 52 {
				t.Errorf("/proc/self/stat has %d fields, want 52", len(fields))
			}
		}
	}
	for _, p := range []string{"/proc/self/root/etc/passwd", "/proc/1/stat", "/proc/self/environ", "/proc"} {
		if _, e := k.openProc(p, unix.O_RDONLY); e != unix.ENOENT {
			t.Errorf("%s: %v, want ENOENT", p, e)
		}
	}
	if _, e := k.openProc("/proc/self/stat", unix.O_RDWR); e != unix.EACCES {
		t.Errorf("open for writing: %v, want EACCES", e)
	}
}

// TestProcFileCaptured: a /proc file held open is saved (kind, offset) by Capture and
// regenerated for the restored library OS, at the same offset.
func TestProcFileCaptured(t *testing.T) {
	requireKVM(t)
	root := testRoot(t, "threads")
	inR, inW := io.Pipe()
	defer inW.Close()
	out := &lockedBuilder{b: &strings.Builder{}}
	cfg := Config{Root: root, Timeout: time.Minute, Stdin: inR, Stdout: out}
	uc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	if err := uc.Load([]string{"/threads", "procfd"}); err != nil {
		t.Fatal(err)
	}
	if err := uc.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := uc.WaitQuiescent(ctx); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "fd 3 read 3\n" {
		t.Fatalf("output %q", got)
	}
	st, err := uc.Capture()
	if err != nil {
		t.Fatal(err)
	}
	var fs *FileState
	for i := range st.LibOS.Files {
		if st.LibOS.Files[i].Kind == FileProc {
			fs = &st.LibOS.Files[i]
		}
	}
	if fs == nil || fs.Path != "/proc/self/stat" || fs.Offset != 3 {
		t.Fatalf("proc file not saved: %+v", st.LibOS.Files)
	}
	uc2, err := New(Config{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	defer uc2.Close()
	uc2.k.exe = "/threads"
	if err := uc2.restoreLibOS(&st.LibOS); err != nil {
		t.Fatal(err)
	}
	d, e := uc2.k.fds.get(3)
	if e != 0 {
		t.Fatalf("fd 3 after restore: %v", e)
	}
	b := make([]byte, 64)
	n, _ := d.f.read(uc2.k, b)
	if !strings.HasPrefix(string(b[:n]), "threads) R ") {
		t.Fatalf("restored /proc/self/stat reads %q at offset 3", b[:n])
	}
}
