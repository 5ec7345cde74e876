package unikernel

import (
	"crypto/rand"
	"encoding/binary"
	"io"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// file is an open file description's implementation. Methods that can block take the
// kernel so that they give up (EINTR) when the UC is stopped.
type file interface {
	read(k *Kernel, b []byte) (int, unix.Errno)
	write(k *Kernel, b []byte) (int, unix.Errno)
	pread(b []byte, off int64) (int, unix.Errno)
	seek(off int64, whence int) (int64, unix.Errno)
	stat() (unix.Stat_t, unix.Errno)
	getdents(b []byte) (int, unix.Errno)
	close() error
}

// baseFile gives every file kind Linux's answers for operations it does not support.
type baseFile struct{}

func (baseFile) read(*Kernel, []byte) (int, unix.Errno)  { return 0, unix.EINVAL }
func (baseFile) write(*Kernel, []byte) (int, unix.Errno) { return 0, unix.EINVAL }
func (baseFile) pread([]byte, int64) (int, unix.Errno)   { return 0, unix.ESPIPE }
func (baseFile) seek(int64, int) (int64, unix.Errno)     { return 0, unix.ESPIPE }
func (baseFile) getdents([]byte) (int, unix.Errno)       { return 0, unix.ENOTDIR }
func (baseFile) close() error                            { return nil }

// ofd is an open file description, shared by dup'ed descriptors.
type ofd struct {
	f     file
	flags int    // O_ACCMODE | O_APPEND | O_NONBLOCK ...
	path  string // guest path it was opened by ("" for pipes and stdio)
	refs  atomic.Int32
}

type fdEntry struct {
	d       *ofd
	cloexec bool
}

// fdTable is a UC's descriptor table. Plain data so that snapshots can save it.
type fdTable struct {
	mu  sync.Mutex
	fds []*fdEntry
	max int
}

func (t *fdTable) get(fd uint64) (*ofd, unix.Errno) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if fd >= uint64(len(t.fds)) || t.fds[fd] == nil {
		return nil, unix.EBADF
	}
	return t.fds[fd].d, 0
}

// install puts d at the lowest free descriptor >= min.
func (t *fdTable) install(d *ofd, min int, cloexec bool) (int, unix.Errno) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := min; i < t.max; i++ {
		if i >= len(t.fds) {
			t.fds = append(t.fds, make([]*fdEntry, i+1-len(t.fds))...)
		}
		if t.fds[i] == nil {
			d.refs.Add(1)
			t.fds[i] = &fdEntry{d: d, cloexec: cloexec}
			return i, 0
		}
	}
	return -1, unix.EMFILE
}

// installAt puts d at fd, closing what was there (dup2).
func (t *fdTable) installAt(d *ofd, fd int, cloexec bool) unix.Errno {
	if fd < 0 || fd >= t.max {
		return unix.EBADF
	}
	t.mu.Lock()
	if fd >= len(t.fds) {
		t.fds = append(t.fds, make([]*fdEntry, fd+1-len(t.fds))...)
	}
	old := t.fds[fd]
	d.refs.Add(1)
	t.fds[fd] = &fdEntry{d: d, cloexec: cloexec}
	t.mu.Unlock()
	if old != nil {
		release(old.d)
	}
	return 0
}

func (t *fdTable) close(fd uint64) unix.Errno {
	t.mu.Lock()
	if fd >= uint64(len(t.fds)) || t.fds[fd] == nil {
		t.mu.Unlock()
		return unix.EBADF
	}
	e := t.fds[fd]
	t.fds[fd] = nil
	t.mu.Unlock()
	release(e.d)
	return 0
}

func (t *fdTable) closeAll() {
	t.mu.Lock()
	fds := t.fds
	t.fds = nil
	t.mu.Unlock()
	for _, e := range fds {
		if e != nil {
			release(e.d)
		}
	}
}

func (t *fdTable) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, e := range t.fds {
		if e != nil {
			n++
		}
	}
	return n
}

func release(d *ofd) {
	if d.refs.Add(-1) == 0 {
		d.f.close()
	}
}

// hostFile is a file or directory of the read-only root, open on the host.
type hostFile struct {
	baseFile
	fd int
	mu sync.Mutex
}

func errnoOf(err error) unix.Errno {
	if err == nil {
		return 0
	}
	if e, ok := err.(unix.Errno); ok {
		return e
	}
	return unix.EIO
}

func (f *hostFile) read(_ *Kernel, b []byte) (int, unix.Errno) {
	for {
		n, err := unix.Read(f.fd, b)
		if err == unix.EINTR {
			continue
		}
		return max(n, 0), errnoOf(err)
	}
}

func (f *hostFile) write(*Kernel, []byte) (int, unix.Errno) { return 0, unix.EBADF }

func (f *hostFile) pread(b []byte, off int64) (int, unix.Errno) {
	for {
		n, err := unix.Pread(f.fd, b, off)
		if err == unix.EINTR {
			continue
		}
		return max(n, 0), errnoOf(err)
	}
}

