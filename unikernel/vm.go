package unikernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"
)

// Guest physical (= virtual) layout of the system area, the first 2 MiB of every UC. It is
// mapped with 4 KiB pages so that everything in it is supervisor-only, except the system-call
// stub page, which must be user-accessible because under PVM `syscall` stays at CPL3.
const (
	pageSize     = 4096
	largePage    = 2 << 20
	userBase     = largePage // lowest guest address the library OS hands out
	addrPML4     = 0x1000
	addrPDPT     = 0x2000
	addrPT0      = 0x3000 // 4 KiB page table for the first 2 MiB
	addrGDT      = 0x4000
	addrIDT      = 0x5000
	addrExcCode  = 0x6000 // 256 exception handlers, 16 bytes each
	addrStub     = 0x7000 // system-call entry stub (user page)
	addrTSS      = 0x8000 // TSS + I/O permission bitmap, 3 pages
	addrKStack   = 0xb000 // 16 KiB exception stack, top at 0xf000
	kstackTop    = 0xf000
	addrPD       = 0x10000 // one page directory per GiB
	maxGuestSize = 64 << 30

	tssIOMapBase = 104
	tssLimit     = tssIOMapBase + 8192 // bitmap for 65536 ports + the terminating 0xff byte

	// SyscallPort is the only I/O port the guest's user mode may write (TSS I/O bitmap);
	// the entry stub writes it to hand a system call to the VMM.
	SyscallPort = 0xf0
	// exceptionPort is written by the CPL0 exception handlers; CPL3 writes to it fault.
	exceptionPort = 0xf1

	selKernelCS = 0x10
	selKernelDS = 0x18
	selUserCS32 = 0x23
	selUserDS   = 0x2b
	selUserCS   = 0x33
	selTSS      = 0x38
)

// Mode says how the host's KVM runs `syscall` from CPL3.
type Mode int

const (
	// ModeUnknown: no system call has been observed yet.
	ModeUnknown Mode = iota
	// ModePVM: `syscall` jumps to LSTAR but stays at CPL3 (PVM, a software hypervisor). The VMM
	// returns to the caller by writing RIP=RCX and RFLAGS=R11.
	ModePVM
	// ModeVMX: `syscall` enters CPL0 as on hardware; the stub returns with `sysretq`.
	ModeVMX
)

func (m Mode) String() string {
	switch m {
	case ModePVM:
		return "pvm (syscall stays at CPL3)"
	case ModeVMX:
		return "vmx (syscall enters CPL0)"
	}
	return "unknown"
}

// host is the per-process KVM state: /dev/kvm and what it supports.
type host struct {
	kvmFd   uintptr
	runSize int
	cpuid   []cpuidEntry
	xcr0    uint64
	hwcap   uint64
	cr4     uint64
	mode    Mode // how `syscall` behaves, probed once at start
}

var (
	hostOnce sync.Once
	theHost  *host
	hostErr  error
)

// ErrNoKVM means /dev/kvm cannot be opened.
var ErrNoKVM = errors.New("unikernel: /dev/kvm not available")

func getHost() (*host, error) {
	hostOnce.Do(func() {
		theHost, hostErr = openHost()
		if hostErr == nil {
			theHost.mode, hostErr = probeMode()
		}
	})
	return theHost, hostErr
}

// HostMode reports how this host's KVM runs `syscall` from CPL3, found at start by a probe
// guest (see probeMode).
func HostMode() (Mode, error) {
	h, err := getHost()
	if err != nil {
		return ModeUnknown, err
	}
	return h.mode, nil
}

// probeMode runs a two-instruction guest (`syscall` at CPL3) in a small VM and looks at the
// privilege level the entry stub's port write exits from: CPL3 means PVM, CPL0 hardware VMX.
func probeMode() (Mode, error) {
	vm, err := newVM(theHost, 4<<20)
	if err != nil {
		return ModeUnknown, fmt.Errorf("unikernel: mode probe: %w", err)
	}
	defer vm.Close()
	copy(vm.mem[userBase:], []byte{0x0f, 0x05, 0xf4}) // syscall; hlt
	c, err := vm.newVCPU(userBase, userBase+pageSize, 0)
	if err != nil {
		return ModeUnknown, fmt.Errorf("unikernel: mode probe: %w", err)
	}
	for {
		c.run.setValid(0)
		err := kvmRun(c.fd)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return ModeUnknown, fmt.Errorf("unikernel: mode probe: KVM_RUN: %w", err)
		}
		break
	}
	if r := c.run.exitReason(); r != exitIO {
		return ModeUnknown, fmt.Errorf("unikernel: mode probe: exit reason %d, want I/O", r)
	}
	if _, _, port, _, _ := c.run.io(); port != SyscallPort {
		return ModeUnknown, fmt.Errorf("unikernel: mode probe: exit on port %#x", port)
	}
	s, err := retry(func() (*kvm.Sregs, error) { return kvm.GetSregs(c.fd) })
	if err != nil {
		return ModeUnknown, fmt.Errorf("unikernel: mode probe: %w", err)
	}
	if s.CS.Selector&3 == 3 {
		return ModePVM, nil
	}
	return ModeVMX, nil
}

