package unikernel

import (
	"crypto/rand"
	"encoding/binary"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// handler serves one system call. It returns the result or an errno (which becomes -errno
// in RAX). a holds RDI, RSI, RDX, R10, R8, R9.
type handler func(k *Kernel, t sysThread, a *[6]uint64) (uint64, unix.Errno)

// syscallTable maps x86-64 system-call numbers to handlers. Anything not here returns
// ENOSYS, counted and logged once per number.
var syscallTable = map[uint64]handler{
	unix.SYS_READ:              sysRead,
	unix.SYS_WRITE:             sysWrite,
	unix.SYS_OPEN:              sysOpen,
	unix.SYS_CLOSE:             sysClose,
	unix.SYS_STAT:              sysStat,
	unix.SYS_FSTAT:             sysFstat,
	unix.SYS_LSTAT:             sysLstat,
	unix.SYS_LSEEK:             sysLseek,
	unix.SYS_MMAP:              sysMmap,
	unix.SYS_MPROTECT:          sysMprotect,
	unix.SYS_MUNMAP:            sysMunmap,
	unix.SYS_BRK:               sysBrk,
	unix.SYS_RT_SIGACTION:      sysRtSigaction,
	unix.SYS_RT_SIGPROCMASK:    sysRtSigprocmask,
	unix.SYS_IOCTL:             sysIoctl,
	unix.SYS_PREAD64:           sysPread,
	unix.SYS_PWRITE64:          sysPwrite,
	unix.SYS_READV:             sysReadv,
	unix.SYS_WRITEV:            sysWritev,
	unix.SYS_ACCESS:            sysAccess,
	unix.SYS_PIPE:              sysPipe,
	unix.SYS_SCHED_YIELD:       sysZero,
	unix.SYS_MREMAP:            sysMremap,
	unix.SYS_MADVISE:           sysMadvise,
	unix.SYS_DUP:               sysDup,
	unix.SYS_DUP2:              sysDup2,
	unix.SYS_NANOSLEEP:         sysNanosleep,
	unix.SYS_GETPID:            sysGetpid,
	unix.SYS_EXIT:              sysExitThread,
	unix.SYS_CLONE:             sysClone,
	unix.SYS_CLONE3:            sysClone3,
	unix.SYS_UNAME:             sysUname,
	unix.SYS_FCNTL:             sysFcntl,
	unix.SYS_FTRUNCATE:         sysFtruncate,
	unix.SYS_GETDENTS64:        sysGetdents64,
	unix.SYS_GETCWD:            sysGetcwd,
	unix.SYS_CHDIR:             sysChdir,
	unix.SYS_FCHDIR:            sysFchdir,
	unix.SYS_RENAME:            sysRename,
	unix.SYS_MKDIR:             sysMkdir,
	unix.SYS_RMDIR:             sysRmdir,
	unix.SYS_UNLINK:            sysUnlink,
	unix.SYS_READLINK:          sysReadlink,
	unix.SYS_UMASK:             sysUmask,
	unix.SYS_GETTIMEOFDAY:      sysGettimeofday,
	unix.SYS_GETRLIMIT:         sysGetrlimit,
	unix.SYS_SYSINFO:           sysSysinfo,
	unix.SYS_GETUID:            sysID,
	unix.SYS_GETGID:            sysID,
	unix.SYS_GETEUID:           sysID,
	unix.SYS_GETEGID:           sysID,
	unix.SYS_GETPPID:           sysGetppid,
	unix.SYS_GETPGRP:           sysGetpid,
	unix.SYS_SIGALTSTACK:       sysSigaltstack,
	unix.SYS_ARCH_PRCTL:        sysArchPrctl,
	unix.SYS_GETTID:            sysGettid,
	unix.SYS_TIME:              sysTime,
	unix.SYS_SCHED_GETAFFINITY: sysSchedGetaffinity,
	unix.SYS_SET_TID_ADDRESS:   sysSetTidAddress,
	unix.SYS_CLOCK_GETTIME:     sysClockGettime,
	unix.SYS_CLOCK_GETRES:      sysClockGetres,
	unix.SYS_CLOCK_NANOSLEEP:   sysClockNanosleep,
	unix.SYS_EXIT_GROUP:        sysExitGroup,
	unix.SYS_OPENAT:            sysOpenat,
	unix.SYS_MKDIRAT:           sysMkdirat,
	unix.SYS_NEWFSTATAT:        sysNewfstatat,
	unix.SYS_UNLINKAT:          sysUnlinkat,
	unix.SYS_RENAMEAT:          sysRenameat,
	unix.SYS_RENAMEAT2:         sysRenameat,
	unix.SYS_READLINKAT:        sysReadlinkat,
	unix.SYS_FACCESSAT:         sysFaccessat,
	unix.SYS_FACCESSAT2:        sysFaccessat,
	unix.SYS_SET_ROBUST_LIST:   sysSetRobustList,
	unix.SYS_DUP3:              sysDup3,
	unix.SYS_PIPE2:             sysPipe2,
	unix.SYS_PRLIMIT64:         sysPrlimit64,
	unix.SYS_GETRANDOM:         sysGetrandom,
	unix.SYS_RSEQ:              sysRseq,
	unix.SYS_SETRLIMIT:         sysZero,
	unix.SYS_FSYNC:             sysFsync,
	unix.SYS_FDATASYNC:         sysFsync,
	unix.SYS_SOCKET:            sysSocket,
	unix.SYS_STATX:             sysStatx,
	unix.SYS_STATFS:            sysStatfs,
	unix.SYS_FSTATFS:           sysFstatfs,
	unix.SYS_GETXATTR:          sysNoXattr,
	unix.SYS_LGETXATTR:         sysNoXattr,
	unix.SYS_FGETXATTR:         sysNoXattr,
	unix.SYS_LISTXATTR:         sysNoXattr,
	unix.SYS_LLISTXATTR:        sysNoXattr,
	unix.SYS_FLISTXATTR:        sysNoXattr,
}

// dispatch runs one system call and returns RAX.
func (k *Kernel) dispatch(t sysThread, nr uint64, a *[6]uint64) uint64 {
	if nr < uint64(len(k.counts)) {
		k.counts[nr].Add(1)
	} else {
		k.other.Add(1)
	}
	h, ok := syscallTable[nr]
	if !ok {
		k.unknown(nr)
		return errRet(unix.ENOSYS)
	}
	r, e := h(k, t, a)
	ret := r
	if e != 0 {
		ret = errRet(e)
	}
	if st := t.state(); atomic.LoadUint64(&st.sigPending) != 0 {
		ret = k.deliverPending(t, ret) // a signal from another thread (signal.go)
	}
	return ret
}

func errRet(e unix.Errno) uint64 { return uint64(-int64(e)) }

func (k *Kernel) unknown(nr uint64) {
	k.unknownMu.Lock()
	first := !k.unknownLogged[nr]
	k.unknownLogged[nr] = true
	k.unknownMu.Unlock()
	if first && k.log != nil {
		k.log.Warn("unikernel: unimplemented system call, returning ENOSYS", "nr", nr, "name", syscallName(nr))
	}
}

// Unknown returns the numbers of unimplemented system calls the guest made.
func (k *Kernel) Unknown() []uint64 {
	k.unknownMu.Lock()
	defer k.unknownMu.Unlock()
	var out []uint64
	for nr := range k.unknownLogged {
		out = append(out, nr)
	}
	return out
}

const (
	atFDCWD          = -100
	atSymlinkNofollo = 0x100
	atRemovedir      = 0x200
	atEmptyPath      = 0x1000
	maxPath          = 4096
	maxIO            = 1 << 30
)

// sysSocket: a UC has no network (glibc's nscd probe and the like fall back quietly).
func sysSocket(*Kernel, sysThread, *[6]uint64) (uint64, unix.Errno) { return 0, unix.EACCES }

func sysZero(*Kernel, sysThread, *[6]uint64) (uint64, unix.Errno) { return 0, 0 }
func sysID(*Kernel, sysThread, *[6]uint64) (uint64, unix.Errno)   { return 1000, 0 }
func sysGetpid(k *Kernel, _ sysThread, _ *[6]uint64) (uint64, unix.Errno) {
	return uint64(k.pid), 0
}
func sysGetppid(*Kernel, sysThread, *[6]uint64) (uint64, unix.Errno) { return 1, 0 }
func sysGettid(_ *Kernel, t sysThread, _ *[6]uint64) (uint64, unix.Errno) {
	return uint64(t.TID()), 0
}

// --- file I/O ---

func accessOK(d *ofd, write bool) bool {
	m := d.flags & unix.O_ACCMODE
	if d.flags&unix.O_PATH != 0 {
		return false
	}
	if write {
		return m == unix.O_WRONLY || m == unix.O_RDWR
	}
	return m == unix.O_RDONLY || m == unix.O_RDWR
}

func sysRead(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	d, e := k.fds.get(a[0])
	if e != 0 {
		return 0, e
	}
	if !accessOK(d, false) {
		return 0, unix.EBADF
	}
	b, e := k.as.out(a[1], min(a[2], maxIO))
	if e != 0 {
		return 0, e
	}
	n, e := d.f.read(k, b)
	return uint64(n), e
}

func sysWrite(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	d, e := k.fds.get(a[0])
	if e != 0 {
		return 0, e
	}
	if !accessOK(d, true) {
		return 0, unix.EBADF
	}
	b, e := k.as.in(a[1], min(a[2], maxIO))
	if e != 0 {
		return 0, e
	}
	n, e := d.f.write(k, b)
	return uint64(n), e
}

func sysPread(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	d, e := k.fds.get(a[0])
	if e != 0 {
		return 0, e
	}
	if !accessOK(d, false) {
		return 0, unix.EBADF
	}
	if int64(a[3]) < 0 {
		return 0, unix.EINVAL
	}
	b, e := k.as.out(a[1], min(a[2], maxIO))
	if e != 0 {
		return 0, e
	}
	n, e := d.f.pread(b, int64(a[3]))
	return uint64(n), e
}

func sysPwrite(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	d, e := k.fds.get(a[0])
	if e != 0 {
		return 0, e
	}
	if !accessOK(d, true) {
		return 0, unix.EBADF
	}
	tf, ok := d.f.(*tmpFile)
	if !ok {
		return 0, unix.ESPIPE
	}
	b, e := k.as.in(a[1], min(a[2], maxIO))
	if e != 0 {
		return 0, e
	}
	tf.mu.Lock()
	save, app := tf.off, tf.append
	tf.off, tf.append = int64(a[3]), false
	tf.mu.Unlock()
	n, e := tf.write(k, b)
	tf.mu.Lock()
	tf.off, tf.append = save, app
	tf.mu.Unlock()
	return uint64(n), e
}

// iovecs decodes a struct iovec array.
func (k *Kernel) iovecs(addr, n uint64, write bool) ([][]byte, unix.Errno) {
	if n > 1024 {
		return nil, unix.EINVAL
	}
	raw, e := k.as.in(addr, n*16)
	if e != 0 {
		return nil, e
	}
	out := make([][]byte, 0, n)
	var total uint64
	for i := uint64(0); i < n; i++ {
		base := binary.LittleEndian.Uint64(raw[16*i:])
		l := binary.LittleEndian.Uint64(raw[16*i+8:])
		if int64(l) < 0 {
			return nil, unix.EINVAL
		}
		total += l
		if total > maxIO {
			return nil, unix.EINVAL
		}
		if l == 0 {
			continue
		}
		var b []byte
		if write {
			b, e = k.as.out(base, l)
		} else {
			b, e = k.as.in(base, l)
		}
		if e != 0 {
			return nil, e
		}
		out = append(out, b)
	}
	return out, 0
}

func sysReadv(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	d, e := k.fds.get(a[0])
	if e != 0 {
		return 0, e
	}
	if !accessOK(d, false) {
		return 0, unix.EBADF
	}
	iov, e := k.iovecs(a[1], a[2], true)
	if e != 0 {
		return 0, e
	}
	var total uint64
	for _, b := range iov {
		n, e := d.f.read(k, b)
		total += uint64(n)
		if e != 0 {
			if total > 0 {
				return total, 0
			}
			return 0, e
		}
		if n < len(b) {
			break
		}
	}
	return total, 0
}

func sysWritev(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	d, e := k.fds.get(a[0])
	if e != 0 {
		return 0, e
	}
	if !accessOK(d, true) {
		return 0, unix.EBADF
	}
	iov, e := k.iovecs(a[1], a[2], false)
	if e != 0 {
		return 0, e
	}
	// One write for stdio so that a line is not split between buffers.
	if _, ok := d.f.(*outFile); ok && len(iov) > 1 {
		var buf []byte
		for _, b := range iov {
			buf = append(buf, b...)
		}
		iov = [][]byte{buf}
	}
	var total uint64
	for _, b := range iov {
		n, e := d.f.write(k, b)
		total += uint64(n)
		if e != 0 {
			if total > 0 {
				return total, 0
			}
			return 0, e
		}
	}
	return total, 0
}

func sysLseek(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	d, e := k.fds.get(a[0])
	if e != 0 {
		return 0, e
	}
	n, e := d.f.seek(int64(a[1]), int(a[2]))
	return uint64(n), e
}

func sysClose(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	return 0, k.fds.close(a[0])
}

func sysFsync(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	_, e := k.fds.get(a[0])
	return 0, e
}

func sysIoctl(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	d, e := k.fds.get(a[0])
	if e != 0 {
		return 0, e
	}
	if a[1] == 0x5421 {
		if nb, ok := d.f.(setNonblocker); ok {
			v, e := k.as.in(a[2], 4)
			if e != 0 {
				return 0, e
			}
			nb.setNonblock(binary.LittleEndian.Uint32(v) != 0)
			return 0, 0
		}
	}
	return 0, unix.ENOTTY
}

func sysFtruncate(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	d, e := k.fds.get(a[0])
	if e != 0 {
		return 0, e
	}
	tf, ok := d.f.(*tmpFile)
	if !ok || !accessOK(d, true) {
		return 0, unix.EINVAL
	}
	if int64(a[1]) < 0 {
		return 0, unix.EINVAL
	}
	return 0, tf.truncate(int64(a[1]))
}

// --- paths ---

// dirOf returns the guest directory path a *at call is relative to.
func (k *Kernel) dirOf(dirfd uint64) (string, unix.Errno) {
	if int32(dirfd) == atFDCWD {
		k.mu.Lock()
		defer k.mu.Unlock()
		return k.cwd, 0
	}
	d, e := k.fds.get(uint64(uint32(dirfd)))
	if e != 0 {
		return "", e
	}
	if d.path == "" {
		return "", unix.ENOTDIR
	}
	return d.path, 0
}

// path reads a path argument and resolves it against dirfd.
func (k *Kernel) path(dirfd, addr uint64) (raw, clean string, e unix.Errno) {
	p, e := k.as.readString(addr, maxPath)
	if e != 0 {
		return "", "", e
	}
	if p == "" {
		return "", "", unix.ENOENT
	}
	dir := "/"
	if !strings.HasPrefix(p, "/") {
		if dir, e = k.dirOf(dirfd); e != 0 {
			return "", "", e
		}
	}
	raw, clean = joinGuest(dir, p)
	if len(raw) > maxPath {
		return "", "", unix.ENAMETOOLONG
	}
	return raw, clean, 0
}

func sysOpen(k *Kernel, t sysThread, a *[6]uint64) (uint64, unix.Errno) {
	b := [6]uint64{uint64(uint32(atFDCWD & 0xffffffff)), a[0], a[1], a[2]}
	return sysOpenat(k, t, &b)
}

func sysOpenat(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	raw, clean, e := k.path(a[0], a[1])
	if e != 0 {
		return 0, e
	}
	fd, e := k.open(raw, clean, int(a[2]), uint32(a[3]))
	return uint64(fd), e
}

func (k *Kernel) open(raw, clean string, flags int, mode uint32) (int, unix.Errno) {
	acc := flags & unix.O_ACCMODE
	writing := acc == unix.O_WRONLY || acc == unix.O_RDWR
	cloexec := flags&unix.O_CLOEXEC != 0
	keep := flags & (unix.O_ACCMODE | unix.O_APPEND | unix.O_NONBLOCK | unix.O_PATH | unix.O_DIRECTORY)
	var f file
	m, rel := whichMount(clean)
	switch m {
	case mountTmp:
		var node *tmpNode
		var e unix.Errno
		if flags&unix.O_CREAT != 0 {
			k.mu.Lock()
			um := k.umask
			k.mu.Unlock()
			node, e = k.tmp.create(rel, false, mode&^um, flags&unix.O_EXCL != 0)
		} else {
			node, e = k.tmp.lookup(rel)
		}
		if e != 0 {
			return -1, e
		}
		if node.dir && writing {
			return -1, unix.EISDIR
		}
		if !node.dir && flags&unix.O_DIRECTORY != 0 {
			return -1, unix.ENOTDIR
		}
		tf := &tmpFile{fs: k.tmp, node: node, path: rel, append: flags&unix.O_APPEND != 0}
		if flags&unix.O_TRUNC != 0 && writing {
			if e := tf.truncate(0); e != 0 {
				return -1, e
			}
		}
		f = tf
	case mountDev:
		f = &devFile{name: rel}
	case mountProc:
		pf, e := k.openProc(clean, flags)
		if e != 0 {
			return -1, e
		}
		f = pf
	default:
		if writing || flags&unix.O_TRUNC != 0 {
			if _, e := k.root.stat(raw, false); e != 0 && e != unix.ENOENT {
				return -1, e
			} else if e == unix.ENOENT && flags&unix.O_CREAT == 0 {
				return -1, e
			}
			return -1, unix.EROFS
		}
		hflags := unix.O_RDONLY | flags&(unix.O_DIRECTORY|unix.O_PATH)
		fd, e := k.root.open(raw, hflags, flags&unix.O_NOFOLLOW != 0)
		if e == unix.ENOENT && flags&unix.O_CREAT != 0 {
			return -1, unix.EROFS
		}
		if e != 0 {
			return -1, e
		}
		f = &hostFile{fd: fd}
	}
	d := &ofd{f: f, flags: keep, path: clean}
	fd, e := k.fds.install(d, 0, cloexec)
	if e != 0 {
		f.close()
		return -1, e
	}
	return fd, 0
}

// statPath stats a guest path.
func (k *Kernel) statPath(raw, clean string, nofollow bool) (unix.Stat_t, unix.Errno) {
	m, rel := whichMount(clean)
	switch m {
	case mountTmp:
		n, e := k.tmp.lookup(rel)
		if e != 0 {
			return unix.Stat_t{}, e
		}
		return k.tmp.stat(n), 0
	case mountDev:
		return (&devFile{name: rel}).stat()
	case mountProc:
		return k.statProc(clean)
	}
	return k.root.stat(raw, nofollow)
}

// putStat writes a struct stat (x86-64 layout, 144 bytes).
func (k *Kernel) putStat(addr uint64, st *unix.Stat_t) unix.Errno {
	b, e := k.as.out(addr, 144)
	if e != 0 {
		return e
	}
	le := binary.LittleEndian
	clear(b)
	le.PutUint64(b[0:], st.Dev)
	le.PutUint64(b[8:], st.Ino)
	le.PutUint64(b[16:], st.Nlink)
	le.PutUint32(b[24:], st.Mode)
	le.PutUint32(b[28:], st.Uid)
	le.PutUint32(b[32:], st.Gid)
	le.PutUint64(b[40:], st.Rdev)
	le.PutUint64(b[48:], uint64(st.Size))
	le.PutUint64(b[56:], uint64(st.Blksize))
	le.PutUint64(b[64:], uint64(st.Blocks))
	le.PutUint64(b[72:], uint64(st.Atim.Sec))
	le.PutUint64(b[80:], uint64(st.Atim.Nsec))
	le.PutUint64(b[88:], uint64(st.Mtim.Sec))
	le.PutUint64(b[96:], uint64(st.Mtim.Nsec))
	le.PutUint64(b[104:], uint64(st.Ctim.Sec))
	le.PutUint64(b[112:], uint64(st.Ctim.Nsec))
	return 0
}

func sysStat(k *Kernel, t sysThread, a *[6]uint64) (uint64, unix.Errno) {
	b := [6]uint64{uint64(uint32(atFDCWD & 0xffffffff)), a[0], a[1], 0}
	return sysNewfstatat(k, t, &b)
}

func sysLstat(k *Kernel, t sysThread, a *[6]uint64) (uint64, unix.Errno) {
	b := [6]uint64{uint64(uint32(atFDCWD & 0xffffffff)), a[0], a[1], atSymlinkNofollo}
	return sysNewfstatat(k, t, &b)
}

func sysFstat(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	d, e := k.fds.get(a[0])
	if e != 0 {
		return 0, e
	}
	st, e := d.f.stat()
	if e != 0 {
		return 0, e
	}
	return 0, k.putStat(a[1], &st)
}

func sysNewfstatat(k *Kernel, t sysThread, a *[6]uint64) (uint64, unix.Errno) {
	flags := a[3]
	if flags&atEmptyPath != 0 {
		p, e := k.as.readString(a[1], maxPath)
		if e != 0 {
			return 0, e
		}
		if p == "" {
			if int32(a[0]) == atFDCWD {
				k.mu.Lock()
				cwd := k.cwd
				k.mu.Unlock()
				st, e := k.statPath(cwd, cwd, false)
				if e != 0 {
					return 0, e
				}
				return 0, k.putStat(a[2], &st)
			}
			b := [6]uint64{uint64(uint32(a[0])), a[2]}
			return sysFstat(k, t, &b)
		}
	}
	raw, clean, e := k.path(a[0], a[1])
	if e != 0 {
		return 0, e
	}
	st, e := k.statPath(raw, clean, flags&atSymlinkNofollo != 0)
	if e != 0 {
		return 0, e
	}
	return 0, k.putStat(a[2], &st)
}

// sysStatx: statx(dirfd, path, flags, mask, buf), answering the basic fields.
func sysStatx(k *Kernel, t sysThread, a *[6]uint64) (uint64, unix.Errno) {
	var st unix.Stat_t
	flags := a[2]
	p, e := k.as.readString(a[1], maxPath)
	if e != 0 {
		return 0, e
	}
	if p == "" && flags&atEmptyPath != 0 {
		if int32(a[0]) == atFDCWD {
			k.mu.Lock()
			cwd := k.cwd
			k.mu.Unlock()
			st, e = k.statPath(cwd, cwd, false)
		} else {
			d, e2 := k.fds.get(uint64(uint32(a[0])))
			if e2 != 0 {
				return 0, e2
			}
			st, e = d.f.stat()
		}
	} else {
		raw, clean, e2 := k.path(a[0], a[1])
		if e2 != 0 {
			return 0, e2
		}
		st, e = k.statPath(raw, clean, flags&atSymlinkNofollo != 0)
	}
	if e != 0 {
		return 0, e
	}
	b, e := k.as.out(a[4], 256)
	if e != 0 {
		return 0, e
	}
	le := binary.LittleEndian
	clear(b)
	le.PutUint32(b[0:], 0x7ff) // STATX_BASIC_STATS
	le.PutUint32(b[4:], uint32(st.Blksize))
	le.PutUint32(b[16:], uint32(st.Nlink))
	le.PutUint32(b[20:], st.Uid)
	le.PutUint32(b[24:], st.Gid)
	le.PutUint16(b[28:], uint16(st.Mode))
	le.PutUint64(b[32:], st.Ino)
	le.PutUint64(b[40:], uint64(st.Size))
	le.PutUint64(b[48:], uint64(st.Blocks))
	for off, ts := range map[int]unix.Timespec{64: st.Atim, 96: st.Ctim, 112: st.Mtim} {
		le.PutUint64(b[off:], uint64(ts.Sec))
		le.PutUint32(b[off+8:], uint32(ts.Nsec))
	}
	le.PutUint32(b[128:], unix.Major(st.Rdev))
	le.PutUint32(b[132:], unix.Minor(st.Rdev))
	le.PutUint32(b[136:], unix.Major(st.Dev))
	le.PutUint32(b[140:], unix.Minor(st.Dev))
	return 0, 0
}

// putStatfs writes a struct statfs for the file system that serves m.
func (k *Kernel) putStatfs(addr uint64, m mount) unix.Errno {
	b, e := k.as.out(addr, 120)
	if e != 0 {
		return e
	}
	le := binary.LittleEndian
	clear(b)
	typ, flags := uint64(0xef53), uint64(1) // ext4-like, ST_RDONLY
	if m == mountTmp {
		typ, flags = 0x01021994, 0 // TMPFS_MAGIC
	}
	le.PutUint64(b[0:], typ)
	le.PutUint64(b[8:], pageSize)
	le.PutUint64(b[16:], k.cfg.Memory/pageSize)
	le.PutUint64(b[24:], k.cfg.Memory/pageSize/2)
	le.PutUint64(b[32:], k.cfg.Memory/pageSize/2)
	le.PutUint64(b[40:], 1<<20)
	le.PutUint64(b[48:], 1<<19)
	le.PutUint64(b[64:], 255)
	le.PutUint64(b[72:], pageSize)
	le.PutUint64(b[80:], flags)
	return 0
}

func sysStatfs(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	raw, clean, e := k.path(uint64(uint32(atFDCWD&0xffffffff)), a[0])
	if e != 0 {
		return 0, e
	}
	if _, e := k.statPath(raw, clean, false); e != 0 {
		return 0, e
	}
	m, _ := whichMount(clean)
	return 0, k.putStatfs(a[1], m)
}

func sysFstatfs(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	d, e := k.fds.get(a[0])
	if e != 0 {
		return 0, e
	}
	m := mountRoot
	if _, ok := d.f.(*tmpFile); ok {
		m = mountTmp
	}
	return 0, k.putStatfs(a[1], m)
}

// sysNoXattr: no extended attributes anywhere.
func sysNoXattr(*Kernel, sysThread, *[6]uint64) (uint64, unix.Errno) { return 0, unix.EOPNOTSUPP }

func sysGetdents64(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	d, e := k.fds.get(a[0])
	if e != 0 {
		return 0, e
	}
	b, e := k.as.out(a[1], min(a[2], 1<<20))
	if e != 0 {
		return 0, e
	}
	n, e := d.f.getdents(b)
	return uint64(n), e
}

func sysReadlink(k *Kernel, t sysThread, a *[6]uint64) (uint64, unix.Errno) {
	b := [6]uint64{uint64(uint32(atFDCWD & 0xffffffff)), a[0], a[1], a[2]}
	return sysReadlinkat(k, t, &b)
}

func sysReadlinkat(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	raw, clean, e := k.path(a[0], a[1])
	if e != 0 {
		return 0, e
	}
	if int64(a[3]) <= 0 {
		return 0, unix.EINVAL
	}
	var target string
	m, _ := whichMount(clean)
	switch {
	case clean == "/proc/self/exe":
		target = k.exe
	case m == mountRoot:
		if target, e = k.root.readlink(raw); e != 0 {
			return 0, e
		}
	case m == mountProc:
		return 0, unix.ENOENT
	default:
		if _, e := k.statPath(raw, clean, true); e != 0 {
			return 0, e
		}
		return 0, unix.EINVAL
	}
	n := min(uint64(len(target)), a[3])
	return n, k.as.copyOut(a[2], []byte(target[:n]))
}

func sysAccess(k *Kernel, t sysThread, a *[6]uint64) (uint64, unix.Errno) {
	b := [6]uint64{uint64(uint32(atFDCWD & 0xffffffff)), a[0], a[1]}
	return sysFaccessat(k, t, &b)
}

func sysFaccessat(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	raw, clean, e := k.path(a[0], a[1])
	if e != 0 {
		return 0, e
	}
	st, e := k.statPath(raw, clean, false)
	if e != 0 {
		return 0, e
	}
	mode := a[2]
	if mode&^7 != 0 {
		return 0, unix.EINVAL
	}
	if m, _ := whichMount(clean); mode&unix.W_OK != 0 && m == mountRoot {
		return 0, unix.EROFS
	}
	if mode&unix.X_OK != 0 && st.Mode&0o111 == 0 && st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return 0, unix.EACCES
	}
	return 0, 0
}

