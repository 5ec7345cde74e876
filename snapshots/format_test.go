package snapshots

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/seuss-go/seuss/unikernel"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// sampleFile is a small function snapshot with every kind of field set.
func sampleFile() (Header, *unikernel.VMState, []Run) {
	h := Header{ID: "fn-sample", Type: TypeFunction, Kind: "python:3.11", RootDigest: "sha256-00",
		Namespace: "guest", FQN: "guest/hello", Revision: "1-abc", CodeDigest: "sha256-11", InitDigest: "sha256-22",
		ParentID: "rt-python-3.11-00", ParentDigest: "sha256-33", Created: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)}
	st := &unikernel.VMState{
		AddressSpace: 1 << 30, Mode: unikernel.ModePVM,
		VCPU: []unikernel.ThreadState{{TID: 2, GPRs: [18]uint64{0, 1, 2, 3, 4, 0, 0x3ffff000, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0x401000, 0x202},
			InCall: true, XSAVE: []byte{0x7f, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x1f}, FSBase: 0x3f000000, Sigmask: 1}},
		LibOS: unikernel.LibOSState{PID: 2, NextTID: 2, Cwd: "/", Umask: 0o22, Exe: "/usr/bin/python3.11", Argv0: "/usr/bin/python3.11",
			Sigactions: []unikernel.SigactionState{{Sig: 2, Act: make([]byte, 32)}},
			Files: []unikernel.FileState{{Kind: unikernel.FileStdin}, {Kind: unikernel.FileOut, Stream: 1, Flags: 1}, {Kind: unikernel.FilePipe, Pipe: 0},
				{Kind: unikernel.FileEvent, Count: 3}, {Kind: unikernel.FileEpoll, Items: []unikernel.EpollItemState{{FD: 3, File: 3, Events: 1, Data: 7}}}},
			FDs:   []unikernel.FDState{{FD: 0, File: 0}, {FD: 1, File: 1}, {FD: 2, File: 1}, {FD: 3, File: 3}, {FD: 4, File: 4, CloExec: true}, {FD: 5, File: 2}},
			Pipes: []unikernel.PipeState{{Buf: []byte("hi"), Cap: 65536, Readers: 1, Writers: 1}},
			Tmp:   unikernel.TmpState{Ino: 1 << 20, Nodes: []unikernel.TmpNodeState{{Path: "", Dir: true, Mode: 0o1777, Ino: 1 << 20}, {Path: "/a", Data: []byte("x"), Mode: 0o644, Ino: 1<<20 + 1}}}},
		Memory: unikernel.MemoryState{VMAs: []unikernel.VMAState{{Start: 0x400000, End: 0x402000, Prot: 5, File: "/usr/bin/python3.11"}, {Start: 0x500000, End: 0x600000, Prot: 3}},
			Committed: 0x100000, BrkStart: 0x500000, Brk: 0x600000, MmapTop: 0x3f000000},
	}
	runs := []Run{
		{Addr: 0x500000, Pages: 2, Slots: []uint32{0, 1}, Hashes: [][32]byte{{1}, {2}}},
		{Addr: 0x510000, Pages: 16, Zero: true},
	}
	return h, st, runs
}

const golden = "testdata/function-v1.1.snap"

// goldenOld are files of earlier minors of this major: they must still decode.
var goldenOld = []string{"testdata/function-v1.0.snap"}

