package unikernel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSyscallTableHasNames(t *testing.T) {
	for nr := range syscallTable {
		if _, ok := syscallNames[nr]; !ok {
			t.Errorf("handler for %d, which has no name", nr)
		}
	}
	for _, want := range []string{"read", "write", "openat", "mmap", "brk", "futex", "exit_group", "newfstatat", "getdents64", "rseq", "prlimit64"} {
		found := false
		for nr := range syscallTable {
			if syscallNames[nr] == want {
				found = true
			}
		}
		if !found {
			t.Errorf("no handler for %s", want)
		}
	}
}

func TestJoinGuest(t *testing.T) {
	cases := []struct{ dir, p, raw, clean string }{
		{"/", "a", "//a", "/a"},
		{"/usr", "lib/../bin", "/usr/lib/../bin", "/usr/bin"},
		{"/x", "/abs/./y", "/abs/./y", "/abs/y"},
		{"/", "../../..", "//../../..", "/"},
		{"/tmp", "..//tmp/f", "/tmp/..//tmp/f", "/tmp/f"},
	}
	for _, c := range cases {
		raw, clean := joinGuest(c.dir, c.p)
		if raw != c.raw || clean != c.clean {
			t.Errorf("joinGuest(%q, %q) = %q, %q; want %q, %q", c.dir, c.p, raw, clean, c.raw, c.clean)
		}
	}
}

func TestWhichMount(t *testing.T) {
	cases := []struct {
		p   string
		m   mount
		rel string
	}{
		{"/tmp", mountTmp, ""},
		{"/tmp/a/b", mountTmp, "/a/b"},
		{"/tmpx", mountRoot, "/tmpx"},
		{"/dev/null", mountDev, "/dev/null"},
		{"/dev/sda", mountRoot, "/dev/sda"},
		{"/proc/self/maps", mountProc, "/proc/self/maps"},
		{"/usr/lib", mountRoot, "/usr/lib"},
	}
	for _, c := range cases {
		m, rel := whichMount(c.p)
		if m != c.m || rel != c.rel {
			t.Errorf("whichMount(%q) = %v, %q; want %v, %q", c.p, m, rel, c.m, c.rel)
		}
	}
}

// TestRootNeverEscapes: "..", absolute and relative symlinks all stay inside the root.
func TestRootNeverEscapes(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "inside"), []byte("inside"), 0o644)
	os.Mkdir(filepath.Join(root, "d"), 0o755)
	os.Symlink(filepath.Join(outside, "secret"), filepath.Join(root, "abs"))
	rel, _ := filepath.Rel(root, filepath.Join(outside, "secret"))
	os.Symlink(rel, filepath.Join(root, "rel"))
	os.Symlink("/inside", filepath.Join(root, "d", "toinside"))
	os.Symlink("/", filepath.Join(root, "d", "toroot"))
	r, err := openRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	escapes := []string{"/abs", "/rel", "/../" + rel, "/d/../../" + rel, "/d/toroot/../../" + rel,
		"../../../../../../../../" + strings.TrimPrefix(filepath.Join(outside, "secret"), "/")}
	for _, p := range escapes {
		fd, e := r.open(p, unix.O_RDONLY, false)
		if e == 0 {
			b := make([]byte, 16)
			n, _ := unix.Read(fd, b)
			unix.Close(fd)
			if string(b[:n]) == "secret" {
				t.Errorf("%s escaped the root", p)
			}
		}
	}
	for _, p := range []string{"/inside", "/d/toinside", "/d/toroot/inside", "/d/../inside", "/../../inside"} {
		fd, e := r.open(p, unix.O_RDONLY, false)
		if e != 0 {
			t.Errorf("%s: %v", p, e)
			continue
		}
		unix.Close(fd)
	}
	if _, e := r.open("/d/toinside", unix.O_RDONLY, true); e != unix.ELOOP {
		t.Errorf("O_NOFOLLOW on a symlink: %v, want ELOOP", e)
	}
	if l, e := r.readlink("/abs"); e != 0 || l != filepath.Join(outside, "secret") {
		t.Errorf("readlink: %q %v", l, e)
	}
}

