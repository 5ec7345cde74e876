package unikernel

import (
	"bytes"
	"crypto/rand"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"golang.org/x/sys/unix"
)

// ErrBadELF means the program is not an x86-64 ELF executable we can load.
var ErrBadELF = errors.New("unikernel: not a loadable x86-64 ELF executable")

// elfImage is what the loader needs from an ELF file, parsed and checked.
type elfImage struct {
	typ    elf.Type
	entry  uint64
	phoff  uint64
	phnum  uint64
	interp string
	loads  []elf.ProgHeader
	phdr   uint64 // vaddr of the program headers (PT_PHDR, or computed)
	lo, hi uint64 // page-aligned span of the PT_LOAD segments
}

// parseELF checks and summarises an ELF executable read from r. It never panics on
// malformed input.
func parseELF(r io.ReaderAt) (img *elfImage, err error) {
	defer func() {
		if p := recover(); p != nil {
			img, err = nil, fmt.Errorf("%w: %v", ErrBadELF, p)
		}
	}()
	f, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadELF, err)
	}
	if f.Class != elf.ELFCLASS64 || f.Data != elf.ELFDATA2LSB || f.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("%w: class %v, data %v, machine %v", ErrBadELF, f.Class, f.Data, f.Machine)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return nil, fmt.Errorf("%w: type %v", ErrBadELF, f.Type)
	}
	var hdr [64]byte
	if _, err := r.ReadAt(hdr[:], 0); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrBadELF, err)
	}
	img = &elfImage{typ: f.Type, entry: f.Entry, phoff: binary.LittleEndian.Uint64(hdr[32:]),
		phnum: uint64(len(f.Progs)), lo: ^uint64(0)}
	for _, p := range f.Progs {
		switch p.Type {
		case elf.PT_INTERP:
			b := make([]byte, min(p.Filesz, 4096))
			if _, err := r.ReadAt(b, int64(p.Off)); err != nil {
				return nil, fmt.Errorf("%w: PT_INTERP: %v", ErrBadELF, err)
			}
			img.interp = string(bytes.TrimRight(b, "\x00"))
		case elf.PT_PHDR:
			img.phdr = p.Vaddr
		case elf.PT_LOAD:
			if p.Memsz == 0 {
				continue
			}
			if p.Filesz > p.Memsz || p.Vaddr%pageSize != p.Off%pageSize || p.Vaddr+p.Memsz < p.Vaddr ||
				p.Vaddr+p.Memsz > 1<<46 {
				return nil, fmt.Errorf("%w: bad PT_LOAD at %#x", ErrBadELF, p.Vaddr)
			}
			img.loads = append(img.loads, p.ProgHeader)
			img.lo = min(img.lo, pageDown(p.Vaddr))
			img.hi = max(img.hi, pageUp(p.Vaddr+p.Memsz))
		}
	}
	if len(img.loads) == 0 {
		return nil, fmt.Errorf("%w: no PT_LOAD", ErrBadELF)
	}
	if img.phdr == 0 {
		for _, p := range img.loads {
			if p.Off <= img.phoff && img.phoff < p.Off+p.Filesz {
				img.phdr = p.Vaddr + img.phoff - p.Off
			}
		}
	}
	return img, nil
}

