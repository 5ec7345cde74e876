package unikernel

import (
	"bytes"
	"debug/elf"
	_ "embed"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

//go:generate sh vdso/gen.sh

// Time without exits: the UC's vDSO.
//
// vdso/vdso.c is a tiny shared object (built by vdso/gen.sh and embedded) whose
// __vdso_clock_gettime, __vdso_gettimeofday and __vdso_time compute the time from the TSC
// and a time page the VMM keeps, and whose other entries fall back to a system call by a
// direct port write. The VMM copies its loadable segments to vdsoAddr (user read-only pages
// of the system area) and passes AT_SYSINFO_EHDR; glibc then routes clock_gettime and
// friends there, as on Linux.
//
// The time page (timePageAddr, user read-only) holds a base point (guest TSC, monotonic ns),
// mult/shift for TSC ticks to ns, and the realtime offset, under a sequence counter. The
// guest's TSC runs at the host's rate with a per-VM offset (RDTSC at CPL3 runs natively
// under PVM and VMX); the VMM reads the guest TSC through KVM_GET_MSRS on the vCPU of a
// thread that has just exited (so never while it runs), paired with the host clock. The
// rate starts from KVM_GET_TSC_KHZ and is refined from base points at least a second
// apart; a new base never moves the guest's clock backwards. The page is refreshed at
// most every timeRefresh from the system-call path, and must be rewritten after a restore
// into another VM (UC.refreshTimePage), whose TSC offset differs.
const (
	timePageAddr = 0x60000
	vdsoAddr     = 0x61000
	vdsoPages    = 2
	timeRefresh  = time.Second
	timeShift    = 32
	msrTSC       = 0x10
	atSysinfoEhd = 33
)

//go:embed vdso/vdso.so
var vdsoELF []byte

var (
	vdsoOnce  sync.Once
	vdsoImage []byte
	vdsoErr   error
)

// vdsoLoad lays out the embedded vDSO's PT_LOAD segments at their virtual addresses (it is
// linked at 0), as the kernel's vDSO image is.
func vdsoLoad() ([]byte, error) {
	vdsoOnce.Do(func() {
		f, err := elf.NewFile(bytes.NewReader(vdsoELF))
		if err != nil {
			vdsoErr = fmt.Errorf("unikernel: vdso: %w", err)
			return
		}
		img := make([]byte, vdsoPages*pageSize)
		for _, p := range f.Progs {
			if p.Type != elf.PT_LOAD {
				continue
			}
			if p.Vaddr+p.Memsz > uint64(len(img)) || p.Off+p.Filesz > uint64(len(vdsoELF)) {
				vdsoErr = fmt.Errorf("unikernel: vdso: segment at %#x+%#x does not fit %d pages", p.Vaddr, p.Memsz, vdsoPages)
				return
			}
			copy(img[p.Vaddr:], vdsoELF[p.Off:p.Off+p.Filesz])
		}
		vdsoImage = img
	})
	return vdsoImage, vdsoErr
}

// timePage mirrors struct timepage in vdso/vdso.c.
type timePage struct {
	Seq     uint32
	Shift   uint32
	TSC0    uint64
	Mono0   uint64
	Mult    uint64
	RealOff int64
	OK      uint64
}

// clockState is the VMM's side of the time page (per UC; not saved by snapshots: a
// restored UC calibrates again against its own VM's TSC).
type clockState struct {
	mu       sync.Mutex
	page     timePage
	calTSC   uint64 // first base point, for refining the rate
	calMono  uint64
	next     atomic.Int64 // unix ns of the next refresh
	disabled bool
}

func monoNow() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

func realNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_REALTIME, &ts)
	return ts.Nano()
}

// guestTSC reads the vCPU's TSC (the caller owns the vCPU and it is outside KVM_RUN) with
// the host's monotonic clock at the middle of the read.
func guestTSC(c *vcpu) (tsc, mono uint64, err error) {
	best := ^uint64(0)
	for i := 0; i < 3; i++ {
		a := monoNow()
		v, err := getMSR(c.fd, msrTSC)
		if err != nil {
			return 0, 0, err
		}
		b := monoNow()
		if b-a < best {
			best, tsc, mono = b-a, v, a+(b-a)/2
		}
	}
	return tsc, mono, nil
}