func sysGetcwd(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	k.mu.Lock()
	cwd := k.cwd
	k.mu.Unlock()
	if uint64(len(cwd))+1 > a[1] {
		return 0, unix.ERANGE
	}
	return uint64(len(cwd) + 1), k.as.copyOut(a[0], append([]byte(cwd), 0))
}

func (k *Kernel) chdir(raw, clean string) unix.Errno {
	st, e := k.statPath(raw, clean, false)
	if e != 0 {
		return e
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return unix.ENOTDIR
	}
	k.mu.Lock()
	k.cwd = clean
	k.mu.Unlock()
	return 0
}

func sysChdir(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	raw, clean, e := k.path(uint64(uint32(atFDCWD&0xffffffff)), a[0])
	if e != 0 {
		return 0, e
	}
	return 0, k.chdir(raw, clean)
}

func sysFchdir(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	d, e := k.fds.get(a[0])
	if e != 0 {
		return 0, e
	}
	if d.path == "" {
		return 0, unix.ENOTDIR
	}
	return 0, k.chdir(d.path, d.path)
}

func sysMkdir(k *Kernel, t sysThread, a *[6]uint64) (uint64, unix.Errno) {
	b := [6]uint64{uint64(uint32(atFDCWD & 0xffffffff)), a[0], a[1]}
	return sysMkdirat(k, t, &b)
}

