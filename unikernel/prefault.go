package unikernel

import (
	"fmt"

	"github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"
)

// prefaultCode is a loop the VMM runs on a spare vCPU to touch guest pages before a
// restored UC runs (guest-side working-set prefetch: KVM_PRE_FAULT_MEMORY's job, absent
// on this host). It reads one byte per page of [RSI, RDI) and exits through the
// system-call port:
//
//	0:  8a 06                 mov (%rsi), %al
//	2:  48 81 c6 00 10 00 00  add $0x1000, %rsi
//	9:  48 39 fe              cmp %rdi, %rsi
//	c:  72 f2                 jb 0
//	e:  e6 f0                 out %al, $SyscallPort
var prefaultCode = []byte{0x8a, 0x06, 0x48, 0x81, 0xc6, 0x00, 0x10, 0x00, 0x00, 0x48, 0x39, 0xfe, 0x72, 0xf2, 0xe6, SyscallPort}

// addrPrefault is where the loop lives: the user-readable stub page, after the stub.
const addrPrefault = addrStub + 0x100

// Prefault touches (reads) every page of the ranges from inside the guest on the VM's
// first prepared vCPU, so that the guest's first accesses after a restore find the
// hypervisor's page tables filled. Call it on a shell after its memory is loaded and
// before the UC starts; the vCPU's registers are rewritten by the restore.
func (vm *VM) Prefault(ranges [][2]uint64) error {
	vm.mu.Lock()
	if len(vm.vcpus) == 0 || vm.closed {
		vm.mu.Unlock()
		return fmt.Errorf("%w: prefault needs a VM with a prepared vCPU", ErrState)
	}
	c := vm.vcpus[0]
	vm.mu.Unlock()
	copy(vm.mem[addrPrefault:], prefaultCode)
	for _, r := range ranges {
		if r[0] < userBase || r[1] > vm.Size || r[0] >= r[1] || r[0]%pageSize != 0 {
			return fmt.Errorf("unikernel: prefault range [%#x, %#x)", r[0], r[1])
		}
		regs := &kvm.Regs{RIP: addrPrefault, RSI: r[0], RDI: r[1], RFLAGS: 0x2, RSP: kstackTop}
		if _, err := retry(func() (int, error) { return 0, kvm.SetRegs(c.fd, regs) }); err != nil {
			return fmt.Errorf("unikernel: prefault: KVM_SET_REGS: %w", err)
		}
		for {
			c.run.setValid(0)
			err := kvmRun(c.fd)
			if err == unix.EINTR || err == unix.EAGAIN {
				continue
			}
			if err != nil {
				return fmt.Errorf("unikernel: prefault: KVM_RUN: %w", err)
			}
			break
		}
		if r := c.run.exitReason(); r != exitIO {
			return fmt.Errorf("unikernel: prefault: exit reason %d", r)
		}
		if _, _, port, _, _ := c.run.io(); port != SyscallPort {
			return fmt.Errorf("unikernel: prefault: exit on port %#x (a fault in the loop)", port)
		}
	}
	return nil
}