func (f *hostFile) seek(off int64, whence int) (int64, unix.Errno) {
	if whence < 0 || whence > 4 {
		return 0, unix.EINVAL
	}
	n, err := unix.Seek(f.fd, off, whence)
	return n, errnoOf(err)
}

func (f *hostFile) stat() (unix.Stat_t, unix.Errno) {
	var st unix.Stat_t
	err := unix.Fstat(f.fd, &st)
	return st, errnoOf(err)
}

func (f *hostFile) getdents(b []byte) (int, unix.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := unix.Getdents(f.fd, b)
	return max(n, 0), errnoOf(err)
}

func (f *hostFile) close() error { return unix.Close(f.fd) }

// tmpFile is an open file or directory of /tmp.
type tmpFile struct {
	baseFile
	fs   *tmpFS
	node *tmpNode
	path string
	mu   sync.Mutex
	off  int64
	// dirents is the directory listing taken at the first getdents.
	dirents []string
	append  bool
}

func (f *tmpFile) read(_ *Kernel, b []byte) (int, unix.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, e := f.pread(b, f.off)
	f.off += int64(n)
	return n, e
}

func (f *tmpFile) pread(b []byte, off int64) (int, unix.Errno) {
	if f.node.dir {
		return 0, unix.EISDIR
	}
	if off < 0 {
		return 0, unix.EINVAL
	}
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if off >= int64(len(f.node.data)) {
		return 0, 0
	}
	return copy(b, f.node.data[off:]), 0
}

func (f *tmpFile) write(_ *Kernel, b []byte) (int, unix.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.append {
		f.off = int64(len(f.node.data))
	}
	end := f.off + int64(len(b))
	grow := end - int64(len(f.node.data))
	if grow > 0 && f.fs.bytes+grow > f.fs.limit {
		return 0, unix.ENOSPC
	}
	if grow > 0 {
		f.node.data = append(f.node.data, make([]byte, grow)...)
		f.fs.bytes += grow
	}
	copy(f.node.data[f.off:], b)
	f.off = end
	return len(b), 0
}

func (f *tmpFile) seek(off int64, whence int) (int64, unix.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var base int64
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		base = f.off
	case io.SeekEnd:
		f.fs.mu.Lock()
		base = int64(len(f.node.data))
		f.fs.mu.Unlock()
	default:
		return 0, unix.EINVAL
	}
	if base+off < 0 {
		return 0, unix.EINVAL
	}
	f.off = base + off
	if f.node.dir && f.off == 0 {
		f.dirents = nil
	}
	return f.off, 0
}

func (f *tmpFile) stat() (unix.Stat_t, unix.Errno) { return f.fs.stat(f.node), 0 }

func (f *tmpFile) truncate(n int64) unix.Errno {
	if f.node.dir {
		return unix.EISDIR
	}
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	cur := int64(len(f.node.data))
	if n > cur {
		if f.fs.bytes+n-cur > f.fs.limit {
			return unix.EFBIG
		}
		f.node.data = append(f.node.data, make([]byte, n-cur)...)
	} else {
		f.node.data = f.node.data[:n]
	}
	f.fs.bytes += n - cur
	return 0
}