func sysMkdirat(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	raw, clean, e := k.path(a[0], a[1])
	if e != 0 {
		return 0, e
	}
	m, rel := whichMount(clean)
	if m != mountTmp {
		if _, e := k.statPath(raw, clean, true); e == 0 {
			return 0, unix.EEXIST
		}
		return 0, unix.EROFS
	}
	k.mu.Lock()
	um := k.umask
	k.mu.Unlock()
	_, e = k.tmp.create(rel, true, uint32(a[2])&^um, true)
	return 0, e
}

func sysUnlink(k *Kernel, t sysThread, a *[6]uint64) (uint64, unix.Errno) {
	b := [6]uint64{uint64(uint32(atFDCWD & 0xffffffff)), a[0], 0}
	return sysUnlinkat(k, t, &b)
}

func sysRmdir(k *Kernel, t sysThread, a *[6]uint64) (uint64, unix.Errno) {
	b := [6]uint64{uint64(uint32(atFDCWD & 0xffffffff)), a[0], atRemovedir}
	return sysUnlinkat(k, t, &b)
}

func sysUnlinkat(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	raw, clean, e := k.path(a[0], a[1])
	if e != 0 {
		return 0, e
	}
	m, rel := whichMount(clean)
	if m != mountTmp {
		if _, e := k.statPath(raw, clean, true); e != 0 {
			return 0, e
		}
		return 0, unix.EROFS
	}
	return 0, k.tmp.remove(rel, a[2]&atRemovedir != 0)
}