func openHost() (*host, error) {
	f, err := unix.Open("/dev/kvm", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoKVM, err)
	}
	h := &host{kvmFd: uintptr(f)}
	if v, err := retry(func() (uintptr, error) { return kvm.GetAPIVersion(h.kvmFd) }); err != nil || v != 12 {
		return nil, fmt.Errorf("unikernel: KVM API version %d: %v", v, err)
	}
	if n, err := kvm.CheckExtension(h.kvmFd, kvm.CapSyncRegs); err != nil || n&syncX86Regs == 0 {
		return nil, fmt.Errorf("unikernel: KVM_CAP_SYNC_REGS missing (%d, %v)", n, err)
	}
	sz, err := kvm.GetVCPUMMmapSize(h.kvmFd)
	if err != nil {
		return nil, fmt.Errorf("unikernel: KVM_GET_VCPU_MMAP_SIZE: %w", err)
	}
	h.runSize = int(sz)
	h.cpuid, err = supportedCPUID(h.kvmFd)
	if err != nil {
		return nil, fmt.Errorf("unikernel: %w", err)
	}
	h.xcr0 = 3
	hostABM := hostHasFlag("abm")
	for i := range h.cpuid {
		e := &h.cpuid[i]
		switch {
		case e.Function == 1:
			h.hwcap = uint64(e.Edx)
		case e.Function == 7 && e.Index == 0:
			if e.Ebx&1 != 0 {
				h.cr4 |= cr4FSGSBASE
			}
		case e.Function == 0xd && e.Index == 0:
			// x87, SSE, AVX and, when all three are there, the AVX-512 state components.
			h.xcr0 = uint64(e.Eax) & 0x7
			if e.Eax&0xe0 == 0xe0 {
				h.xcr0 |= 0xe0
			}
		case e.Function == 0x80000001:
			// PVM's supported CPUID lacks LZCNT/ABM; without it glibc picks x86-64-v2 paths.
			if hostABM {
				e.Ecx |= 1 << 5
			}
		}
	}
	return h, nil
}

func hostHasFlag(flag string) bool {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "flags") {
			for _, f := range strings.Fields(line) {
				if f == flag {
					return true
				}
			}
			return false
		}
	}
	return false
}

const (
	cr0PE = 1 << 0
	cr0MP = 1 << 1
	cr0ET = 1 << 4
	cr0NE = 1 << 5
	cr0WP = 1 << 16
	cr0PG = 1 << 31

	cr4PAE        = 1 << 5
	cr4PGE        = 1 << 7
	cr4OSFXSR     = 1 << 9
	cr4OSXMMEXCPT = 1 << 10
	cr4FSGSBASE   = 1 << 16
	cr4OSXSAVE    = 1 << 18

	eferSCE = 1 << 0
	eferLME = 1 << 8
	eferLMA = 1 << 10
	eferNXE = 1 << 11

	msrSTAR   = 0xc0000081
	msrLSTAR  = 0xc0000082
	msrCSTAR  = 0xc0000083
	msrFMASK  = 0xc0000084
	msrFSBase = 0xc0000100
	msrGSBase = 0xc0000101
	msrKGS    = 0xc0000102
	msrTSCAux = 0xc0000103
)