func TestParseELF(t *testing.T) {
	f, err := os.Open("/usr/bin/python3.11")
	if err == nil {
		defer f.Close()
		img, err := parseELF(f)
		if err != nil {
			t.Fatal(err)
		}
		if img.interp != "/lib64/ld-linux-x86-64.so.2" || img.phdr == 0 || len(img.loads) < 2 {
			t.Errorf("python3.11: %+v", img)
		}
	}
	for _, bad := range [][]byte{nil, []byte("#!/bin/sh\n"), append([]byte("\x7fELF\x02\x01\x01"), make([]byte, 100)...)} {
		if _, err := parseELF(bytes.NewReader(bad)); !errors.Is(err, ErrBadELF) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func FuzzParseELF(f *testing.F) {
	if b, err := os.ReadFile("/usr/bin/true"); err == nil {
		f.Add(b[:min(len(b), 4096)])
	}
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		img, err := parseELF(bytes.NewReader(b))
		if err == nil && len(img.loads) == 0 {
			t.Fatal("accepted an image without PT_LOAD")
		}
	})
}

func newTestAS(size uint64, limit uint64) *addrSpace {
	return newAddrSpace(make([]byte, size), limit)
}

func TestAddrSpace(t *testing.T) {
	as := newTestAS(64<<20, 16<<20)
	rw := unix.PROT_READ | unix.PROT_WRITE
	a, e := as.mmap(0, 3*pageSize, rw, false, false, false, -1, "", 0, 0)
	if e != 0 || a%pageSize != 0 || a < userBase {
		t.Fatalf("mmap: %#x %v", a, e)
	}
	if !as.check(a, 3*pageSize, rw) || as.check(a, 3*pageSize+1, 0) || as.check(0x1000, 8, 0) {
		t.Error("check")
	}
	if _, e := as.out(a-1, 2); e != unix.EFAULT {
		t.Error("out before mapping")
	}
	if e := as.munmap(a+pageSize, pageSize); e != 0 {
		t.Fatal(e)
	}
	if as.check(a, 3*pageSize, 0) || !as.check(a, pageSize, rw) || !as.check(a+2*pageSize, pageSize, rw) {
		t.Error("hole not punched")
	}
	if as.committed != 2*pageSize {
		t.Errorf("committed %d", as.committed)
	}
	if e := as.mprotect(a, pageSize, unix.PROT_READ); e != 0 || as.check(a, 1, unix.PROT_WRITE) {
		t.Errorf("mprotect: %v", e)
	}
	if e := as.mprotect(a, 3*pageSize, rw); e != unix.ENOMEM {
		t.Errorf("mprotect over a hole: %v", e)
	}
	// PROT_NONE reservations do not count; committing them does.
	r, e := as.mmap(0, 32<<20, 0, false, false, false, -1, "", 0, 0)
	if e != 0 || as.committed != 2*pageSize {
		t.Fatalf("reservation: %v committed %d", e, as.committed)
	}
	if e := as.mprotect(r, 32<<20, rw); e != unix.ENOMEM {
		t.Errorf("committing past the limit: %v", e)
	}
	if e := as.mprotect(r, 1<<20, rw); e != 0 {
		t.Errorf("committing 1 MiB: %v", e)
	}
	if _, e := as.mmap(0, 16<<20, rw, false, false, false, -1, "", 0, 0); e != unix.ENOMEM {
		t.Errorf("past the limit: %v", e)
	}
	if _, e := as.mmap(0x1000, pageSize, rw, true, false, false, -1, "", 0, 0); e != unix.ENOMEM {
		t.Errorf("fixed in the system area: %v", e)
	}
	if _, e := as.mmap(r, pageSize, rw, false, true, false, -1, "", 0, 0); e != unix.EEXIST {
		t.Errorf("MAP_FIXED_NOREPLACE over a mapping: %v", e)
	}
	// brk
	as.brkStart, as.brk = 4<<20, 4<<20
	if got := as.setBrk(4<<20 + 100); got != 4<<20+100 || !as.check(4<<20, 100, rw) {
		t.Errorf("brk grow: %#x", got)
	}
	if got := as.setBrk(1 << 40); got != 4<<20+100 {
		t.Errorf("brk too far: %#x", got)
	}
	if got := as.setBrk(4 << 20); got != 4<<20 || as.check(4<<20, 1, 0) {
		t.Errorf("brk shrink: %#x", got)
	}
	// readString
	s, _ := as.mmap(0, 2*pageSize, rw, false, false, false, -1, "", 0, 0)
	as.munmap(s+pageSize, pageSize)
	copy(as.mem[s+pageSize-3:], "ab\x00")
	if str, e := as.readString(s+pageSize-3, 100); e != 0 || str != "ab" {
		t.Errorf("readString at a page end: %q %v", str, e)
	}
	copy(as.mem[s+pageSize-2:], "ab")
	if _, e := as.readString(s+pageSize-2, 100); e != unix.EFAULT {
		t.Errorf("unterminated string: %v", e)
	}
}