func sysRename(k *Kernel, t sysThread, a *[6]uint64) (uint64, unix.Errno) {
	cwd := uint64(uint32(atFDCWD & 0xffffffff))
	b := [6]uint64{cwd, a[0], cwd, a[1]}
	return sysRenameat(k, t, &b)
}

func sysRenameat(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	_, from, e := k.path(a[0], a[1])
	if e != 0 {
		return 0, e
	}
	_, to, e := k.path(a[2], a[3])
	if e != 0 {
		return 0, e
	}
	mf, rf := whichMount(from)
	mt, rt := whichMount(to)
	if mf != mountTmp || mt != mountTmp {
		if mf != mt {
			return 0, unix.EXDEV
		}
		return 0, unix.EROFS
	}
	return 0, k.tmp.rename(rf, rt)
}

func sysUmask(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	k.mu.Lock()
	defer k.mu.Unlock()
	old := k.umask
	k.umask = uint32(a[0]) & 0o777
	return uint64(old), 0
}

// --- descriptors ---

func sysDup(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	d, e := k.fds.get(a[0])
	if e != 0 {
		return 0, e
	}
	fd, e := k.fds.install(d, 0, false)
	return uint64(fd), e
}

func sysDup2(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	d, e := k.fds.get(a[0])
	if e != 0 {
		return 0, e
	}
	if a[0] == a[1] {
		return a[1], 0
	}
	return a[1], k.fds.installAt(d, int(int32(a[1])), false)
}

