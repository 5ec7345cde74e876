package unikernel

import (
	"encoding/binary"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Small process-wide calls runtimes make at start.

// sysCapget: a UC's program has no capabilities (header version is kept, data zeroed).
func sysCapget(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	const v1, v2, v3 = 0x19980330, 0x20071026, 0x20080522
	hdr, e := k.as.in(a[0], 8)
	if e != 0 {
		return 0, e
	}
	n := 0
	switch v := uint32(hdr[0]) | uint32(hdr[1])<<8 | uint32(hdr[2])<<16 | uint32(hdr[3])<<24; v {
	case v1:
		n = 1
	case v2, v3:
		n = 2
	default:
		if e := k.as.writeU32(a[0], v3); e != 0 {
			return 0, e
		}
		return 0, unix.EINVAL
	}
	if a[1] == 0 {
		return 0, 0
	}
	return 0, k.as.copyOut(a[1], make([]byte, 12*n))
}

func sysCapset(*Kernel, sysThread, *[6]uint64) (uint64, unix.Errno) { return 0, unix.EPERM }

// sysPkeyAlloc: no memory protection keys (V8 then does without them).
func sysPkeyAlloc(*Kernel, sysThread, *[6]uint64) (uint64, unix.Errno) { return 0, unix.ENOSPC }

func sysPkeyFree(*Kernel, sysThread, *[6]uint64) (uint64, unix.Errno) { return 0, unix.EINVAL }

func sysSchedGetcpu(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	for _, p := range a[:2] {
		if p != 0 {
			if e := k.as.writeU32(p, 0); e != 0 {
				return 0, e
			}
		}
	}
	return 0, 0
}

// sysMembarrier: every guest thread has its own vCPU and the host kernel orders their
// memory; MEMBARRIER_CMD_QUERY reports no commands, which makes callers use their fallback.
func sysMembarrier(*Kernel, sysThread, *[6]uint64) (uint64, unix.Errno) { return 0, 0 }

func init() {
	for nr, h := range map[uint64]handler{
		unix.SYS_CAPGET:     sysCapget,
		unix.SYS_CAPSET:     sysCapset,
		unix.SYS_PKEY_ALLOC: sysPkeyAlloc,
		unix.SYS_PKEY_FREE:  sysPkeyFree,
		unix.SYS_GETCPU:     sysSchedGetcpu,
		unix.SYS_MEMBARRIER: sysMembarrier,
		unix.SYS_PAUSE:      sysPause,
		unix.SYS_GETRUSAGE:  sysGetrusage,
	} {
		syscallTable[nr] = h
	}
}

// sysPause sleeps until the UC stops (no signal can arrive asynchronously in a UC).
func sysPause(k *Kernel, _ sysThread, _ *[6]uint64) (uint64, unix.Errno) {
	k.asleep(nil)
	return 0, unix.EINTR
}

// --- /proc ---
//
// The few /proc files runtimes read, generated at open from the UC's own state: its memory
// (the commit charge stands for the resident set: it is what the guest may have touched
// of its private memory), one CPU (as sched_getaffinity says), its uptime. Everything else
// under /proc is ENOENT, which libuv and glibc tolerate.

// procFile is a generated read-only file (its contents fixed at open, as procfs's are at
// the first read).
type procFile struct {
	baseFile
	mu   sync.Mutex
	data []byte
	off  int64
}

func (f *procFile) read(_ *Kernel, b []byte) (int, unix.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, _ := f.pread(b, f.off)
	f.off += int64(n)
	return n, 0
}

func (f *procFile) pread(b []byte, off int64) (int, unix.Errno) {
	if off < 0 {
		return 0, unix.EINVAL
	}
	if off >= int64(len(f.data)) {
		return 0, 0
	}
	return copy(b, f.data[off:]), 0
}

func (f *procFile) write(*Kernel, []byte) (int, unix.Errno) { return 0, unix.EBADF }

func (f *procFile) seek(off int64, whence int) (int64, unix.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch whence {
	case 0:
	case 1:
		off += f.off
	case 2:
		off += int64(len(f.data))
	default:
		return 0, unix.EINVAL
	}
	if off < 0 {
		return 0, unix.EINVAL
	}
	f.off = off
	return off, 0
}

func (f *procFile) stat() (unix.Stat_t, unix.Errno) {
	return procStat(false), 0
}

func procStat(dir bool) unix.Stat_t {
	if dir {
		return unix.Stat_t{Mode: unix.S_IFDIR | 0o555, Ino: 1, Nlink: 2, Blksize: 4096, Dev: 0x16}
	}
	return unix.Stat_t{Mode: unix.S_IFREG | 0o444, Ino: 2, Nlink: 1, Blksize: 1024, Dev: 0x16}
}

// procName maps a cleaned /proc path to the name of a file procContents knows ("" for
// none): /proc/self/X, /proc/<pid>/X and /proc/thread-self/X are the UC's own.
func (k *Kernel) procName(clean string) (name string, dir bool) {
	rest := strings.TrimPrefix(clean, "/proc")
	if rest == "" || rest == "/" {
		return "", true
	}
	parts := strings.Split(strings.TrimPrefix(rest, "/"), "/")
	if p := parts[0]; p == "self" || p == "thread-self" || p == strconv.Itoa(k.pid) {
		if len(parts) == 1 {
			return "", true
		}
		return "self/" + strings.Join(parts[1:], "/"), false
	}
	return strings.Join(parts, "/"), false
}

// procContents generates a /proc file, or reports ENOENT.
func (k *Kernel) procContents(name string) ([]byte, unix.Errno) {
	k.as.mu.Lock()
	committed, limit := k.as.committed, k.as.limit
	var vsize uint64
	for _, v := range k.as.vmas {
		vsize += v.end - v.start
	}
	k.as.mu.Unlock()
	up := time.Since(k.start)
	ticks := uint64(up / (10 * time.Millisecond))
	rssPages := committed / pageSize
	var b strings.Builder
	switch name {
	case "self/stat":
		// pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
		// utime stime cutime cstime priority nice threads itrealvalue starttime vsize rss
		// rsslim ... (52 fields)
		comm := path.Base(k.exe)
		if len(comm) > 15 {
			comm = comm[:15]
		}
		fmt.Fprintf(&b, "%d (%s) R 1 %d %d 0 -1 4194560 0 0 0 0 %d 0 0 0 20 0 1 0 0 %d %d %d",
			k.pid, comm, k.pid, k.pid, ticks, vsize, rssPages, limit)
		for i := 0; i < 27; i++ {
			b.WriteString(" 0")
		}
		b.WriteString("\n")
	case "self/statm":
		fmt.Fprintf(&b, "%d %d 0 0 0 %d 0\n", vsize/pageSize, rssPages, rssPages)
	case "self/cgroup":
		b.WriteString("0::/\n")
	case "self/maps":
		for _, v := range k.as.snapshotVMAs() {
			perm := []byte("---p")
			if v.prot&unix.PROT_READ != 0 {
				perm[0] = 'r'
			}
			if v.prot&unix.PROT_WRITE != 0 {
				perm[1] = 'w'
			}
			if v.prot&unix.PROT_EXEC != 0 {
				perm[2] = 'x'
			}
			if v.shared {
				perm[3] = 's'
			}
			name := v.file
			if v.end == k.as.size {
				name = "[stack]"
			}
			fmt.Fprintf(&b, "%08x-%08x %s %08x 00:00 0", v.start, v.end, perm, v.off)
			if name != "" {
				b.WriteString(strings.Repeat(" ", 8) + name)
			}
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "%08x-%08x r-xp 00000000 00:00 0        [vdso]\n", uint64(vdsoAddr), uint64(vdsoAddr+vdsoPages*pageSize))
	case "meminfo":
		kb := func(n uint64) uint64 { return n >> 10 }
		free := limit - min(committed, limit)
		fmt.Fprintf(&b, "MemTotal:       %8d kB\nMemFree:        %8d kB\nMemAvailable:   %8d kB\nBuffers:               0 kB\nCached:                0 kB\nSwapTotal:             0 kB\nSwapFree:              0 kB\n",
			kb(limit), kb(free), kb(free))
	case "stat":
		fmt.Fprintf(&b, "cpu  %d 0 0 0 0 0 0 0 0 0\ncpu0 %d 0 0 0 0 0 0 0 0 0\nbtime %d\nprocesses 1\nprocs_running 1\nprocs_blocked 0\n",
			ticks, ticks, k.start.Unix())
	case "uptime":
		fmt.Fprintf(&b, "%.2f 0.00\n", up.Seconds())
	case "loadavg":
		fmt.Fprintf(&b, "0.00 0.00 0.00 1/1 %d\n", k.pid)
	case "cpuinfo":
		model := "unknown"
		if bs, err := os.ReadFile("/proc/cpuinfo"); err == nil {
			for _, line := range strings.Split(string(bs), "\n") {
				if strings.HasPrefix(line, "model name") {
					if i := strings.IndexByte(line, ':'); i >= 0 {
						model = strings.TrimSpace(line[i+1:])
					}
					break
				}
			}
		}
		fmt.Fprintf(&b, "processor\t: 0\nmodel name\t: %s\ncpu MHz\t\t: 0.000\n\n", model)
	default:
		return nil, unix.ENOENT
	}
	return []byte(b.String()), 0
}

// openProc opens a /proc path (read-only).
func (k *Kernel) openProc(clean string, flags int) (file, unix.Errno) {
	name, dir := k.procName(clean)
	if dir {
		return nil, unix.ENOENT // no listing of /proc
	}
	if flags&unix.O_ACCMODE != unix.O_RDONLY {
		return nil, unix.EACCES
	}
	data, e := k.procContents(name)
	if e != 0 {
		return nil, e
	}
	return &procFile{data: data}, 0
}

// statProc stats a /proc path.
func (k *Kernel) statProc(clean string) (unix.Stat_t, unix.Errno) {
	name, dir := k.procName(clean)
	if dir {
		return procStat(true), 0
	}
	if name == "self/exe" {
		return k.root.stat(k.exe, false)
	}
	if _, e := k.procContents(name); e != 0 {
		return unix.Stat_t{}, e
	}
	return procStat(false), 0
}

// sysGetrusage: CPU time is the UC's age (as CLOCK_PROCESS_CPUTIME_ID answers), the
// maximum resident set its commit charge.
func sysGetrusage(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	switch int32(a[0]) {
	case unix.RUSAGE_SELF, unix.RUSAGE_THREAD, unix.RUSAGE_CHILDREN:
	default:
		return 0, unix.EINVAL
	}
	b := make([]byte, 144)
	if int32(a[0]) != unix.RUSAGE_CHILDREN {
		up := time.Since(k.start)
		le := binary.LittleEndian
		le.PutUint64(b[0:], uint64(up/time.Second))
		le.PutUint64(b[8:], uint64(up%time.Second/time.Microsecond))
		k.as.mu.Lock()
		le.PutUint64(b[32:], k.as.committed>>10)
		k.as.mu.Unlock()
	}
	return 0, k.as.copyOut(a[1], b)
}
