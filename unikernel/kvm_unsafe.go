package unikernel

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"
)

// This file holds the KVM ioctls gokvm's kvm package lacks or wraps in a way that allocates
// per call (XSAVE, XCRS, CPUID, MSRs, sync regs, the kvm_run mapping). Everything that touches
// unsafe for KVM lives here.

// ioctl numbers not in gokvm (see <linux/kvm.h>).
var (
	ioctlGetXSAVE  = kvm.IIOR(0xa4, unsafe.Sizeof(kvmXSAVE{}))
	ioctlSetXSAVE  = kvm.IIOW(0xa5, unsafe.Sizeof(kvmXSAVE{}))
	ioctlGetXCRS   = kvm.IIOR(0xa6, unsafe.Sizeof(kvm.XCRS{}))
	ioctlSetXCRS   = kvm.IIOW(0xa7, unsafe.Sizeof(kvm.XCRS{}))
	ioctlSuppCPUID = kvm.IIOWR(0x05, 8) // struct kvm_cpuid2 header is 8 bytes
	ioctlSetCPUID2 = kvm.IIOW(0x90, 8)
	ioctlGetMSRS   = kvm.IIOWR(0x88, 8) // struct kvm_msrs header is 8 bytes
	ioctlSetMSRS   = kvm.IIOW(0x89, 8)
	ioctlRun       = kvm.IIO(0x80)
)

// kvmXSAVE mirrors struct kvm_xsave (the legacy 4 KiB form).
type kvmXSAVE struct {
	Region [1024]uint32
}

// kvmRunSyncOffset etc. are offsets into struct kvm_run (checked against <linux/kvm.h>).
const (
	runExitReason = 8
	runIO         = 32 // union: struct { __u8 direction, size; __u16 port; __u32 count; __u64 data_offset; } io
	runValidRegs  = 288
	runDirtyRegs  = 296
	runSyncRegs   = 304 // struct kvm_sync_regs { kvm_regs; kvm_sregs; kvm_vcpu_events }
	runImmExit    = 1

	syncX86Regs  = 1 << 0
	syncX86Sregs = 1 << 1
)

// KVM exit reasons we handle (<linux/kvm.h>).
const (
	exitIO            = 2
	exitHLT           = 5
	exitMMIO          = 6
	exitShutdown      = 8
	exitFailEntry     = 9
	exitIntr          = 10
	exitInternalError = 17
)

// retry is the one place that retries EINTR for calls made through gokvm: our own kicks
// (SIGURG) and the Go runtime's preemption signals interrupt slow ioctls.
func retry[T any](f func() (T, error)) (T, error) {
	for {
		v, err := f()
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return v, err
	}
}

// ioctl is the other place that retries EINTR for ioctls that are not KVM_RUN.
func ioctl(fd uintptr, op uintptr, arg unsafe.Pointer) error {
	for {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, fd, op, uintptr(arg))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return e
		}
		return nil
	}
}

// runMap is a vCPU's shared struct kvm_run.
type runMap struct {
	mem []byte
}

func mapRun(vcpuFd uintptr, size int) (*runMap, error) {
	b, err := unix.Mmap(int(vcpuFd), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap kvm_run: %w", err)
	}
	return &runMap{mem: b}, nil
}

func (r *runMap) unmap() error {
	if r.mem == nil {
		return nil
	}
	err := unix.Munmap(r.mem)
	r.mem = nil
	return err
}

func (r *runMap) exitReason() uint32 { return *(*uint32)(unsafe.Pointer(&r.mem[runExitReason])) }
func (r *runMap) setImmediateExit(v uint8) {
	*(*uint8)(unsafe.Pointer(&r.mem[runImmExit])) = v
}

// io returns the fields of an I/O exit.
func (r *runMap) io() (dir, size uint8, port uint16, count uint32, dataOff uint64) {
	b := r.mem[runIO:]
	return b[0], b[1], *(*uint16)(unsafe.Pointer(&b[2])), *(*uint32)(unsafe.Pointer(&b[4])),
		*(*uint64)(unsafe.Pointer(&b[8]))
}

// regs is the synced general register file (struct kvm_regs inside kvm_run.s).
func (r *runMap) regs() *kvm.Regs   { return (*kvm.Regs)(unsafe.Pointer(&r.mem[runSyncRegs])) }
func (r *runMap) setValid(v uint64) { *(*uint64)(unsafe.Pointer(&r.mem[runValidRegs])) = v }
func (r *runMap) setDirty(v uint64) { *(*uint64)(unsafe.Pointer(&r.mem[runDirtyRegs])) = v }

// kvmRun enters the guest once. It returns unix.EINTR when a signal or immediate_exit
// interrupted it; the caller decides whether to re-enter.
func kvmRun(vcpuFd uintptr) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, vcpuFd, ioctlRun, 0)
	if e != 0 {
		return e
	}
	return nil
}

func getXSAVE(vcpuFd uintptr) (*kvmXSAVE, error) {
	x := &kvmXSAVE{}
	if err := ioctl(vcpuFd, ioctlGetXSAVE, unsafe.Pointer(x)); err != nil {
		return nil, fmt.Errorf("KVM_GET_XSAVE: %w", err)
	}
	return x, nil
}