func sysDup3(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	if a[0] == a[1] || a[2]&^unix.O_CLOEXEC != 0 {
		return 0, unix.EINVAL
	}
	d, e := k.fds.get(a[0])
	if e != 0 {
		return 0, e
	}
	return a[1], k.fds.installAt(d, int(int32(a[1])), a[2]&unix.O_CLOEXEC != 0)
}

func sysFcntl(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	d, e := k.fds.get(a[0])
	if e != 0 {
		return 0, e
	}
	switch a[1] {
	case unix.F_DUPFD, unix.F_DUPFD_CLOEXEC:
		if a[2] >= uint64(k.fds.max) {
			return 0, unix.EINVAL
		}
		fd, e := k.fds.install(d, int(a[2]), a[1] == unix.F_DUPFD_CLOEXEC)
		return uint64(fd), e
	case unix.F_GETFD:
		k.fds.mu.Lock()
		defer k.fds.mu.Unlock()
		if a[0] < uint64(len(k.fds.fds)) && k.fds.fds[a[0]] != nil && k.fds.fds[a[0]].cloexec {
			return unix.FD_CLOEXEC, 0
		}
		return 0, 0
	case unix.F_SETFD:
		k.fds.mu.Lock()
		defer k.fds.mu.Unlock()
		if a[0] < uint64(len(k.fds.fds)) && k.fds.fds[a[0]] != nil {
			k.fds.fds[a[0]].cloexec = a[2]&unix.FD_CLOEXEC != 0
		}
		return 0, 0
	case unix.F_GETFL:
		return uint64(d.flags), 0
	case unix.F_SETFL:
		d.flags = d.flags&^(unix.O_APPEND|unix.O_NONBLOCK) | int(a[2])&(unix.O_APPEND|unix.O_NONBLOCK)
		if nb, ok := d.f.(setNonblocker); ok {
			nb.setNonblock(d.flags&unix.O_NONBLOCK != 0)
		}
		if tf, ok := d.f.(*tmpFile); ok {
			tf.mu.Lock()
			tf.append = d.flags&unix.O_APPEND != 0
			tf.mu.Unlock()
		}
		return 0, 0
	case unix.F_GETLK, unix.F_SETLK, unix.F_SETLKW, unix.F_OFD_GETLK, unix.F_OFD_SETLK, unix.F_OFD_SETLKW:
		return 0, 0 // one process: locks never conflict
	}
	return 0, unix.EINVAL
}