// VM is a KVM virtual machine with its guest memory: one host mapping registered as one
// memory slot at guest physical 0, identity-mapped by static page tables. A VM is a reusable
// shell: creating it (and its slot) is separate from loading a program, so that a pool can
// create VMs ahead of time. A VM holds no library-OS state.
type VM struct {
	host *host
	fd   uintptr
	// mem is guest physical memory [0, Size) as a host mapping (MAP_NORESERVE: untouched
	// pages cost nothing). Ranges of it are later replaced by MAP_FIXED file mappings.
	mem  []byte
	Size uint64

	mu     sync.Mutex
	vcpus  []*vcpu
	free   []*vcpu // vCPUs of exited threads, reused by clone
	closed bool
	used   bool // a UC has been created on it
	// residue lists, sorted, the guest ranges whose pages a recycle (RecycleVM) left the
	// process's own: pages an earlier UC made private stay private when the image is
	// copied back into them. The memory guard does not count them against the next UC:
	// they are host memory the VM already holds, wherever the new guest's mappings are.
	residue [][2]uint64
}

// ResidueBytes is how many bytes of guest memory the last RecycleVM left the VM holding
// of its own (the residue ranges): host memory a recycled VM keeps while it waits for
// its next UC. Zero for a VM never recycled.
func (vm *VM) ResidueBytes() uint64 {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	var n uint64
	for _, r := range vm.residue {
		n += r[1] - r[0]
	}
	return n
}

// NewVM creates a VM with size bytes of guest address space (a multiple of 2 MiB, at most
// 64 GiB) and writes the system area: page tables, GDT, TSS, IDT and the entry stubs.
func NewVM(size uint64) (*VM, error) {
	h, err := getHost()
	if err != nil {
		return nil, err
	}
	return newVM(h, size)
}

func newVM(h *host, size uint64) (*VM, error) {
	if size < 2*largePage || size%largePage != 0 || size > maxGuestSize {
		return nil, fmt.Errorf("unikernel: guest size %d: must be a multiple of 2 MiB in [4 MiB, 64 GiB]", size)
	}
	vmfd, err := retry(func() (uintptr, error) { return kvm.CreateVM(h.kvmFd) })
	if err != nil {
		return nil, fmt.Errorf("unikernel: KVM_CREATE_VM: %w", err)
	}
	vm := &VM{host: h, fd: vmfd, Size: size}
	vm.mem, err = unix.Mmap(-1, 0, int(size), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		unix.Close(int(vmfd))
		return nil, fmt.Errorf("unikernel: map guest memory: %w", err)
	}
	// Needed on Intel without unrestricted guest; harmless elsewhere. Above the slot.
	_ = kvm.SetTSSAddr(vmfd, 0xfffbd000)
	region := kvm.UserspaceMemoryRegion{Slot: 0, GuestPhysAddr: 0, MemorySize: size,
		UserspaceAddr: uint64(hostAddr(vm.mem))}
	if _, err := retry(func() (int, error) { return 0, kvm.SetUserMemoryRegion(vmfd, &region) }); err != nil {
		vm.Close()
		return nil, fmt.Errorf("unikernel: KVM_SET_USER_MEMORY_REGION: %w", err)
	}
	vm.writeSystemArea()
	if err := vm.mapVDSO(); err != nil {
		vm.Close()
		return nil, err
	}
	return vm, nil
}

