package unikernel

import (
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Atomic access to guest words shared with running guest threads (futex ops, eventfd
// counters). b must hold at least 4 bytes at a 4-byte aligned address.

func atomicLoad32(b []byte) uint32 { return atomic.LoadUint32((*uint32)(unsafe.Pointer(&b[0]))) }

func atomicCAS32(b []byte, old, nv uint32) bool {
	return atomic.CompareAndSwapUint32((*uint32)(unsafe.Pointer(&b[0])), old, nv)
}

func unsafePointer(p *byte) unsafe.Pointer { return unsafe.Pointer(p) }

// mincore fills vec (one byte per page) with the residency of [addr, addr+len(vec) pages).
func mincore(addr uintptr, vec []byte) error {
	_, _, e := unix.Syscall(unix.SYS_MINCORE, addr, uintptr(len(vec))*pageSize, uintptr(unsafe.Pointer(&vec[0])))
	if e != 0 {
		return e
	}
	return nil
}
