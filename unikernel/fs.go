package unikernel

import (
	"fmt"
	"path"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The guest's file namespace: a read-only root served from a host directory, an in-memory
// writable /tmp, and a few virtual files under /dev and /proc.

// mount says which file system serves a guest path.
type mount int

const (
	mountRoot mount = iota
	mountTmp
	mountDev
	mountProc
)

// joinGuest returns the absolute guest path for p relative to dir (a guest directory
// path), without resolving symlinks: ".." is kept so that the host resolves it after any
// symlink, as Linux does. The second result is the lexically cleaned path used to pick the
// mount.
func joinGuest(dir, p string) (raw, clean string) {
	if !strings.HasPrefix(p, "/") {
		p = dir + "/" + p
	}
	return p, path.Clean("/" + p)
}

// whichMount picks the file system for a cleaned absolute guest path and returns the path
// inside it.
func whichMount(clean string) (mount, string) {
	switch {
	case clean == "/tmp" || strings.HasPrefix(clean, "/tmp/"):
		return mountTmp, strings.TrimPrefix(clean, "/tmp")
	case clean == "/dev/null" || clean == "/dev/zero" || clean == "/dev/urandom" || clean == "/dev/random":
		return mountDev, clean
	case clean == "/proc" || strings.HasPrefix(clean, "/proc/"):
		return mountProc, clean
	}
	return mountRoot, clean
}

// rootFS serves a host directory read-only. Every lookup goes through openat2 with
// RESOLVE_IN_ROOT, so "..", absolute symlinks and relative symlinks are resolved by the host
// kernel as if the directory were "/": nothing outside it can be reached, without races.
type rootFS struct {
	dir string
	fd  int
}

func openRoot(dir string) (*rootFS, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return &rootFS{dir: dir, fd: fd}, nil
}

func (r *rootFS) close() error { return unix.Close(r.fd) }

// open opens a guest path (absolute, may contain "..") inside the root. Only regular files
// and directories can be opened for I/O: the path is first opened O_PATH (which has no side
// effects, even on devices and FIFOs), checked, then reopened through /proc/self/fd, so a
// root that happens to contain /dev/sda, /dev/watchdog or a FIFO exposes nothing and never
// blocks.
func (r *rootFS) open(raw string, flags int, nofollow bool) (int, unix.Errno) {
	pfd, e := r.openPath(raw, nofollow)
	if e != 0 || flags&unix.O_PATH != 0 {
		return pfd, e
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		return -1, errnoOf(err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		if flags&unix.O_DIRECTORY != 0 {
			return -1, unix.ENOTDIR
		}
	case unix.S_IFDIR:
	case unix.S_IFLNK:
		return -1, unix.ELOOP // O_NOFOLLOW on a symlink
	default:
		return -1, unix.EACCES
	}
	for {
		fd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", pfd), flags&(unix.O_ACCMODE|unix.O_DIRECTORY)|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, errnoOf(err)
		}
		return fd, 0
	}
}

// openPath opens raw with O_PATH, resolved by the host kernel as if the root were "/".
func (r *rootFS) openPath(raw string, nofollow bool) (int, unix.Errno) {
	rel := strings.TrimLeft(raw, "/")
	if rel == "" {
		rel = "."
	}
	how := unix.OpenHow{
		Flags:   uint64(unix.O_PATH | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	if nofollow {
		how.Flags |= unix.O_NOFOLLOW
	}
	for {
		fd, err := unix.Openat2(r.fd, rel, &how)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			if e := errnoOf(err); e != unix.EXDEV {
				return -1, e
			}
			return -1, unix.ENOENT
		}
		return fd, 0
	}
}

// stat stats a guest path inside the root.
func (r *rootFS) stat(raw string, nofollow bool) (unix.Stat_t, unix.Errno) {
	var st unix.Stat_t
	fd, e := r.openPath(raw, nofollow)
	if e != 0 {
		return st, e
	}
	defer unix.Close(fd)
	if err := unix.Fstat(fd, &st); err != nil {
		return st, unix.EIO
	}
	return st, 0
}

func (r *rootFS) readlink(raw string) (string, unix.Errno) {
	fd, e := r.openPath(raw, true)
	if e != 0 {
		return "", e
	}
	defer unix.Close(fd)
	// readlinkat(fd, "") says ENOENT for what is not a link; readlink(2) says EINVAL
	// (glibc's realpath relies on it).
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err == nil && st.Mode&unix.S_IFMT != unix.S_IFLNK {
		return "", unix.EINVAL
	}
	buf := make([]byte, 4096)
	n, err := unix.Readlinkat(fd, "", buf)
	if err != nil {
		if en, ok := err.(unix.Errno); ok {
			return "", en
		}
		return "", unix.EINVAL
	}
	return string(buf[:n]), 0
}

// tmpFS is the in-memory writable /tmp of one UC. Its state is plain data (saved by
// snapshots).
type tmpFS struct {
	mu    sync.Mutex
	nodes map[string]*tmpNode // path inside /tmp ("" is /tmp itself) -> node
	ino   uint64
	bytes int64
	limit int64
}

type tmpNode struct {
	dir   bool
	data  []byte
	mode  uint32
	ino   uint64
	mtime time.Time
}

func newTmpFS(limit int64) *tmpFS {
	t := &tmpFS{nodes: map[string]*tmpNode{}, ino: 1 << 20, limit: limit}
	t.nodes[""] = &tmpNode{dir: true, mode: 0o1777, ino: t.ino, mtime: time.Now()}
	return t
}

func tmpParent(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return ""
	}
	return p[:i]
}

func (t *tmpFS) lookup(p string) (*tmpNode, unix.Errno) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n, ok := t.nodes[p]
	if !ok {
		if par, ok := t.nodes[tmpParent(p)]; ok && !par.dir {
			return nil, unix.ENOTDIR
		}
		return nil, unix.ENOENT
	}
	return n, 0
}

