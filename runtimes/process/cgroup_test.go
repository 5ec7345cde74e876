package process

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The cgroup v2 path cannot run on machines whose memory controller sits in a v1
// hierarchy (as on the build machines): its parsing is tested here on fixed texts.

func TestParseCgroup2Mount(t *testing.T) {
	const hybrid = `25 1 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
`
	if got, err := parseCgroup2Mount(strings.NewReader(hybrid)); err != nil || got != "/sys/fs/cgroup/unified" {
		t.Errorf("hybrid: %q %v", got, err)
	}
	if _, err := parseCgroup2Mount(strings.NewReader("27 25 0:24 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n")); err == nil {
		t.Error("v1 only: no error")
	}
}

func TestParseOwnCgroup(t *testing.T) {
	got, err := parseOwnCgroup([]byte("12:memory:/x\n0::/system.slice/seuss.service\n"))
	if err != nil || got != "/system.slice/seuss.service" {
		t.Errorf("%q %v", got, err)
	}
	if _, err := parseOwnCgroup([]byte("4:memory:/x\n")); err == nil {
		t.Error("v1 only: no error")
	}
}

func TestOOMKilled(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) {
		if err := os.WriteFile(filepath.Join(dir, "memory.events"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n")
	if oomKilled(dir) {
		t.Error("oom_kill 0 read as killed")
	}
	write("low 0\nhigh 0\nmax 9\noom 2\noom_kill 1\noom_group_kill 0\n")
	if !oomKilled(dir) {
		t.Error("oom_kill 1 not seen")
	}
}