// writeSystemArea builds the static guest structures. Nothing here changes while the guest runs.
func (vm *VM) writeSystemArea() {
	m := vm.mem
	le := binary.LittleEndian
	const (
		pP  = 1 << 0
		pRW = 1 << 1
		pUS = 1 << 2
		pPS = 1 << 7
	)
	// PML4[0] -> PDPT; PDPT[i] -> PD i; PD entries are 2 MiB user pages, except the first,
	// which points at a 4 KiB table for the system area.
	le.PutUint64(m[addrPML4:], addrPDPT|pP|pRW|pUS)
	gib := (vm.Size + (1<<30 - 1)) >> 30
	for i := uint64(0); i < gib; i++ {
		pd := addrPD + i*pageSize
		le.PutUint64(m[addrPDPT+8*i:], pd|pP|pRW|pUS)
		for j := uint64(0); j < 512; j++ {
			a := i<<30 | j<<21
			if a >= vm.Size {
				break
			}
			le.PutUint64(m[pd+8*j:], a|pP|pRW|pUS|pPS)
		}
	}
	le.PutUint64(m[addrPD:], addrPT0|pP|pRW|pUS)
	for a := uint64(addrPML4); a < addrPD+gib*pageSize; a += pageSize {
		le.PutUint64(m[addrPT0+8*(a/pageSize):], a|pP|pRW) // supervisor only
	}
	le.PutUint64(m[addrPT0+8*(addrStub/pageSize):], addrStub|pP|pUS) // user, read-only

	// GDT, laid out as Linux's so that STAR works: 0x10 kernel CS, 0x18 kernel DS,
	// 0x23 user CS32, 0x2b user DS, 0x33 user CS, 0x38 TSS (16 bytes).
	gdt := []uint64{0, 0, 0x00af9a000000ffff, 0x00cf92000000ffff, 0x00cffa000000ffff,
		0x00cff2000000ffff, 0x00affa000000ffff}
	for i, d := range gdt {
		le.PutUint64(m[addrGDT+8*i:], d)
	}
	tss := uint64(addrTSS)
	lim := uint64(tssLimit)
	lo := lim&0xffff | (tss&0xffffff)<<16 | 0x89<<40 | (lim>>16&0xf)<<48 | (tss>>24&0xff)<<56
	le.PutUint64(m[addrGDT+8*7:], lo)
	le.PutUint64(m[addrGDT+8*8:], tss>>32)

	// TSS: RSP0 for exceptions from CPL3; I/O bitmap denying every port but the syscall port.
	le.PutUint64(m[addrTSS+4:], kstackTop)
	// IST1: every exception switches to the same stack, even one taken at CPL0 in the
	// VMX entry stub (which runs on the guest's stack), so the VMM always finds the frame.
	le.PutUint64(m[addrTSS+36:], kstackTop)
	le.PutUint16(m[addrTSS+102:], tssIOMapBase)
	bm := m[addrTSS+tssIOMapBase : addrTSS+tssIOMapBase+8193]
	for i := range bm {
		bm[i] = 0xff
	}
	bm[SyscallPort/8] &^= 1 << (SyscallPort % 8)

	// Exception handlers: push a dummy error code when the CPU pushes none, push the vector,
	// then write the exception port; the VMM reads the frame at RSP.
	for v := 0; v < 256; v++ {
		code := m[addrExcCode+16*v : addrExcCode+16*v+16]
		i := 0
		if !vectorHasErrorCode(v) {
			code[i], code[i+1] = 0x6a, 0x00 // push $0
			i += 2
		}
		code[i], code[i+1] = 0x68, byte(v) // push $imm32 (vector)
		code[i+2], code[i+3], code[i+4] = 0, 0, 0
		i += 5
		code[i], code[i+1] = 0xe6, exceptionPort // out %al, $port
		i += 2
		code[i], code[i+1], code[i+2] = 0xf4, 0xeb, 0xfd // hlt; jmp hlt
		h := uint64(addrExcCode + 16*v)
		g := m[addrIDT+16*v:]
		le.PutUint16(g[0:], uint16(h))
		le.PutUint16(g[2:], selKernelCS)
		g[4] = 1    // IST1
		g[5] = 0x8e // present, DPL0, 64-bit interrupt gate
		le.PutUint16(g[6:], uint16(h>>16))
		le.PutUint32(g[8:], uint32(h>>32))
	}

	// System-call entry stub. Under PVM the VMM resumes at RCX itself; under VMX the
	// stub runs at CPL0 and returns with sysretq after the VMM has written RAX.
	copy(m[addrStub:], []byte{0xe6, SyscallPort, 0x48, 0x0f, 0x07, 0x0f, 0x0b})
}

func vectorHasErrorCode(v int) bool {
	switch v {
	case 8, 10, 11, 12, 13, 14, 17, 21, 29, 30:
		return true
	}
	return false
}

// Close destroys the VM's vCPUs, the VM and its memory. The caller must make sure no vCPU
// is running.
func (vm *VM) Close() error {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.closed {
		return nil
	}
	vm.closed = true
	var errs []error
	for _, c := range vm.vcpus {
		errs = append(errs, c.close())
	}
	vm.vcpus = nil
	if err := unix.Close(int(vm.fd)); err != nil {
		errs = append(errs, fmt.Errorf("close vm: %w", err))
	}
	if vm.mem != nil {
		if err := unix.Munmap(vm.mem); err != nil {
			errs = append(errs, fmt.Errorf("unmap guest memory: %w", err))
		}
		vm.mem = nil
	}
	return errors.Join(errs...)
}

// vcpu is one KVM vCPU and its kvm_run mapping.
type vcpu struct {
	id  int
	fd  uintptr
	run *runMap
	// cpuidSet: KVM refuses KVM_SET_CPUID2 once a vCPU has run, so a reused one keeps it.
	cpuidSet bool
}