func sysPipe(k *Kernel, t sysThread, a *[6]uint64) (uint64, unix.Errno) {
	b := [6]uint64{a[0], 0}
	return sysPipe2(k, t, &b)
}

func sysPipe2(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	if a[1]&^(unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_DIRECT) != 0 {
		return 0, unix.EINVAL
	}
	if !k.as.check(a[0], 8, unix.PROT_WRITE) {
		return 0, unix.EFAULT
	}
	p := newPipe()
	fl := int(a[1]) & unix.O_NONBLOCK
	rnb, wnb := new(atomicBool), new(atomicBool)
	rnb.Store(fl != 0)
	wnb.Store(fl != 0)
	r := &ofd{f: &pipeEnd{p: p, nonblock: rnb}, flags: unix.O_RDONLY | fl}
	w := &ofd{f: &pipeEnd{p: p, isWriter: true, nonblock: wnb}, flags: unix.O_WRONLY | fl}
	cloexec := a[1]&unix.O_CLOEXEC != 0
	rfd, e := k.fds.install(r, 0, cloexec)
	if e != 0 {
		r.f.close()
		w.f.close()
		return 0, e
	}
	wfd, e := k.fds.install(w, 0, cloexec)
	if e != 0 {
		k.fds.close(uint64(rfd))
		w.f.close()
		return 0, e
	}
	k.as.writeU32(a[0], uint32(rfd))
	k.as.writeU32(a[0]+4, uint32(wfd))
	return 0, 0
}

// --- memory ---

func sysBrk(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	return k.as.setBrk(a[0]), 0
}

const (
	mapShared         = 0x01
	mapPrivate        = 0x02
	mapSharedValidate = 0x03
	mapFixed          = 0x10
	mapAnonymous      = 0x20
	mapFixedNoreplace = 0x100000
)

func sysMmap(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	addr, length, prot, flags, fdArg, off := a[0], a[1], int(a[2]), a[3], a[4], int64(a[5])
	if prot&^(unix.PROT_READ|unix.PROT_WRITE|unix.PROT_EXEC) != 0 {
		return 0, unix.EINVAL
	}
	typ := flags & 0x3
	if typ == 0 {
		return 0, unix.EINVAL
	}
	fixed := flags&mapFixed != 0
	noReplace := flags&mapFixedNoreplace != 0
	shared := typ == mapShared || typ == mapSharedValidate
	if flags&mapAnonymous != 0 {
		return k.as.mmap(addr, length, prot, fixed, noReplace, shared, -1, "", 0, 0)
	}
	d, e := k.fds.get(uint64(uint32(fdArg)))
	if e != 0 {
		return 0, e
	}
	if d.flags&unix.O_ACCMODE == unix.O_WRONLY || d.flags&unix.O_PATH != 0 {
		return 0, unix.EACCES
	}
	switch f := d.f.(type) {
	case *hostFile:
		st, e := f.stat()
		if e != 0 {
			return 0, e
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			return 0, unix.ENODEV
		}
		// The root is read-only, so a shared mapping can never be written through:
		// it behaves as a private one.
		return k.as.mmap(addr, length, prot, fixed, noReplace, false, f.fd, d.path, off, st.Size)
	case *tmpFile:
		if f.node.dir {
			return 0, unix.ENODEV
		}
		// /tmp files are copied in (changes through a shared mapping are not written back).
		g, e := k.as.mmap(addr, length, prot, fixed, noReplace, false, -1, "", 0, 0)
		if e != 0 {
			return 0, e
		}
		buf := make([]byte, pageUp(length))
		n, _ := f.pread(buf, off)
		copy(k.as.mem[g:g+uint64(len(buf))], buf[:n])
		return g, 0
	case *devFile:
		return k.as.mmap(addr, length, prot, fixed, noReplace, false, -1, "", 0, 0)
	}
	return 0, unix.ENODEV
}

func sysMunmap(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	return 0, k.as.munmap(a[0], a[1])
}