func TestBuildStack(t *testing.T) {
	mem := make([]byte, 1<<20)
	top := uint64(len(mem))
	sp, argp, err := buildStack(mem, top, []string{"/prog", "x"}, []string{"A=1"}, [][2]uint64{{atPagesz, 4096}}, "/prog")
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	if sp%16 != 0 || le.Uint64(mem[sp:]) != 2 {
		t.Fatalf("sp %#x argc %d", sp, le.Uint64(mem[sp:]))
	}
	if le.Uint64(mem[sp+8:]) != argp[0] || le.Uint64(mem[sp+24:]) != 0 {
		t.Error("argv")
	}
	str := func(a uint64) string { return string(mem[a : a+uint64(bytes.IndexByte(mem[a:], 0))]) }
	if str(argp[0]) != "/prog" || str(argp[1]) != "x" || str(le.Uint64(mem[sp+32:])) != "A=1" {
		t.Error("strings")
	}
	if le.Uint64(mem[sp+40:]) != 0 || le.Uint64(mem[sp+48:]) != atPagesz || le.Uint64(mem[sp+56:]) != 4096 {
		t.Error("auxv")
	}
}

func TestTmpFS(t *testing.T) {
	fs := newTmpFS(100)
	if _, e := fs.create("/a", true, 0o755, true); e != 0 {
		t.Fatal(e)
	}
	n, e := fs.create("/a/f", false, 0o644, true)
	if e != 0 {
		t.Fatal(e)
	}
	if _, e := fs.create("/nodir/f", false, 0o644, false); e != unix.ENOENT {
		t.Errorf("create without parent: %v", e)
	}
	f := &tmpFile{fs: fs, node: n, path: "/a/f"}
	if _, e := f.write(nil, make([]byte, 101)); e != unix.ENOSPC {
		t.Errorf("over the size limit: %v", e)
	}
	if e := fs.remove("/a", true); e != unix.ENOTEMPTY {
		t.Errorf("rmdir non-empty: %v", e)
	}
	if got := fs.list("/a"); len(got) != 1 || got[0] != "f" {
		t.Errorf("list %v", got)
	}
}

// fakeThread is a thread without a vCPU, for the fuzz target and unit tests.
type fakeThread struct {
	ts     threadState
	fs, gs uint64
}

func (f *fakeThread) TID() int                 { return 2 }
func (f *fakeThread) setFSBase(v uint64) error { f.fs = v; return nil }
func (f *fakeThread) fsBaseValue() uint64      { return f.fs }
func (f *fakeThread) setGSBase(v uint64) error { f.gs = v; return nil }
func (f *fakeThread) state() *threadState      { return &f.ts }

// newFakeKernel is a library OS over plain memory, already stopped so that nothing blocks.
func newFakeKernel(t testing.TB) (*Kernel, func()) {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "f"), []byte("file"), 0o644)
	os.Mkdir(filepath.Join(root, "d"), 0o755)
	r, err := openRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan struct{})
	close(stopped)
	cfg := &Config{Memory: 8 << 20, MaxFDs: 32, MaxOutput: 1 << 10}
	k := newKernel(cfg, newTestAS(32<<20, cfg.Memory), r, stopped)
	k.as.brkStart, k.as.brk = 4<<20, 4<<20
	k.as.mmap(userBase, 1<<20, unix.PROT_READ|unix.PROT_WRITE, true, false, false, -1, "", 0, 0)
	k.fds.installAt(&ofd{f: &outFile{fd: 1}, flags: unix.O_WRONLY}, 1, false)
	return k, func() { k.fds.closeAll(); r.close() }
}

