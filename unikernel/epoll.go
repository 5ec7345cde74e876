package unikernel

import (
	"encoding/binary"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Readiness: epoll, poll, eventfd, AF_UNIX socket pairs.
//
// A file that can be waited on implements pollable: its current events and a channel that
// is closed at its next change (pipes already work this way). epoll_wait and poll compute
// readiness by asking each file (level-triggered; edge-triggered reports a file again only
// after a change), and when nothing is ready they block on the change channels of the
// files they watch, the UC's stop channel and the timeout. Interest lists and eventfd
// counters are plain data, so a snapshot can save them.

const (
	pollIn      = 0x1
	pollPri     = 0x2
	pollOut     = 0x4
	pollErr     = 0x8
	pollHup     = 0x10
	pollNval    = 0x20
	pollRdHup   = 0x2000
	epollExcl   = 1 << 28
	epollWake   = 1 << 29
	epollOnce   = 1 << 30
	epollET     = 1 << 31
	epollCtlAdd = 1
	epollCtlDel = 2
	epollCtlMod = 3
)

// pollable is a file whose readiness can be waited for.
type pollable interface {
	// readiness returns the events that hold now and appends to chans the channels one
	// of which is closed at the next change (none: never changes).
	readiness(chans []<-chan struct{}) (uint32, []<-chan struct{})
}

// setNonblocker is a file whose O_NONBLOCK flag lives in the file (fcntl F_SETFL, FIONBIO).
type setNonblocker interface{ setNonblock(bool) }

func (e *pipeEnd) setNonblock(v bool) {
	if e.nonblock != nil {
		e.nonblock.Store(v)
	}
}

func (e *pipeEnd) readiness(chans []<-chan struct{}) (uint32, []<-chan struct{}) {
	p := e.p
	p.mu.Lock()
	defer p.mu.Unlock()
	var ev uint32
	if e.isWriter {
		if p.readers == 0 {
			ev |= pollErr
		} else if len(p.buf) < p.cap {
			ev |= pollOut
		}
	} else {
		if len(p.buf) > 0 {
			ev |= pollIn
		}
		if p.writers == 0 {
			ev |= pollHup
		}
	}
	return ev, append(chans, p.changed)
}

func (f *outFile) readiness(chans []<-chan struct{}) (uint32, []<-chan struct{}) {
	return pollOut, chans
}

// readinessOf answers for any file: files that are not pollable are always ready (as
// regular files are on Linux).
func readinessOf(f file, chans []<-chan struct{}) (uint32, []<-chan struct{}) {
	if p, ok := f.(pollable); ok {
		return p.readiness(chans)
	}
	return pollIn | pollOut, chans
}

// waitAny blocks until one of chans is closed, the deadline passes (zero: none) or the UC
// stops (EINTR). It returns ETIMEDOUT at the deadline.
func (k *Kernel) waitAny(chans []<-chan struct{}, deadline time.Time) unix.Errno {
	cases := make([]reflect.SelectCase, 0, len(chans)+2)
	cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(k.stopped)})
	var tm *time.Timer
	if !deadline.IsZero() {
		d := time.Until(deadline)
		if d <= 0 {
			return unix.ETIMEDOUT
		}
		tm = time.NewTimer(d)
		defer tm.Stop()
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(tm.C)})
	}
	seen := map[<-chan struct{}]bool{}
	for _, c := range chans {
		if c == nil || seen[c] {
			continue
		}
		seen[c] = true
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(c)})
	}
	// Callers have done nothing yet that re-running the call would repeat (see asleep).
	k.sleeping.Add(1)
	i, _, _ := reflect.Select(cases)
	k.sleeping.Add(-1)
	switch {
	case i == 0:
		return unix.EINTR
	case tm != nil && i == 1:
		return unix.ETIMEDOUT
	}
	return 0
}

// --- eventfd ---

const (
	efdSemaphore = 1
	efdNonblock  = unix.O_NONBLOCK
	efdCloexec   = unix.O_CLOEXEC
)