func sysMprotect(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	if a[2]&^uint64(unix.PROT_READ|unix.PROT_WRITE|unix.PROT_EXEC|unix.PROT_GROWSDOWN|unix.PROT_GROWSUP) != 0 {
		return 0, unix.EINVAL
	}
	return 0, k.as.mprotect(a[0], a[1], int(a[2])&7)
}

func sysMadvise(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	switch a[2] {
	case unix.MADV_DONTNEED, unix.MADV_FREE:
		return 0, k.as.dontNeed(a[0], a[1], k.hostMadvise)
	}
	if a[0]%pageSize != 0 {
		return 0, unix.EINVAL
	}
	return 0, 0
}

func sysMremap(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	old, oldLen, newLen, flags := a[0], pageUp(a[1]), pageUp(a[2]), a[3]
	const mayMove, fixed = 1, 2
	if old%pageSize != 0 || newLen == 0 || flags&fixed != 0 || flags&^3 != 0 {
		return 0, unix.EINVAL
	}
	if !k.as.check(old, oldLen, 0) {
		return 0, unix.EFAULT
	}
	vs := k.as.snapshotVMAs()
	var v *vma
	for i := range vs {
		if vs[i].start <= old && old < vs[i].end {
			v = &vs[i]
		}
	}
	if v == nil || v.file != "" || old+oldLen > v.end {
		return 0, unix.EFAULT
	}
	if newLen <= oldLen {
		if newLen < oldLen {
			if e := k.as.munmap(old+newLen, oldLen-newLen); e != 0 {
				return 0, e
			}
		}
		return old, 0
	}
	if flags&mayMove == 0 {
		return 0, unix.ENOMEM
	}
	g, e := k.as.mmap(0, newLen, v.prot, false, false, false, -1, "", 0, 0)
	if e != 0 {
		return 0, e
	}
	copy(k.as.mem[g:g+oldLen], k.as.mem[old:old+oldLen])
	k.as.munmap(old, oldLen)
	return g, 0
}

// --- signals (recorded only, issue 3 delivers them) ---

func sysRtSigaction(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	sig := a[0]
	if sig == 0 || sig > 64 || a[3] != 8 {
		return 0, unix.EINVAL
	}
	var act []byte
	if a[1] != 0 {
		if sig == uint64(unix.SIGKILL) || sig == uint64(unix.SIGSTOP) {
			return 0, unix.EINVAL
		}
		b, e := k.as.in(a[1], 32)
		if e != 0 {
			return 0, e
		}
		act = append([]byte(nil), b...)
	}
	k.mu.Lock()
	old := k.sigactions[sig]
	if act != nil {
		copy(k.sigactions[sig][:], act)
	}
	k.mu.Unlock()
	if a[2] != 0 {
		if e := k.as.copyOut(a[2], old[:]); e != 0 {
			return 0, e
		}
	}
	return 0, 0
}

func sysRtSigprocmask(k *Kernel, t sysThread, a *[6]uint64) (uint64, unix.Errno) {
	if a[3] != 8 {
		return 0, unix.EINVAL
	}
	st := t.state()
	old := st.sigmask
	if a[1] != 0 {
		set, e := k.as.readU64(a[1])
		if e != 0 {
			return 0, e
		}
		set &^= 1<<(unix.SIGKILL-1) | 1<<(unix.SIGSTOP-1)
		switch a[0] {
		case unix.SIG_BLOCK:
			st.sigmask |= set
		case unix.SIG_UNBLOCK:
			st.sigmask &^= set
		case unix.SIG_SETMASK:
			st.sigmask = set
		default:
			return 0, unix.EINVAL
		}
	}
	if a[2] != 0 {
		if e := k.as.writeU64(a[2], old); e != 0 {
			return 0, e
		}
	}
	return 0, 0
}

func sysSigaltstack(k *Kernel, t sysThread, a *[6]uint64) (uint64, unix.Errno) {
	st := t.state()
	old := st.altstack
	if a[0] != 0 {
		b, e := k.as.in(a[0], 24)
		if e != 0 {
			return 0, e
		}
		copy(st.altstack[:], b)
	}
	if a[1] != 0 {
		if old == ([24]byte{}) {
			binary.LittleEndian.PutUint32(old[8:], 2) // SS_DISABLE
		}
		if e := k.as.copyOut(a[1], old[:]); e != 0 {
			return 0, e
		}
	}
	return 0, 0
}

// --- process and thread ---

func sysExitGroup(k *Kernel, t sysThread, a *[6]uint64) (uint64, unix.Errno) {
	st := t.state()
	st.exiting = true
	st.exitStatus = int(a[0] & 0xff)
	k.exitGroup(st.exitStatus)
	return 0, 0
}

func sysSetTidAddress(_ *Kernel, t sysThread, a *[6]uint64) (uint64, unix.Errno) {
	t.state().clearTID = a[0]
	return uint64(t.TID()), 0
}

func sysSetRobustList(_ *Kernel, t sysThread, a *[6]uint64) (uint64, unix.Errno) {
	if a[1] != 24 {
		return 0, unix.EINVAL
	}
	t.state().robustList = a[0]
	return 0, 0
}

func sysRseq(k *Kernel, t sysThread, a *[6]uint64) (uint64, unix.Errno) {
	const unregister = 1
	st := t.state()
	if a[2]&unregister != 0 {
		if st.rseq != a[0] {
			return 0, unix.EINVAL
		}
		st.rseq = 0
		return 0, 0
	}
	if a[1] < 32 || a[0]%32 != 0 {
		return 0, unix.EINVAL
	}
	if st.rseq != 0 {
		return 0, unix.EBUSY
	}
	// struct rseq: cpu_id_start, cpu_id. One CPU as far as the guest can tell.
	if e := k.as.writeU32(a[0], 0); e != 0 {
		return 0, e
	}
	if e := k.as.writeU32(a[0]+4, 0); e != 0 {
		return 0, e
	}
	st.rseq = a[0]
	return 0, 0
}

func sysArchPrctl(k *Kernel, t sysThread, a *[6]uint64) (uint64, unix.Errno) {
	const setGS, setFS, getFS, getGS = 0x1001, 0x1002, 0x1003, 0x1004
	switch a[0] {
	case setFS:
		if a[1] >= 1<<47 {
			return 0, unix.EPERM
		}
		if err := t.setFSBase(a[1]); err != nil {
			return 0, unix.EIO
		}
		return 0, 0
	case setGS:
		if a[1] >= 1<<47 {
			return 0, unix.EPERM
		}
		if err := t.setGSBase(a[1]); err != nil {
			return 0, unix.EIO
		}
		return 0, 0
	case getFS:
		return 0, k.as.writeU64(a[1], t.fsBaseValue())
	}
	return 0, unix.EINVAL
}