func TestDispatchUnknownAndEFAULT(t *testing.T) {
	k, done := newFakeKernel(t)
	defer done()
	th := &fakeThread{}
	a := [6]uint64{}
	if r := k.dispatch(th, 9999, &a); r != errRet(unix.ENOSYS) {
		t.Errorf("unknown: %#x", r)
	}
	k.dispatch(th, 9999, &a)
	if u := k.Unknown(); len(u) != 1 || u[0] != 9999 {
		t.Errorf("unknown list %v", u)
	}
	a = [6]uint64{1, 0x10, 5}
	if r := k.dispatch(th, unix.SYS_WRITE, &a); r != errRet(unix.EFAULT) {
		t.Errorf("write from the null page: %#x", r)
	}
	a = [6]uint64{1, userBase, 1 << 21}
	if r := k.dispatch(th, unix.SYS_WRITE, &a); r != errRet(unix.EFAULT) {
		t.Errorf("write past the mapping: %#x", r)
	}
	copy(k.as.mem[userBase:], "/f\x00")
	a = [6]uint64{uint64(uint32(atFDCWD & 0xffffffff)), userBase, 0}
	fd := k.dispatch(th, unix.SYS_OPENAT, &a)
	if int64(fd) < 0 {
		t.Fatalf("openat: %d", int64(fd))
	}
	a = [6]uint64{fd, userBase + 100, 10}
	if n := k.dispatch(th, unix.SYS_READ, &a); n != 4 || string(k.as.mem[userBase+100:userBase+104]) != "file" {
		t.Errorf("read: %d", int64(n))
	}
}

// fuzzCallList returns the system calls the fuzz target drives (all of them, minus none:
// the kernel is stopped, so blocking calls return EINTR at once). It runs after the init
// functions that add handlers to the table.
func fuzzCallList() []uint64 {
	var out []uint64
	for nr := range syscallTable {
		out = append(out, nr)
	}
	return out
}

// FuzzSyscall decodes arbitrary system-call arguments and guest memory: no handler may
// panic, whatever the pointers, lengths and flags.
func FuzzSyscall(f *testing.F) {
	f.Add(uint16(0), uint64(1), uint64(userBase), uint64(10), uint64(0), uint64(0), []byte("/f\x00"))
	f.Add(uint16(3), uint64(userBase), uint64(0), uint64(0), uint64(0), uint64(0), []byte("../../etc/passwd\x00"))
	f.Add(uint16(7), uint64(0), uint64(1<<20), uint64(3), uint64(0x22), ^uint64(0), []byte{})
	k, done := newFakeKernel(f)
	defer done()
	fuzzCalls := fuzzCallList()
	sortUint64(fuzzCalls)
	f.Fuzz(func(t *testing.T, which uint16, a0, a1, a2, a3, a4 uint64, mem []byte) {
		nr := fuzzCalls[int(which)%len(fuzzCalls)]
		switch nr {
		case unix.SYS_EXIT, unix.SYS_EXIT_GROUP:
			return
		}
		copy(k.as.mem[userBase:userBase+4096], mem)
		th := &fakeThread{}
		a := [6]uint64{a0, a1, a2, a3, a4, a0 ^ a1}
		k.dispatch(th, nr, &a)
		// Keep the state bounded across iterations.
		if k.fds.count() > 16 {
			k.fds.closeAll()
			k.fds.installAt(&ofd{f: &outFile{fd: 1}, flags: unix.O_WRONLY}, 1, false)
		}
	})
}