// tscKHz asks KVM for the guest TSC rate.
func tscKHz(c *vcpu) uint64 {
	const ioctlGetTSCKHz = 0xaea3 // _IO(KVMIO, 0xa3)
	for {
		r, _, e := unix.Syscall(unix.SYS_IOCTL, c.fd, ioctlGetTSCKHz, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0
		}
		return uint64(r)
	}
}

// writeTimePage publishes p into guest memory under the sequence counter.
func writeTimePage(mem []byte, p *timePage) {
	b := mem[timePageAddr : timePageAddr+pageSize]
	seq := (*uint32)(unsafePointer(&b[0]))
	atomic.StoreUint32(seq, p.Seq|1)
	le := binary.LittleEndian
	le.PutUint32(b[4:], p.Shift)
	le.PutUint64(b[8:], p.TSC0)
	le.PutUint64(b[16:], p.Mono0)
	le.PutUint64(b[24:], p.Mult)
	le.PutUint64(b[32:], uint64(p.RealOff))
	le.PutUint64(b[40:], p.OK)
	p.Seq += 2
	atomic.StoreUint32(seq, p.Seq)
}

// installVDSO writes the vDSO image and an empty (fall back) time page.
func (vm *VM) installVDSO() error {
	img, err := vdsoLoad()
	if err != nil {
		return err
	}
	copy(vm.mem[vdsoAddr:], img)
	clear(vm.mem[timePageAddr : timePageAddr+pageSize])
	return nil
}

// refreshTime recomputes the time page from c, the vCPU of the calling thread (outside
// KVM_RUN). force ignores the refresh interval.
func (uc *UC) refreshTime(c *vcpu, force bool) {
	cs := &uc.clock
	now := time.Now().UnixNano()
	if !force && now < cs.next.Load() {
		return
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.disabled || !force && now < cs.next.Load() {
		return
	}
	cs.next.Store(now + int64(timeRefresh))
	tsc, mono, err := guestTSC(c)
	if err != nil {
		return
	}
	p := &cs.page
	if p.OK == 0 {
		khz := tscKHz(c)
		if khz == 0 {
			cs.disabled = true
			return
		}
		p.Shift = timeShift
		p.Mult = (uint64(1e6) << timeShift) / khz
		cs.calTSC, cs.calMono = tsc, mono
	} else if dt := tsc - cs.calTSC; mono-cs.calMono >= uint64(time.Second) && int64(dt) > 0 {
		// Refine the rate over the longest baseline we have.
		p.Mult = uint64((float64(mono-cs.calMono) / float64(dt)) * float64(uint64(1)<<timeShift))
	}
	// Never step the guest's monotonic clock back: continue from what the old base gives
	// at this TSC if that is ahead.
	if p.OK != 0 && tsc > p.TSC0 {
		if old := p.Mono0 + uint64((float64(tsc-p.TSC0)*float64(p.Mult))/float64(uint64(1)<<timeShift)); old > mono {
			mono = old
		}
	}
	p.TSC0, p.Mono0 = tsc, mono
	p.RealOff = realNow() - int64(monoNow())
	p.OK = 1
	writeTimePage(uc.vm.mem, p)
}

// refreshTimePage is for a restored UC: it recalibrates the time page against this VM's
// TSC using the vCPU of its first thread (call before the threads run).
func (uc *UC) refreshTimePage() {
	uc.mu.Lock()
	var c *vcpu
	if len(uc.threads) > 0 {
		c = uc.threads[0].cpu
	}
	uc.mu.Unlock()
	if c == nil {
		return
	}
	uc.clock.mu.Lock()
	uc.clock.page = timePage{Seq: uc.clock.page.Seq}
	uc.clock.disabled = false
	uc.clock.mu.Unlock()
	uc.refreshTime(c, true)
}

// mapVDSO makes the time page and the vDSO user read-only pages of the system area and
// writes them (the time page empty: the guest falls back to system calls until the first
// refresh). Part of every VM's static system area, like the entry stub.
func (vm *VM) mapVDSO() error {
	if err := vm.installVDSO(); err != nil {
		return err
	}
	const pP, pUS = 1 << 0, 1 << 2
	for a := uint64(timePageAddr); a < vdsoAddr+vdsoPages*pageSize; a += pageSize {
		binary.LittleEndian.PutUint64(vm.mem[addrPT0+8*(a/pageSize):], a|pP|pUS)
	}
	return nil
}