// eventFile is an eventfd: a 64-bit counter.
type eventFile struct {
	baseFile
	mu        sync.Mutex
	count     uint64
	semaphore bool
	nonblock  atomic.Bool
	changed   chan struct{}
}

func (f *eventFile) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *eventFile) setNonblock(v bool) { f.nonblock.Store(v) }

func (f *eventFile) readiness(chans []<-chan struct{}) (uint32, []<-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ev uint32
	if f.count > 0 {
		ev |= pollIn
	}
	if f.count < 1<<64-2 {
		ev |= pollOut
	}
	return ev, append(chans, f.changed)
}

func (f *eventFile) read(k *Kernel, b []byte) (int, unix.Errno) {
	if len(b) < 8 {
		return 0, unix.EINVAL
	}
	for {
		f.mu.Lock()
		if f.count > 0 {
			v := f.count
			if f.semaphore {
				v = 1
			}
			f.count -= v
			f.notifyLocked()
			f.mu.Unlock()
			binary.LittleEndian.PutUint64(b, v)
			return 8, 0
		}
		ch := f.changed
		f.mu.Unlock()
		if f.nonblock.Load() {
			return 0, unix.EAGAIN
		}
		if e := k.waitAny([]<-chan struct{}{ch}, time.Time{}); e != 0 {
			return 0, e
		}
	}
}

func (f *eventFile) write(k *Kernel, b []byte) (int, unix.Errno) {
	if len(b) < 8 {
		return 0, unix.EINVAL
	}
	v := binary.LittleEndian.Uint64(b)
	if v == ^uint64(0) {
		return 0, unix.EINVAL
	}
	for {
		f.mu.Lock()
		if f.count+v >= f.count && f.count+v < ^uint64(0) {
			f.count += v
			f.notifyLocked()
			f.mu.Unlock()
			return 8, 0
		}
		ch := f.changed
		f.mu.Unlock()
		if f.nonblock.Load() {
			return 0, unix.EAGAIN
		}
		if e := k.waitAny([]<-chan struct{}{ch}, time.Time{}); e != 0 {
			return 0, e
		}
	}
}

func (f *eventFile) stat() (unix.Stat_t, unix.Errno) {
	return unix.Stat_t{Mode: 0o600, Ino: 8, Nlink: 1, Blksize: 4096}, 0
}

func sysEventfd2(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	if a[1]&^uint64(efdSemaphore|efdNonblock|efdCloexec) != 0 {
		return 0, unix.EINVAL
	}
	f := &eventFile{count: uint64(uint32(a[0])), semaphore: a[1]&efdSemaphore != 0, changed: make(chan struct{})}
	f.nonblock.Store(a[1]&efdNonblock != 0)
	d := &ofd{f: f, flags: unix.O_RDWR | int(a[1])&unix.O_NONBLOCK}
	fd, e := k.fds.install(d, 0, a[1]&efdCloexec != 0)
	return uint64(fd), e
}

func sysEventfd(k *Kernel, t sysThread, a *[6]uint64) (uint64, unix.Errno) {
	b := [6]uint64{a[0], 0}
	return sysEventfd2(k, t, &b)
}

// --- epoll ---

// epollFile is an epoll instance: its interest list, keyed by descriptor number.
type epollFile struct {
	baseFile
	mu       sync.Mutex
	interest map[int]*epollItem
}

// epollItem is one registration. d is the open file description it was made for; when
// the descriptor number no longer refers to it the registration is dropped, which is how
// Linux forgets a closed file.
type epollItem struct {
	fd       int
	d        *ofd
	events   uint32
	data     uint64
	disabled bool            // EPOLLONESHOT fired
	lastCh   <-chan struct{} // edge-triggered: change channel when last reported
}

func (f *epollFile) stat() (unix.Stat_t, unix.Errno) {
	return unix.Stat_t{Mode: 0o600, Ino: 9, Nlink: 1, Blksize: 4096}, 0
}