// loadELF maps the image's segments from host fd into the address space and returns the
// load bias. base is where an ET_DYN image goes (0: anywhere in the mmap area).
func (k *Kernel) loadELF(img *elfImage, fd int, path string, size int64, base uint64) (uint64, error) {
	as := k.as
	span := img.hi - img.lo
	var bias uint64
	if img.typ == elf.ET_DYN {
		if base == 0 {
			// Reserve the whole span so the segments stay together.
			a, e := as.mmap(0, span, 0, false, false, false, -1, "", 0, 0)
			if e != 0 {
				return 0, fmt.Errorf("reserve %d bytes: %w", span, e)
			}
			base = a
		}
		bias = base - img.lo
	}
	if img.lo+bias < userBase || img.hi+bias > as.size {
		return 0, fmt.Errorf("%w: segments at [%#x, %#x) outside the guest's [%#x, %#x)", ErrBadELF,
			img.lo+bias, img.hi+bias, uint64(userBase), as.size)
	}
	for _, p := range img.loads {
		prot := 0
		if p.Flags&elf.PF_R != 0 {
			prot |= unix.PROT_READ
		}
		if p.Flags&elf.PF_W != 0 {
			prot |= unix.PROT_WRITE
		}
		if p.Flags&elf.PF_X != 0 {
			prot |= unix.PROT_EXEC
		}
		start := pageDown(p.Vaddr + bias)
		delta := p.Vaddr + bias - start
		fileEnd := pageUp(p.Vaddr + bias + p.Filesz)
		memEnd := pageUp(p.Vaddr + bias + p.Memsz)
		if p.Filesz > 0 {
			if _, e := as.mmap(start, fileEnd-start, prot, true, false, false, fd, path, int64(p.Off-delta), size); e != 0 {
				return 0, fmt.Errorf("map segment at %#x: %w", start, e)
			}
			// Zero the rest of the last file page (the start of .bss).
			if tail := p.Vaddr + bias + p.Filesz; p.Memsz > p.Filesz && tail < fileEnd {
				clear(as.mem[tail:fileEnd])
			}
		} else {
			fileEnd = start
		}
		if memEnd > fileEnd {
			if _, e := as.mmap(fileEnd, memEnd-fileEnd, prot, true, false, false, -1, "", 0, 0); e != 0 {
				return 0, fmt.Errorf("map bss at %#x: %w", fileEnd, e)
			}
		}
	}
	return bias, nil
}

// Auxiliary vector keys (<elf.h>).
const (
	atNull     = 0
	atPhdr     = 3
	atPhent    = 4
	atPhnum    = 5
	atPagesz   = 6
	atBase     = 7
	atFlags    = 8
	atEntry    = 9
	atUID      = 11
	atEUID     = 12
	atGID      = 13
	atEGID     = 14
	atPlatform = 15
	atHwcap    = 16
	atClktck   = 17
	atSecure   = 23
	atRandom   = 25
	atHwcap2   = 26
	atExecfn   = 31
)

// buildStack writes argv, envp and auxv at the top of the stack as the kernel does and
// returns the initial RSP (pointing at argc).
func buildStack(mem []byte, top uint64, argv, envp []string, auxv [][2]uint64, execfn string) (uint64, []uint64, error) {
	sp := top
	push := func(b []byte) uint64 {
		sp -= uint64(len(b))
		copy(mem[sp:], b)
		return sp
	}
	pushStr := func(s string) uint64 { return push(append([]byte(s), 0)) }
	execAddr := pushStr(execfn)
	var envAddrs, argAddrs []uint64
	for i := len(envp) - 1; i >= 0; i-- {
		envAddrs = append([]uint64{pushStr(envp[i])}, envAddrs...)
	}
	for i := len(argv) - 1; i >= 0; i-- {
		argAddrs = append([]uint64{pushStr(argv[i])}, argAddrs...)
	}
	platform := pushStr("x86_64")
	var rnd [16]byte
	rand.Read(rnd[:])
	random := push(rnd[:])
	sp &^= 15
	extra := map[uint64]uint64{atRandom: random, atPlatform: platform, atExecfn: execAddr}
	var words []uint64
	words = append(words, uint64(len(argv)))
	words = append(words, argAddrs...)
	words = append(words, 0)
	words = append(words, envAddrs...)
	words = append(words, 0)
	for _, kv := range auxv {
		words = append(words, kv[0], kv[1])
	}
	for _, key := range []uint64{atRandom, atPlatform, atExecfn} {
		words = append(words, key, extra[key])
	}
	words = append(words, atNull, 0)
	need := uint64(8 * len(words))
	if need+(top-sp) > stackSize/2 {
		return 0, nil, errors.New("unikernel: arguments and environment too large")
	}
	sp -= need
	sp &^= 15
	for i, w := range words {
		binary.LittleEndian.PutUint64(mem[sp+8*uint64(i):], w)
	}
	return sp, argAddrs, nil
}