func sysSchedGetaffinity(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	if a[1] < 8 || a[1]%8 != 0 {
		return 0, unix.EINVAL
	}
	if e := k.as.writeU64(a[2], 1); e != 0 {
		return 0, e
	}
	return 8, 0
}

func sysUname(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	var u unix.Utsname
	_ = unix.Uname(&u)
	b := make([]byte, 6*65)
	put := func(i int, s string) { copy(b[i*65:i*65+64], s) }
	put(0, "Linux")
	put(1, "seuss")
	put(2, unix.ByteSliceToString(u.Release[:]))
	put(3, "#1 SMP seuss unikernel context")
	put(4, "x86_64")
	put(5, "(none)")
	return 0, k.as.copyOut(a[0], b)
}

func sysSysinfo(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	b := make([]byte, 112)
	le := binary.LittleEndian
	le.PutUint64(b[0:], uint64(time.Since(k.start).Seconds())+1)
	k.as.mu.Lock()
	total, used := k.as.limit, k.as.committed
	k.as.mu.Unlock()
	le.PutUint64(b[32:], total)
	le.PutUint64(b[40:], total-min(used, total))
	le.PutUint16(b[80:], 1) // procs
	le.PutUint32(b[104:], 1)
	return 0, k.as.copyOut(a[0], b)
}

func (k *Kernel) rlimit(res uint64) (cur, max uint64, e unix.Errno) {
	const inf = ^uint64(0)
	switch res {
	case unix.RLIMIT_STACK:
		return stackSize, inf, 0
	case unix.RLIMIT_NOFILE:
		return uint64(k.fds.max), uint64(k.fds.max), 0
	case unix.RLIMIT_AS, unix.RLIMIT_DATA:
		return k.cfg.Memory, k.cfg.Memory, 0
	case unix.RLIMIT_NPROC:
		return 1, 1, 0
	}
	if res >= 16 {
		return 0, 0, unix.EINVAL
	}
	return inf, inf, 0
}

func sysGetrlimit(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	cur, max, e := k.rlimit(a[0])
	if e != 0 {
		return 0, e
	}
	if e := k.as.writeU64(a[1], cur); e != 0 {
		return 0, e
	}
	return 0, k.as.writeU64(a[1]+8, max)
}

func sysPrlimit64(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	if a[0] != 0 && int(a[0]) != k.pid {
		return 0, unix.ESRCH
	}
	cur, max, e := k.rlimit(a[1])
	if e != 0 {
		return 0, e
	}
	if a[2] != 0 {
		if _, e := k.as.in(a[2], 16); e != 0 {
			return 0, e
		}
		// New limits are accepted and ignored: the UC's own limits always apply.
	}
	if a[3] != 0 {
		if e := k.as.writeU64(a[3], cur); e != 0 {
			return 0, e
		}
		return 0, k.as.writeU64(a[3]+8, max)
	}
	return 0, 0
}

func sysGetrandom(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	if a[2]&^7 != 0 {
		return 0, unix.EINVAL
	}
	b, e := k.as.out(a[0], min(a[1], 32<<20))
	if e != 0 {
		return 0, e
	}
	n, _ := rand.Read(b)
	return uint64(n), 0
}

// --- time ---

func (k *Kernel) now(clock uint64) (unix.Timespec, unix.Errno) {
	var ts unix.Timespec
	switch clock {
	case unix.CLOCK_REALTIME, unix.CLOCK_MONOTONIC, unix.CLOCK_MONOTONIC_RAW, unix.CLOCK_REALTIME_COARSE,
		unix.CLOCK_MONOTONIC_COARSE, unix.CLOCK_BOOTTIME, unix.CLOCK_TAI:
		if err := unix.ClockGettime(int32(clock), &ts); err != nil {
			return ts, unix.EINVAL
		}
	case unix.CLOCK_PROCESS_CPUTIME_ID, unix.CLOCK_THREAD_CPUTIME_ID:
		ts = unix.NsecToTimespec(time.Since(k.start).Nanoseconds())
	default:
		return ts, unix.EINVAL
	}
	return ts, 0
}

func (k *Kernel) putTimespec(addr uint64, ts unix.Timespec) unix.Errno {
	if e := k.as.writeU64(addr, uint64(ts.Sec)); e != 0 {
		return e
	}
	return k.as.writeU64(addr+8, uint64(ts.Nsec))
}

func (k *Kernel) getTimespec(addr uint64) (time.Duration, unix.Errno) {
	s, e := k.as.readU64(addr)
	if e != 0 {
		return 0, e
	}
	ns, e := k.as.readU64(addr + 8)
	if e != 0 {
		return 0, e
	}
	if int64(s) < 0 || ns >= 1e9 {
		return 0, unix.EINVAL
	}
	if s > 1<<32 {
		s = 1 << 32
	}
	return time.Duration(s)*time.Second + time.Duration(ns), 0
}

func sysClockGettime(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	ts, e := k.now(a[0])
	if e != 0 {
		return 0, e
	}
	return 0, k.putTimespec(a[1], ts)
}

func sysClockGetres(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	if _, e := k.now(a[0]); e != 0 {
		return 0, e
	}
	if a[1] == 0 {
		return 0, 0
	}
	return 0, k.putTimespec(a[1], unix.Timespec{Nsec: 1})
}

func sysGettimeofday(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	if a[0] == 0 {
		return 0, 0
	}
	now := time.Now()
	if e := k.as.writeU64(a[0], uint64(now.Unix())); e != 0 {
		return 0, e
	}
	return 0, k.as.writeU64(a[0]+8, uint64(now.Nanosecond()/1000))
}

func sysTime(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	now := uint64(time.Now().Unix())
	if a[0] != 0 {
		if e := k.as.writeU64(a[0], now); e != 0 {
			return 0, e
		}
	}
	return now, 0
}

// sleep waits d or until the UC stops.
func (k *Kernel) sleep(d time.Duration) unix.Errno {
	if d <= 0 {
		return 0
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return 0
	case <-k.stopped:
		return unix.EINTR
	}
}

func sysNanosleep(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	d, e := k.getTimespec(a[0])
	if e != 0 {
		return 0, e
	}
	return 0, k.sleep(d)
}

func sysClockNanosleep(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	d, e := k.getTimespec(a[2])
	if e != 0 {
		return 0, e
	}
	if _, e := k.now(a[0]); e != 0 {
		return 0, e
	}
	if a[1]&unix.TIMER_ABSTIME != 0 {
		now, _ := k.now(a[0])
		d -= time.Duration(now.Nano())
	}
	return 0, k.sleep(d)
}