func sysEpollCreate1(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	if a[0]&^uint64(unix.O_CLOEXEC) != 0 {
		return 0, unix.EINVAL
	}
	d := &ofd{f: &epollFile{interest: map[int]*epollItem{}}, flags: unix.O_RDWR}
	fd, e := k.fds.install(d, 0, a[0]&unix.O_CLOEXEC != 0)
	return uint64(fd), e
}

func sysEpollCreate(k *Kernel, t sysThread, a *[6]uint64) (uint64, unix.Errno) {
	if int32(a[0]) <= 0 {
		return 0, unix.EINVAL
	}
	b := [6]uint64{}
	return sysEpollCreate1(k, t, &b)
}

func (k *Kernel) epollOf(fd uint64) (*epollFile, unix.Errno) {
	d, e := k.fds.get(fd)
	if e != 0 {
		return nil, e
	}
	ep, ok := d.f.(*epollFile)
	if !ok {
		return nil, unix.EINVAL
	}
	return ep, 0
}

func sysEpollCtl(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	ep, e := k.epollOf(a[0])
	if e != 0 {
		return 0, e
	}
	op, fd := a[1], int(int32(a[2]))
	d, e := k.fds.get(uint64(uint32(fd)))
	if e != 0 {
		return 0, e
	}
	if d.f == file(ep) {
		return 0, unix.EINVAL
	}
	if _, ok := d.f.(pollable); !ok {
		return 0, unix.EPERM // regular files and directories, as on Linux
	}
	var events uint32
	var data uint64
	if op != epollCtlDel {
		b, e := k.as.in(a[3], 12)
		if e != 0 {
			return 0, e
		}
		events = binary.LittleEndian.Uint32(b)
		data = binary.LittleEndian.Uint64(b[4:])
	}
	ep.mu.Lock()
	defer ep.mu.Unlock()
	it := ep.interest[fd]
	if it != nil && it.d != d {
		delete(ep.interest, fd) // stale: the number was closed and reused
		it = nil
	}
	switch op {
	case epollCtlAdd:
		if it != nil {
			return 0, unix.EEXIST
		}
		ep.interest[fd] = &epollItem{fd: fd, d: d, events: events, data: data}
	case epollCtlMod:
		if it == nil {
			return 0, unix.ENOENT
		}
		if events&epollExcl != 0 {
			return 0, unix.EINVAL
		}
		it.events, it.data, it.disabled, it.lastCh = events, data, false, nil
	case epollCtlDel:
		if it == nil {
			return 0, unix.ENOENT
		}
		delete(ep.interest, fd)
	default:
		return 0, unix.EINVAL
	}
	return 0, 0
}

type epollReady struct {
	events uint32
	data   uint64
}

// collect returns up to max ready registrations and the change channels of the others.
func (ep *epollFile) collect(k *Kernel, max int) ([]epollReady, []<-chan struct{}) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	var out []epollReady
	var chans []<-chan struct{}
	for fd, it := range ep.interest {
		if cur, e := k.fds.get(uint64(fd)); e != 0 || cur != it.d {
			delete(ep.interest, fd)
			continue
		}
		n := len(chans)
		ev, chs := readinessOf(it.d.f, chans)
		var ch <-chan struct{}
		if len(chs) > n {
			ch = chs[n]
		}
		ev &= it.events | pollErr | pollHup
		if it.disabled || ev == 0 || len(out) >= max || it.events&epollET != 0 && ch != nil && ch == it.lastCh {
			chans = chs
			continue
		}
		chans = chs[:n]
		out = append(out, epollReady{events: ev, data: it.data})
		if it.events&epollOnce != 0 {
			it.disabled = true
		}
		it.lastCh = ch
	}
	return out, chans
}