func (c *vcpu) close() error {
	var errs []error
	if c.run != nil {
		errs = append(errs, c.run.unmap())
	}
	if err := unix.Close(int(c.fd)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// newVCPU creates a vCPU set up for 64-bit CPL3 execution at rip with rsp.
func (vm *VM) newVCPU(rip, rsp, fsBase uint64) (*vcpu, error) {
	vm.mu.Lock()
	if vm.closed {
		vm.mu.Unlock()
		return nil, errors.New("unikernel: VM closed")
	}
	id := len(vm.vcpus)
	vm.mu.Unlock()
	fd, err := retry(func() (uintptr, error) { return kvm.CreateVCPU(vm.fd, id) })
	if err != nil {
		return nil, fmt.Errorf("unikernel: KVM_CREATE_VCPU: %w", err)
	}
	c := &vcpu{id: id, fd: fd}
	if c.run, err = mapRun(fd, vm.host.runSize); err != nil {
		c.close()
		return nil, err
	}
	if err := vm.setupVCPU(c, rip, rsp, fsBase); err != nil {
		c.close()
		return nil, err
	}
	vm.mu.Lock()
	vm.vcpus = append(vm.vcpus, c)
	vm.mu.Unlock()
	return c, nil
}

func (vm *VM) setupVCPU(c *vcpu, rip, rsp, fsBase uint64) error {
	h := vm.host
	if !c.cpuidSet {
		if err := setCPUID(c.fd, h.cpuid); err != nil {
			return err
		}
		c.cpuidSet = true
	}
	s, err := retry(func() (*kvm.Sregs, error) { return kvm.GetSregs(c.fd) })
	if err != nil {
		return fmt.Errorf("KVM_GET_SREGS: %w", err)
	}
	code := kvm.Segment{Base: 0, Limit: 0xffffffff, Selector: selUserCS, Typ: 0xb, Present: 1, DPL: 3, S: 1, L: 1, G: 1}
	data := kvm.Segment{Base: 0, Limit: 0xffffffff, Selector: selUserDS, Typ: 0x3, Present: 1, DPL: 3, S: 1, DB: 1, G: 1}
	s.CS = code
	s.SS, s.DS, s.ES, s.FS, s.GS = data, data, data, data, data
	s.FS.Base = fsBase
	s.TR = kvm.Segment{Base: addrTSS, Limit: tssLimit, Selector: selTSS, Typ: 0xb, Present: 1}
	s.LDT = kvm.Segment{Typ: 2, Present: 1, Unusable: 1}
	s.GDT = kvm.Descriptor{Base: addrGDT, Limit: 9*8 - 1}
	s.IDT = kvm.Descriptor{Base: addrIDT, Limit: 256*16 - 1}
	s.CR0 = cr0PE | cr0MP | cr0ET | cr0NE | cr0WP | cr0PG
	s.CR3 = addrPML4
	s.CR4 = cr4PAE | cr4PGE | cr4OSFXSR | cr4OSXMMEXCPT | cr4OSXSAVE | h.cr4
	s.EFER = eferSCE | eferLME | eferLMA | eferNXE
	if _, err := retry(func() (int, error) { return 0, kvm.SetSregs(c.fd, s) }); err != nil {
		return fmt.Errorf("KVM_SET_SREGS: %w", err)
	}
	if err := setXCR0(c.fd, h.xcr0); err != nil {
		return err
	}
	// STAR: syscall loads CS=0x10/SS=0x18, sysret loads CS=0x33/SS=0x2b (base 0x23).
	if err := setMSRs(c.fd, map[uint32]uint64{
		msrSTAR:   uint64(selUserCS32)<<48 | uint64(selKernelCS)<<32,
		msrLSTAR:  addrStub,
		msrCSTAR:  addrStub,
		msrFMASK:  0x47700, // TF, DF, IF, IOPL, NT, AC: as Linux
		msrKGS:    0,
		msrTSCAux: uint64(c.id),
	}); err != nil {
		return err
	}
	regs := &kvm.Regs{RIP: rip, RSP: rsp, RFLAGS: 0x2}
	if _, err := retry(func() (int, error) { return 0, kvm.SetRegs(c.fd, regs) }); err != nil {
		return fmt.Errorf("KVM_SET_REGS: %w", err)
	}
	return nil
}
