package unikernel

import (
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
	} {
		syscallTable[nr] = h
	}
}

// sysPause sleeps until the UC stops (no signal can arrive asynchronously in a UC).
func sysPause(k *Kernel, _ sysThread, _ *[6]uint64) (uint64, unix.Errno) {
	k.asleep(nil)
	return 0, unix.EINTR
}