// epollWait waits for events on epfd; timeout < 0 waits forever.
func (k *Kernel) epollWait(epfd, evAddr, maxEvents uint64, timeout time.Duration) (uint64, unix.Errno) {
	ep, e := k.epollOf(epfd)
	if e != 0 {
		return 0, e
	}
	if int32(maxEvents) <= 0 || maxEvents > 1<<20 {
		return 0, unix.EINVAL
	}
	out, e := k.as.out(evAddr, 12*maxEvents)
	if e != 0 {
		return 0, e
	}
	var deadline time.Time
	if timeout >= 0 {
		deadline = time.Now().Add(timeout)
	}
	for {
		ready, chans := ep.collect(k, int(maxEvents))
		if len(ready) > 0 {
			for i, r := range ready {
				binary.LittleEndian.PutUint32(out[12*i:], r.events)
				binary.LittleEndian.PutUint64(out[12*i+4:], r.data)
			}
			return uint64(len(ready)), 0
		}
		if timeout == 0 {
			return 0, 0
		}
		switch e := k.waitAny(chans, deadline); e {
		case unix.ETIMEDOUT:
			return 0, 0
		case 0:
		default:
			return 0, e
		}
	}
}

func msTimeout(v uint64) time.Duration {
	if int32(v) < 0 {
		return -1
	}
	return time.Duration(int32(v)) * time.Millisecond
}

func sysEpollWait(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	return k.epollWait(a[0], a[1], a[2], msTimeout(a[3]))
}

// sysEpollPwait: the signal mask is accepted and ignored (signals are not delivered
// asynchronously in a UC).
func sysEpollPwait(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	return k.epollWait(a[0], a[1], a[2], msTimeout(a[3]))
}

func sysEpollPwait2(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	timeout := time.Duration(-1)
	if a[3] != 0 {
		d, e := k.getTimespec(a[3])
		if e != 0 {
			return 0, e
		}
		timeout = d
	}
	return k.epollWait(a[0], a[1], a[2], timeout)
}

// --- poll ---

func (k *Kernel) poll(fdsAddr, nfds uint64, timeout time.Duration) (uint64, unix.Errno) {
	if nfds > uint64(k.fds.max)+16 {
		return 0, unix.EINVAL
	}
	b, e := k.as.out(fdsAddr, 8*nfds)
	if e != 0 {
		return 0, e
	}
	var deadline time.Time
	if timeout >= 0 {
		deadline = time.Now().Add(timeout)
	}
	for {
		n := 0
		var chans []<-chan struct{}
		for i := uint64(0); i < nfds; i++ {
			p := b[8*i:]
			fd := int32(binary.LittleEndian.Uint32(p))
			want := uint32(binary.LittleEndian.Uint16(p[4:]))
			var rev uint32
			if fd >= 0 {
				d, e := k.fds.get(uint64(fd))
				if e != 0 {
					rev = pollNval
				} else {
					var ev uint32
					ev, chans = readinessOf(d.f, chans)
					rev = ev & (want | pollErr | pollHup)
				}
			}
			binary.LittleEndian.PutUint16(p[6:], uint16(rev))
			if rev != 0 {
				n++
			}
		}
		if n > 0 || timeout == 0 {
			return uint64(n), 0
		}
		switch e := k.waitAny(chans, deadline); e {
		case unix.ETIMEDOUT:
			return 0, 0
		case 0:
		default:
			return 0, e
		}
	}
}

func sysPoll(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	return k.poll(a[0], a[1], msTimeout(a[2]))
}

func sysPpoll(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	timeout := time.Duration(-1)
	if a[2] != 0 {
		d, e := k.getTimespec(a[2])
		if e != 0 {
			return 0, e
		}
		timeout = d
	}
	return k.poll(a[0], a[1], timeout)
}

// --- AF_UNIX stream socket pairs ---

// socketEnd is one end of a socketpair: it reads from one pipe and writes to the other.
type socketEnd struct {
	baseFile
	rx, tx *pipeEnd
}

func (s *socketEnd) read(k *Kernel, b []byte) (int, unix.Errno)  { return s.rx.read(k, b) }
func (s *socketEnd) write(k *Kernel, b []byte) (int, unix.Errno) { return s.tx.write(k, b) }
func (s *socketEnd) setNonblock(v bool)                          { s.rx.nonblock.Store(v) }

