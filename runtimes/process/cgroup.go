package process

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cgroupV2 is a cgroup v2 directory, with the memory controller enabled for its
// children, under which each instance gets its own cgroup with memory.max.
type cgroupV2 struct {
	dir string
}

// setupCgroup creates seuss's parent cgroup beside this process's own, or says why it
// cannot (then the executor falls back to rlimits).
func setupCgroup() (*cgroupV2, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("not root")
	}
	mnt, err := cgroup2Mount()
	if err != nil {
		return nil, err
	}
	own, err := ownCgroup()
	if err != nil {
		return nil, err
	}
	base := filepath.Join(mnt, own)
	ctrl, err := os.ReadFile(filepath.Join(base, "cgroup.controllers"))
	if err != nil {
		return nil, fmt.Errorf("read controllers: %w", err)
	}
	if !hasWord(ctrl, "memory") {
		return nil, fmt.Errorf("memory controller not available in %s", base)
	}
	// Enabling a controller for the children of a cgroup that holds processes fails
	// (the "no internal processes" rule) unless it is the root: then we fall back.
	if err := os.WriteFile(filepath.Join(base, "cgroup.subtree_control"), []byte("+memory"), 0); err != nil {
		return nil, fmt.Errorf("enable memory in %s: %w", base, err)
	}
	dir := filepath.Join(base, fmt.Sprintf("seuss-process-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+memory"), 0); err != nil {
		os.Remove(dir)
		return nil, fmt.Errorf("enable memory in %s: %w", dir, err)
	}
	return &cgroupV2{dir: dir}, nil
}

func hasWord(b []byte, w string) bool {
	for _, f := range strings.Fields(string(b)) {
		if f == w {
			return true
		}
	}
	return false
}

func cgroup2Mount() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	return parseCgroup2Mount(f)
}

func parseCgroup2Mount(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source super
		line := sc.Text()
		sep := strings.Index(line, " - ")
		if sep < 0 {
			continue
		}
		after := strings.Fields(line[sep+3:])
		before := strings.Fields(line[:sep])
		if len(after) > 0 && after[0] == "cgroup2" && len(before) >= 5 {
			return before[4], nil
		}
	}
	return "", errors.New("no cgroup2 mount")
}

func ownCgroup() (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	return parseOwnCgroup(b)
}

func parseOwnCgroup(b []byte) (string, error) {
	for _, l := range bytes.Split(b, []byte{'\n'}) {
		if bytes.HasPrefix(l, []byte("0::")) {
			return string(l[3:]), nil
		}
	}
	return "", errors.New("not in a cgroup v2 hierarchy")
}

// create makes an instance's cgroup with its memory limit and returns its path and an
// open directory fd for SysProcAttr.CgroupFD (the child starts inside it).
func (c *cgroupV2) create(name string, memoryMB int) (string, *os.File, error) {
	dir := filepath.Join(c.dir, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", nil, err
	}
	if memoryMB > 0 {
		limit := strconv.FormatInt(int64(memoryMB)<<20, 10)
		if err := os.WriteFile(filepath.Join(dir, "memory.max"), []byte(limit), 0); err != nil {
			os.Remove(dir)
			return "", nil, err
		}
		_ = os.WriteFile(filepath.Join(dir, "memory.swap.max"), []byte("0"), 0) // absent without swap accounting
		_ = os.WriteFile(filepath.Join(dir, "memory.oom.group"), []byte("1"), 0)
	}
	f, err := os.Open(dir)
	if err != nil {
		os.Remove(dir)
		return "", nil, err
	}
	return dir, f, nil
}

// oomKilled reports whether the kernel killed a process of the cgroup for memory.
func oomKilled(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "memory.events"))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "oom_kill" && f[1] != "0" {
			return true
		}
	}
	return false
}

func (c *cgroupV2) close() { os.Remove(c.dir) }