// getdents lists "." and ".." and the directory's entries, in linux_dirent64 records.
func (f *tmpFile) getdents(b []byte) (int, unix.Errno) {
	if !f.node.dir {
		return 0, unix.ENOTDIR
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dirents == nil {
		f.dirents = append([]string{".", ".."}, f.fs.list(f.path)...)
	}
	n := 0
	for f.off < int64(len(f.dirents)) {
		name := f.dirents[f.off]
		reclen := (19 + len(name) + 1 + 7) &^ 7
		if n+reclen > len(b) {
			if n == 0 {
				return 0, unix.EINVAL
			}
			break
		}
		typ := byte(unix.DT_DIR)
		ino := f.node.ino
		if name != "." && name != ".." {
			if c, e := f.fs.lookup(f.path + "/" + name); e == 0 {
				ino = c.ino
				if !c.dir {
					typ = unix.DT_REG
				}
			}
		}
		r := b[n : n+reclen]
		clear(r)
		binary.LittleEndian.PutUint64(r[0:], ino)
		binary.LittleEndian.PutUint64(r[8:], uint64(f.off+1))
		binary.LittleEndian.PutUint16(r[16:], uint16(reclen))
		r[18] = typ
		copy(r[19:], name)
		n += reclen
		f.off++
	}
	return n, 0
}

// devFile is /dev/null, /dev/zero or /dev/urandom.
type devFile struct {
	baseFile
	name string
}

func (f *devFile) read(_ *Kernel, b []byte) (int, unix.Errno) {
	switch f.name {
	case "/dev/null":
		return 0, 0
	case "/dev/zero":
		clear(b)
		return len(b), 0
	}
	n, _ := rand.Read(b)
	return n, 0
}

func (f *devFile) write(_ *Kernel, b []byte) (int, unix.Errno) { return len(b), 0 }
func (f *devFile) seek(int64, int) (int64, unix.Errno)         { return 0, 0 }
func (f *devFile) stat() (unix.Stat_t, unix.Errno) {
	return unix.Stat_t{Mode: unix.S_IFCHR | 0o666, Rdev: 0x103, Ino: 5, Nlink: 1, Blksize: 4096}, 0
}

// outFile is fd 1 or 2: a writer on the host side, counted against the output limit. Data
// past the limit is dropped (the guest still sees success) and the UC's result says so.
type outFile struct {
	baseFile
	w  io.Writer
	fd int
	// uncounted: not subject to the output limit (extra descriptors such as fd 3).
	uncounted bool
}

func (f *outFile) write(k *Kernel, b []byte) (int, unix.Errno) {
	n := len(b)
	if lim := k.cfg.MaxOutput; !f.uncounted && lim > 0 {
		if used := k.outBytes.Add(int64(n)); used > lim {
			k.outTruncated.Store(true)
			keep := lim - (used - int64(n))
			if keep <= 0 {
				return n, 0
			}
			b = b[:keep]
		}
	}
	if f.w == nil {
		return n, 0
	}
	// Copy out of guest memory in bounded chunks: the writer may hold on to the slice or
	// block, and the guest may pass a huge buffer.
	buf := make([]byte, min(len(b), 64<<10))
	for len(b) > 0 {
		c := copy(buf, b)
		if _, err := f.w.Write(buf[:c]); err != nil {
			return 0, unix.EPIPE
		}
		b = b[c:]
	}
	return n, 0
}

func (f *outFile) stat() (unix.Stat_t, unix.Errno) {
	return unix.Stat_t{Mode: unix.S_IFIFO | 0o600, Ino: uint64(10 + f.fd), Nlink: 1, Blksize: 4096}, 0
}

// pipe is an in-memory pipe. Readiness changes close the current changed channel, which
// is how blocked readers and writers (and, later, epoll) wait.
type pipe struct {
	mu      sync.Mutex
	buf     []byte
	cap     int
	readers int
	writers int
	changed chan struct{}
}

func newPipe() *pipe {
	return &pipe{cap: 64 << 10, readers: 1, writers: 1, changed: make(chan struct{})}
}

func (p *pipe) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

type pipeEnd struct {
	baseFile
	p        *pipe
	isWriter bool
	nonblock *atomic.Bool
}

func (e *pipeEnd) read(k *Kernel, b []byte) (int, unix.Errno) {
	if e.isWriter {
		return 0, unix.EBADF
	}
	if len(b) == 0 {
		return 0, 0
	}
	for {
		e.p.mu.Lock()
		if len(e.p.buf) > 0 {
			n := copy(b, e.p.buf)
			e.p.buf = e.p.buf[n:]
			if len(e.p.buf) == 0 {
				e.p.buf = nil
			}
			e.p.notifyLocked()
			e.p.mu.Unlock()
			return n, 0
		}
		if e.p.writers == 0 {
			e.p.mu.Unlock()
			return 0, 0
		}
		ch := e.p.changed
		e.p.mu.Unlock()
		if e.nonblock != nil && e.nonblock.Load() {
			return 0, unix.EAGAIN
		}
		if !k.asleep(ch) {
			return 0, unix.EINTR
		}
	}
}

func (e *pipeEnd) write(k *Kernel, b []byte) (int, unix.Errno) {
	if !e.isWriter {
		return 0, unix.EBADF
	}
	done := 0
	for done < len(b) {
		e.p.mu.Lock()
		if e.p.readers == 0 {
			e.p.mu.Unlock()
			return done, unix.EPIPE
		}
		if room := e.p.cap - len(e.p.buf); room > 0 {
			n := min(room, len(b)-done)
			e.p.buf = append(e.p.buf, b[done:done+n]...)
			done += n
			e.p.notifyLocked()
			e.p.mu.Unlock()
			continue
		}
		ch := e.p.changed
		e.p.mu.Unlock()
		if e.nonblock != nil && e.nonblock.Load() {
			if done > 0 {
				return done, 0
			}
			return 0, unix.EAGAIN
		}
		select {
		case <-ch:
		case <-k.stopped:
			if done > 0 {
				return done, 0
			}
			return 0, unix.EINTR
		}
	}
	return done, 0
}

func (e *pipeEnd) stat() (unix.Stat_t, unix.Errno) {
	return unix.Stat_t{Mode: unix.S_IFIFO | 0o600, Ino: 7, Nlink: 1, Blksize: 4096}, 0
}

func (e *pipeEnd) close() error {
	e.p.mu.Lock()
	defer e.p.mu.Unlock()
	if e.isWriter {
		e.p.writers--
	} else {
		e.p.readers--
		if e.p.readers == 0 {
			e.p.buf = nil
		}
	}
	e.p.notifyLocked()
	return nil
}

// feed copies r into the pipe's write side until EOF, then closes it. It is how a host
// io.Reader becomes the guest's stdin without the guest ever blocking in host I/O.
func (p *pipe) feed(r io.Reader, stop <-chan struct{}) {
	w := &pipeEnd{p: p, isWriter: true}
	k := &Kernel{stopped: stop}
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, e := w.write(k, buf[:n]); e != 0 {
				break
			}
		}
		if err != nil {
			break
		}
	}
	w.close()
}