func (s *socketEnd) readiness(chans []<-chan struct{}) (uint32, []<-chan struct{}) {
	rev, chans := s.rx.readiness(chans)
	wev, chans := s.tx.readiness(chans)
	ev := rev&(pollIn|pollHup) | wev&(pollOut|pollErr)
	if rev&pollHup != 0 {
		ev |= pollRdHup
	}
	return ev, chans
}

func (s *socketEnd) stat() (unix.Stat_t, unix.Errno) {
	return unix.Stat_t{Mode: unix.S_IFSOCK | 0o777, Ino: 11, Nlink: 1, Blksize: 4096}, 0
}

func (s *socketEnd) close() error {
	s.rx.close()
	s.tx.close()
	return nil
}

func sysSocketpair(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	const sockNonblock, sockCloexec = unix.SOCK_NONBLOCK, unix.SOCK_CLOEXEC
	typ := a[1] &^ (sockNonblock | sockCloexec)
	if a[0] != unix.AF_UNIX {
		return 0, unix.EAFNOSUPPORT
	}
	if typ != unix.SOCK_STREAM {
		return 0, unix.EOPNOTSUPP
	}
	if !k.as.check(a[3], 8, unix.PROT_WRITE) {
		return 0, unix.EFAULT
	}
	p1, p2 := newPipe(), newPipe()
	nb1, nb2 := new(atomicBool), new(atomicBool)
	nb := a[1]&sockNonblock != 0
	nb1.Store(nb)
	nb2.Store(nb)
	// The write side of each end shares its end's flag.
	e1 := &socketEnd{rx: &pipeEnd{p: p1, nonblock: nb1}, tx: &pipeEnd{p: p2, isWriter: true, nonblock: nb1}}
	e2 := &socketEnd{rx: &pipeEnd{p: p2, nonblock: nb2}, tx: &pipeEnd{p: p1, isWriter: true, nonblock: nb2}}
	fl := unix.O_RDWR
	if nb {
		fl |= unix.O_NONBLOCK
	}
	cloexec := a[1]&sockCloexec != 0
	fd1, e := k.fds.install(&ofd{f: e1, flags: fl}, 0, cloexec)
	if e != 0 {
		e1.close()
		e2.close()
		return 0, e
	}
	fd2, e := k.fds.install(&ofd{f: e2, flags: fl}, 0, cloexec)
	if e != 0 {
		k.fds.close(uint64(fd1))
		e2.close()
		return 0, e
	}
	k.as.writeU32(a[3], uint32(fd1))
	k.as.writeU32(a[3]+4, uint32(fd2))
	return 0, 0
}

func (k *Kernel) socketOf(fd uint64) (*socketEnd, unix.Errno) {
	d, e := k.fds.get(fd)
	if e != 0 {
		return nil, e
	}
	s, ok := d.f.(*socketEnd)
	if !ok {
		return nil, unix.ENOTSOCK
	}
	return s, 0
}

// sysSendto: send on a connected socket (the address must be absent).
func sysSendto(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	s, e := k.socketOf(a[0])
	if e != 0 {
		return 0, e
	}
	if a[4] != 0 {
		return 0, unix.EISCONN
	}
	b, e := k.as.in(a[1], min(a[2], maxIO))
	if e != 0 {
		return 0, e
	}
	if a[3]&unix.MSG_DONTWAIT != 0 && !s.tx.nonblock.Load() {
		s.tx.nonblock.Store(true)
		defer s.tx.nonblock.Store(false)
	}
	n, e := s.write(k, b)
	if e == unix.EPIPE && a[3]&unix.MSG_NOSIGNAL == 0 {
		return 0, unix.EPIPE
	}
	return uint64(n), e
}