func setXSAVE(vcpuFd uintptr, x *kvmXSAVE) error {
	if err := ioctl(vcpuFd, ioctlSetXSAVE, unsafe.Pointer(x)); err != nil {
		return fmt.Errorf("KVM_SET_XSAVE: %w", err)
	}
	return nil
}

func setXCR0(vcpuFd uintptr, v uint64) error {
	x := &kvm.XCRS{NrXRCS: 1}
	x.Registers[0].XRC = 0
	x.Registers[0].Value = v
	if err := ioctl(vcpuFd, ioctlSetXCRS, unsafe.Pointer(x)); err != nil {
		return fmt.Errorf("KVM_SET_XCRS: %w", err)
	}
	return nil
}

func getRegs(vcpuFd uintptr) (*kvm.Regs, error) {
	r, err := retry(func() (*kvm.Regs, error) { return kvm.GetRegs(vcpuFd) })
	if err != nil {
		return nil, fmt.Errorf("KVM_GET_REGS: %w", err)
	}
	return r, nil
}

// cpuidEntry mirrors struct kvm_cpuid_entry2.
type cpuidEntry struct {
	Function, Index, Flags, Eax, Ebx, Ecx, Edx uint32
	_                                          [3]uint32
}

const maxCPUIDEntries = 256

type cpuidBuf struct {
	Nent    uint32
	_       uint32
	Entries [maxCPUIDEntries]cpuidEntry
}

func supportedCPUID(kvmFd uintptr) ([]cpuidEntry, error) {
	b := &cpuidBuf{Nent: maxCPUIDEntries}
	if err := ioctl(kvmFd, ioctlSuppCPUID, unsafe.Pointer(b)); err != nil {
		return nil, fmt.Errorf("KVM_GET_SUPPORTED_CPUID: %w", err)
	}
	return append([]cpuidEntry(nil), b.Entries[:b.Nent]...), nil
}

func setCPUID(vcpuFd uintptr, e []cpuidEntry) error {
	if len(e) > maxCPUIDEntries {
		return errors.New("too many CPUID entries")
	}
	b := &cpuidBuf{Nent: uint32(len(e))}
	copy(b.Entries[:], e)
	if err := ioctl(vcpuFd, ioctlSetCPUID2, unsafe.Pointer(b)); err != nil {
		return fmt.Errorf("KVM_SET_CPUID2: %w", err)
	}
	return nil
}

type msrEntry struct {
	Index uint32
	_     uint32
	Data  uint64
}

type msrBuf struct {
	N       uint32
	_       uint32
	Entries [16]msrEntry
}

func setMSRs(vcpuFd uintptr, m map[uint32]uint64) error {
	b := &msrBuf{}
	for k, v := range m {
		b.Entries[b.N] = msrEntry{Index: k, Data: v}
		b.N++
	}
	n, _, e := unix.Syscall(unix.SYS_IOCTL, vcpuFd, ioctlSetMSRS, uintptr(unsafe.Pointer(b)))
	for e == unix.EINTR {
		n, _, e = unix.Syscall(unix.SYS_IOCTL, vcpuFd, ioctlSetMSRS, uintptr(unsafe.Pointer(b)))
	}
	if e != 0 {
		return fmt.Errorf("KVM_SET_MSRS: %w", e)
	}
	if uint32(n) != b.N {
		return fmt.Errorf("KVM_SET_MSRS: set %d of %d", n, b.N)
	}
	return nil
}

func getMSR(vcpuFd uintptr, idx uint32) (uint64, error) {
	b := &msrBuf{N: 1}
	b.Entries[0].Index = idx
	n, _, e := unix.Syscall(unix.SYS_IOCTL, vcpuFd, ioctlGetMSRS, uintptr(unsafe.Pointer(b)))
	for e == unix.EINTR {
		n, _, e = unix.Syscall(unix.SYS_IOCTL, vcpuFd, ioctlGetMSRS, uintptr(unsafe.Pointer(b)))
	}
	if e != 0 {
		return 0, fmt.Errorf("KVM_GET_MSRS: %w", e)
	}
	if n != 1 {
		return 0, fmt.Errorf("KVM_GET_MSRS %#x: not read", idx)
	}
	return b.Entries[0].Data, nil
}

// mmapFixed maps fd (or anonymous memory when fd < 0) at addr, replacing what was there.
func mmapFixed(addr uintptr, length uintptr, prot, flags int, fd int, off int64) error {
	_, _, e := unix.Syscall6(unix.SYS_MMAP, addr, length, uintptr(prot), uintptr(flags|unix.MAP_FIXED), uintptr(fd), uintptr(off))
	if e != 0 {
		return e
	}
	return nil
}

func madvise(addr, length uintptr, advice int) error {
	_, _, e := unix.Syscall(unix.SYS_MADVISE, addr, length, uintptr(advice))
	if e != 0 {
		return e
	}
	return nil
}

func hostAddr(b []byte) uintptr { return uintptr(unsafe.Pointer(&b[0])) }
