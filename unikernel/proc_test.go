package unikernel

import (
	"strings"
	"testing"

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