func sysRecvfrom(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	s, e := k.socketOf(a[0])
	if e != 0 {
		return 0, e
	}
	b, e := k.as.out(a[1], min(a[2], maxIO))
	if e != 0 {
		return 0, e
	}
	if a[3]&unix.MSG_DONTWAIT != 0 && !s.rx.nonblock.Load() {
		s.rx.nonblock.Store(true)
		defer s.rx.nonblock.Store(false)
	}
	n, e := s.read(k, b)
	if e == 0 && a[5] != 0 {
		k.as.writeU32(a[5], 0) // unnamed peer: addrlen 0
	}
	return uint64(n), e
}

func sysShutdown(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	_, e := k.socketOf(a[0])
	if e != 0 {
		return 0, e
	}
	if a[1] > 2 {
		return 0, unix.EINVAL
	}
	return 0, 0
}

func sysGetsockopt(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	if _, e := k.socketOf(a[0]); e != 0 {
		return 0, e
	}
	var v uint32
	if a[1] == unix.SOL_SOCKET {
		switch a[2] {
		case unix.SO_TYPE:
			v = unix.SOCK_STREAM
		case unix.SO_DOMAIN:
			v = unix.AF_UNIX
		case unix.SO_ERROR:
			v = 0
		case unix.SO_SNDBUF, unix.SO_RCVBUF:
			v = 64 << 10
		default:
			return 0, unix.ENOPROTOOPT
		}
	} else {
		return 0, unix.EOPNOTSUPP
	}
	l, e := k.as.in(a[4], 4)
	if e != 0 {
		return 0, e
	}
	if binary.LittleEndian.Uint32(l) < 4 {
		return 0, unix.EINVAL
	}
	if e := k.as.writeU32(a[3], v); e != 0 {
		return 0, e
	}
	return 0, k.as.writeU32(a[4], 4)
}

func sysSetsockopt(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	_, e := k.socketOf(a[0])
	return 0, e
}

// sysGetsockname answers for both ends of a pair: an unnamed AF_UNIX address.
func sysGetsockname(k *Kernel, _ sysThread, a *[6]uint64) (uint64, unix.Errno) {
	if _, e := k.socketOf(a[0]); e != 0 {
		return 0, e
	}
	l, e := k.as.in(a[2], 4)
	if e != 0 {
		return 0, e
	}
	if binary.LittleEndian.Uint32(l) >= 2 {
		b, e := k.as.out(a[1], 2)
		if e != 0 {
			return 0, e
		}
		binary.LittleEndian.PutUint16(b, unix.AF_UNIX)
	}
	return 0, k.as.writeU32(a[2], 2)
}

func init() {
	for nr, h := range map[uint64]handler{
		unix.SYS_EVENTFD:       sysEventfd,
		unix.SYS_EVENTFD2:      sysEventfd2,
		unix.SYS_EPOLL_CREATE:  sysEpollCreate,
		unix.SYS_EPOLL_CREATE1: sysEpollCreate1,
		unix.SYS_EPOLL_CTL:     sysEpollCtl,
		unix.SYS_EPOLL_WAIT:    sysEpollWait,
		unix.SYS_EPOLL_PWAIT:   sysEpollPwait,
		unix.SYS_EPOLL_PWAIT2:  sysEpollPwait2,
		unix.SYS_POLL:          sysPoll,
		unix.SYS_PPOLL:         sysPpoll,
		unix.SYS_SOCKETPAIR:    sysSocketpair,
		unix.SYS_SENDTO:        sysSendto,
		unix.SYS_RECVFROM:      sysRecvfrom,
		unix.SYS_SHUTDOWN:      sysShutdown,
		unix.SYS_GETSOCKOPT:    sysGetsockopt,
		unix.SYS_SETSOCKOPT:    sysSetsockopt,
		unix.SYS_GETSOCKNAME:   sysGetsockname,
		unix.SYS_GETPEERNAME:   sysGetsockname,
		unix.SYS_FUTEX:         sysFutex,
	} {
		syscallTable[nr] = h
	}
}

// setNonblock: writes to fds 1 and 2 never block (the host writer is the only limit).
func (f *outFile) setNonblock(bool) {}