// TestGolden: the 1.0 format decodes as it did when the golden file was written, and
// encoding the same snapshot gives the same bytes.
func TestGolden(t *testing.T) {
	h, st, runs := sampleFile()
	var b bytes.Buffer
	if _, err := Encode(&b, &h, st, runs); err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Bytes(), want) {
		t.Errorf("encoding differs from %s (format changed? bump FormatMinor or FormatMajor and add a golden file)", golden)
	}
	f, err := Decode(bytes.NewReader(want), int64(len(want)))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.Header, h) || !reflect.DeepEqual(f.State, st) || !reflect.DeepEqual(f.Runs, runs) {
		t.Errorf("decoded golden file differs:\n%+v\n%+v", f.Header, f.Runs)
	}
	for _, p := range goldenOld {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		f, err := Decode(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatalf("%s: an older minor must still decode: %v", p, err)
		}
		if f.Header.FQN != h.FQN || len(f.State.VCPU) != 1 || len(f.Runs) != len(runs) {
			t.Errorf("%s decodes differently: %+v", p, f.Header)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	good, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"newer minor", mod(func(b []byte) []byte { binary.LittleEndian.PutUint16(b[10:], FormatMinor+1); return b }), ErrVersion},
		{"unknown major", mod(func(b []byte) []byte { binary.LittleEndian.PutUint16(b[8:], FormatMajor+1); return b }), ErrVersion},
		{"bad magic", mod(func(b []byte) []byte { b[0] = 'X'; return b }), ErrCorruptSnapshot},
		{"truncated", good[:len(good)-1], ErrCorruptSnapshot},
		{"empty", nil, ErrCorruptSnapshot},
		{"flipped payload byte", mod(func(b []byte) []byte { b[len(b)/2] ^= 1; return b }), ErrCorruptSnapshot},
		{"flipped checksum byte", mod(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), ErrCorruptSnapshot},
		{"huge header length", mod(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[12:], 1<<31); return b }), ErrCorruptSnapshot},
		{"extra byte", append(append([]byte(nil), good...), 0), ErrCorruptSnapshot},
	} {
		_, err := Decode(bytes.NewReader(tc.b), int64(len(tc.b)))
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// TestDecodeChecksContents: a file whose checksum is right but whose contents are
// inconsistent (as a hostile writer could make) is refused too.
func TestDecodeChecksContents(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(h *Header, st *unikernel.VMState, runs []Run) []Run
	}{
		{"descriptor to no file", func(_ *Header, st *unikernel.VMState, r []Run) []Run { st.LibOS.FDs[0].File = 99; return r }},
		{"mapping past the guest", func(_ *Header, st *unikernel.VMState, r []Run) []Run {
			st.Memory.VMAs[1].End = 2 << 30
			return r
		}},
		{"long XSAVE", func(_ *Header, st *unikernel.VMState, r []Run) []Run { st.VCPU[0].XSAVE = make([]byte, 4097); return r }},
		{"run past the guest", func(_ *Header, _ *unikernel.VMState, r []Run) []Run { r[1].Addr = 1 << 30; return r }},
		{"overlapping runs", func(_ *Header, _ *unikernel.VMState, r []Run) []Run { r[1].Addr = 0x501000; return r }},
		{"function without parent", func(h *Header, _ *unikernel.VMState, r []Run) []Run { h.ParentID = ""; return r }},
		{"unknown file kind", func(_ *Header, st *unikernel.VMState, r []Run) []Run { st.LibOS.Files[0].Kind = "socket"; return r }},
		{"epoll of an epoll", func(_ *Header, st *unikernel.VMState, r []Run) []Run { st.LibOS.Files[4].Items[0].File = 4; return r }},
	} {
		h, st, runs := sampleFile()
		runs = tc.mod(&h, st, runs)
		var b bytes.Buffer
		if _, err := Encode(&b, &h, st, runs); err != nil {
			continue // refused already at encode time: fine
		}
		if _, err := Decode(bytes.NewReader(b.Bytes()), int64(b.Len())); !errors.Is(err, ErrCorruptSnapshot) {
			t.Errorf("%s: %v, want ErrCorruptSnapshot", tc.name, err)
		}
	}
}

// FuzzDecode: snapshot files are untrusted input. Decode must never panic, and what it
// accepts must encode and decode to the same thing.
func FuzzDecode(f *testing.F) {
	good, err := os.ReadFile(filepath.FromSlash(golden))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:40])
	f.Fuzz(func(t *testing.T, b []byte) {
		df, err := Decode(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		var out bytes.Buffer
		if _, err := Encode(&out, &df.Header, df.State, df.Runs); err != nil {
			t.Fatalf("accepted file does not encode: %v", err)
		}
		if _, err := Decode(bytes.NewReader(out.Bytes()), int64(out.Len())); err != nil {
			t.Fatalf("re-encoded file refused: %v", err)
		}
	})
}

// FuzzDecodeBody fuzzes the contents behind a valid checksum (the checksum alone would
// stop nearly every mutation of FuzzDecode before the decoders run).
func FuzzDecodeBody(f *testing.F) {
	good, err := os.ReadFile(filepath.FromSlash(golden))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good[:len(good)-32])
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) < preambleSize {
			return
		}
		b := append([]byte(nil), body...)
		copy(b, magic[:])
		binary.LittleEndian.PutUint16(b[8:], FormatMajor)
		binary.LittleEndian.PutUint16(b[10:], FormatMinor)
		b = appendChecksum(b)
		df, err := Decode(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		if err := df.State.Validate(); err != nil {
			t.Fatalf("accepted an invalid state: %v", err)
		}
	})
}