// TestRootRefusesDevices: a root containing device nodes or FIFOs exposes none of them.
func TestRootRefusesDevices(t *testing.T) {
	root := t.TempDir()
	if err := unix.Mkfifo(filepath.Join(root, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Symlink("/dev/zero", filepath.Join(root, "zero")) // resolves to root/dev/zero: absent
	r, err := openRoot("/")
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	for _, p := range []string{"/dev/zero", "/dev/kvm", "/dev/null"} {
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		if fd, e := r.open(p, unix.O_RDONLY, false); e != unix.EACCES {
			unix.Close(fd)
			t.Errorf("%s: %v, want EACCES", p, e)
		}
	}
	r2, err := openRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.close()
	if _, e := r2.open("/fifo", unix.O_RDONLY, false); e != unix.EACCES {
		t.Errorf("fifo: %v", e)
	}
	if _, e := r2.open("/zero", unix.O_RDONLY, false); e != unix.ENOENT {
		t.Errorf("symlink to /dev/zero: %v", e)
	}
}

// TestSystemArea checks the static guest structures without KVM.
func TestSystemArea(t *testing.T) {
	vm := &VM{mem: make([]byte, 8<<20), Size: 8 << 20}
	vm.writeSystemArea()
	le := binary.LittleEndian
	m := vm.mem
	pte := func(a uint64) uint64 { return le.Uint64(m[addrPT0+8*(a/pageSize):]) }
	if pte(0) != 0 {
		t.Error("page 0 is mapped")
	}
	for _, a := range []uint64{addrPML4, addrGDT, addrIDT, addrExcCode, addrTSS, addrKStack, addrPD} {
		if p := pte(a); p&1 == 0 || p&4 != 0 {
			t.Errorf("system page %#x: pte %#x, want present and supervisor-only", a, p)
		}
	}
	if p := pte(addrStub); p&1 == 0 || p&4 == 0 || p&2 != 0 {
		t.Errorf("stub page pte %#x, want present, user, read-only", p)
	}
	if p := pte(0x100000); p != 0 {
		t.Errorf("unused system-area page mapped: %#x", p)
	}
	// 2 MiB user pages from 2 MiB up to the size, none beyond.
	pd := le.Uint64(m[addrPD+8:])
	if pd != largePage|0x87 {
		t.Errorf("PD[1] = %#x", pd)
	}
	if le.Uint64(m[addrPD+8*4:]) != 0 {
		t.Error("mapping beyond the guest size")
	}
	// I/O bitmap: only the syscall port is open.
	bm := m[addrTSS+tssIOMapBase:]
	for port := 0; port < 65536; port++ {
		open := bm[port/8]&(1<<(port%8)) == 0
		if open != (port == SyscallPort) {
			t.Fatalf("port %#x open=%v", port, open)
		}
	}
	if bm[8192] != 0xff {
		t.Error("bitmap not terminated")
	}
	// #PF (14) pushes an error code: the handler pushes only the vector.
	gate := m[addrIDT+16*14:]
	h := uint64(le.Uint16(gate[0:])) | uint64(le.Uint16(gate[6:]))<<16 | uint64(le.Uint32(gate[8:]))<<32
	if h != addrExcCode+16*14 || gate[5] != 0x8e || le.Uint16(gate[2:]) != selKernelCS {
		t.Errorf("IDT[14] handler %#x type %#x", h, gate[5])
	}
	if !bytes.Equal(m[h:h+10], []byte{0x68, 14, 0, 0, 0, 0xe6, exceptionPort, 0xf4, 0xeb, 0xfd}) {
		t.Errorf("#PF handler % x", m[h:h+10])
	}
	h0 := uint64(addrExcCode)
	if !bytes.Equal(m[h0:h0+12], []byte{0x6a, 0, 0x68, 0, 0, 0, 0, 0xe6, exceptionPort, 0xf4, 0xeb, 0xfd}) {
		t.Errorf("#DE handler % x", m[h0:h0+12])
	}
	if !bytes.Equal(m[addrStub:addrStub+5], []byte{0xe6, SyscallPort, 0x48, 0x0f, 0x07}) {
		t.Errorf("stub % x", m[addrStub:addrStub+5])
	}
}

// TestAddrSpaceInvariants drives random mmap/munmap/mprotect/brk sequences and checks the
// map stays sorted, disjoint, inside the guest, and that the commit charge adds up.
func TestAddrSpaceInvariants(t *testing.T) {
	as := newTestAS(64<<20, 24<<20)
	as.brkStart, as.brk = 4<<20, 4<<20
	rng := uint64(12345)
	next := func(n uint64) uint64 {
		rng ^= rng << 13
		rng ^= rng >> 7
		rng ^= rng << 17
		return rng % n
	}
	prots := []int{0, unix.PROT_READ, unix.PROT_READ | unix.PROT_WRITE, unix.PROT_READ | unix.PROT_EXEC}
	for i := 0; i < 5000; i++ {
		addr := userBase + next(60<<20)&^(pageSize-1)
		n := (1 + next(256)) * pageSize
		switch next(5) {
		case 0:
			as.mmap(0, n, prots[next(4)], false, false, false, -1, "", 0, 0)
		case 1:
			as.mmap(addr, n, prots[next(4)], true, false, false, -1, "", 0, 0)
		case 2:
			as.munmap(addr, n)
		case 3:
			as.mprotect(addr, n, prots[next(4)])
		case 4:
			as.setBrk(4<<20 + next(8<<20))
		}
		var sum uint64
		for j, v := range as.vmas {
			if v.start >= v.end || v.start < userBase || v.end > as.size || v.start%pageSize != 0 || v.end%pageSize != 0 {
				t.Fatalf("step %d: bad vma %+v", i, v)
			}
			if j > 0 && as.vmas[j-1].end > v.start {
				t.Fatalf("step %d: overlap %+v %+v", i, as.vmas[j-1], v)
			}
			if v.committed() {
				sum += v.end - v.start
			}
		}
		if sum != as.committed {
			t.Fatalf("step %d: committed %d, vmas add up to %d", i, as.committed, sum)
		}
		if as.committed > as.limit {
			t.Fatalf("step %d: committed %d over the limit %d", i, as.committed, as.limit)
		}
	}
}
