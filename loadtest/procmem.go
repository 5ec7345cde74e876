package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuTime is the CPU (user + system) used so far by this process and its reaped
// children: with the in-process stack that is the broker, the invoker, UCs (threads of
// this process) and the runtime processes (children), so a difference over a run is the
// CPU the run cost, whatever else the machine was doing.
func cpuTime() time.Duration {
	var self, kids syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return tv(self.Utime) + tv(self.Stime) + tv(kids.Utime) + tv(kids.Stime)
}

// procMem is one process's memory as the kernel accounts it (/proc/PID/smaps_rollup):
// RSS counts every resident page it maps; PSS divides each shared page by the number of
// processes mapping it, so PSS sums to the real memory of a group of processes.
type procMem struct {
	PID      int
	Comm     string
	RSS, PSS int64 // bytes
}

// descendants returns the processes below pid (children, grandchildren, ...).
func descendants(pid int) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		children[pp] = append(children[pp], p)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out, nil
}

// readProcMem reads /proc/PID/smaps_rollup.
func readProcMem(pid int) (procMem, error) {
	m := procMem{PID: pid}
	comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	m.Comm = strings.TrimSpace(string(comm))
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return m, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || fields[2] != "kB" {
			continue
		}
		v, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil {
			continue
		}
		switch fields[0] {
		case "Rss:":
			m.RSS = v << 10
		case "Pss:":
			m.PSS = v << 10
		}
	}
	return m, sc.Err()
}

// childMem returns the memory of every descendant of this process.
func childMem() ([]procMem, error) {
	pids, err := descendants(os.Getpid())
	if err != nil {
		return nil, err
	}
	var out []procMem
	for _, p := range pids {
		m, err := readProcMem(p)
		if err != nil {
			continue // exited meanwhile, or not ours to read
		}
		out = append(out, m)
	}
	return out, nil
}

// parseSize parses "512MiB", "1GiB", "1G", "256M", "4096K" or plain bytes.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(strings.ToUpper(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := int64(1)
	switch {
	case strings.HasSuffix(t, "K"):
		mult, t = 1<<10, strings.TrimSuffix(t, "K")
	case strings.HasSuffix(t, "M"):
		mult, t = 1<<20, strings.TrimSuffix(t, "M")
	case strings.HasSuffix(t, "G"):
		mult, t = 1<<30, strings.TrimSuffix(t, "G")
	case strings.HasSuffix(t, "T"):
		mult, t = 1<<40, strings.TrimSuffix(t, "T")
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("size %q: want e.g. 512MiB or 1GiB", s)
	}
	return int64(v * float64(mult)), nil
}
