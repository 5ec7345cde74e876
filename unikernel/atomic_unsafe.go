package unikernel

import (
	"sync/atomic"
	"unsafe"
)

// Atomic access to guest words shared with running guest threads (futex ops, eventfd
// counters). b must hold at least 4 bytes at a 4-byte aligned address.

func atomicLoad32(b []byte) uint32 { return atomic.LoadUint32((*uint32)(unsafe.Pointer(&b[0]))) }

func atomicCAS32(b []byte, old, nv uint32) bool {
	return atomic.CompareAndSwapUint32((*uint32)(unsafe.Pointer(&b[0])), old, nv)
}

func unsafePointer(p *byte) unsafe.Pointer { return unsafe.Pointer(p) }