func (t *tmpFS) create(p string, dir bool, mode uint32, excl bool) (*tmpNode, unix.Errno) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n, ok := t.nodes[p]; ok {
		if excl || dir {
			return nil, unix.EEXIST
		}
		return n, 0
	}
	par, ok := t.nodes[tmpParent(p)]
	if !ok {
		return nil, unix.ENOENT
	}
	if !par.dir {
		return nil, unix.ENOTDIR
	}
	if len(t.nodes) >= 100000 {
		return nil, unix.ENOSPC
	}
	t.ino++
	n := &tmpNode{dir: dir, mode: mode & 0o7777, ino: t.ino, mtime: time.Now()}
	t.nodes[p] = n
	par.mtime = n.mtime
	return n, 0
}

func (t *tmpFS) remove(p string, dir bool) unix.Errno {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p == "" {
		return unix.EBUSY
	}
	n, ok := t.nodes[p]
	if !ok {
		return unix.ENOENT
	}
	if dir && !n.dir {
		return unix.ENOTDIR
	}
	if !dir && n.dir {
		return unix.EISDIR
	}
	if dir {
		for q := range t.nodes {
			if strings.HasPrefix(q, p+"/") {
				return unix.ENOTEMPTY
			}
		}
	}
	t.bytes -= int64(len(n.data))
	delete(t.nodes, p)
	return 0
}

func (t *tmpFS) rename(from, to string) unix.Errno {
	t.mu.Lock()
	defer t.mu.Unlock()
	n, ok := t.nodes[from]
	if !ok {
		return unix.ENOENT
	}
	if _, ok := t.nodes[tmpParent(to)]; !ok {
		return unix.ENOENT
	}
	if n.dir {
		return unix.EXDEV // directories stay where they are (rarely needed)
	}
	if old, ok := t.nodes[to]; ok {
		if old.dir {
			return unix.EISDIR
		}
		t.bytes -= int64(len(old.data))
	}
	delete(t.nodes, from)
	t.nodes[to] = n
	return 0
}

// list returns the names directly inside directory p, sorted.
func (t *tmpFS) list(p string) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var names []string
	prefix := p + "/"
	for q := range t.nodes {
		if q != "" && strings.HasPrefix(q, prefix) && !strings.Contains(q[len(prefix):], "/") {
			names = append(names, q[len(prefix):])
		}
	}
	sortStrings(names)
	return names
}

func (t *tmpFS) stat(n *tmpNode) unix.Stat_t {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := unix.Stat_t{Dev: 0x2a, Ino: n.ino, Nlink: 1, Blksize: 4096}
	if n.dir {
		st.Mode = unix.S_IFDIR | n.mode
		st.Nlink = 2
	} else {
		st.Mode = unix.S_IFREG | n.mode
		st.Size = int64(len(n.data))
		st.Blocks = (st.Size + 511) / 512
	}
	ts := unix.NsecToTimespec(n.mtime.UnixNano())
	st.Mtim, st.Atim, st.Ctim = ts, ts, ts
	return st
}
