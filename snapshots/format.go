package snapshots

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/seuss-go/seuss/unikernel"
)

// Format versions of the state file. A reader refuses a major it does not know and a
// minor newer than its own (a newer minor may add fields this reader would drop), and
// reads every older minor of its major.
//
// History: 1.0 the first; 1.1 saves XSAVE without its trailing zero bytes (1.0 readers
// required all 4 KiB and refuse 1.1 files, as they must).
const (
	FormatMajor = 1
	FormatMinor = 1
)

var magic = [8]byte{'S', 'E', 'U', 'S', 'S', 'N', 'A', 'P'}

// Caps on what is read from disk.
const (
	preambleSize = 32
	maxHeader    = 64 << 10
	maxPayload   = 256 << 20
	maxDiff      = 64 << 20
	maxRuns      = 1 << 20
)

// Errors callers branch on.
var (
	// ErrCorruptSnapshot: a snapshot file is truncated, fails its checksum, or does not
	// decode. It is never run: the cache deletes it and the caller falls back.
	ErrCorruptSnapshot = errors.New("snapshots: corrupt snapshot")
	// ErrVersion: a snapshot of an unknown major or newer minor format version.
	ErrVersion = errors.New("snapshots: unsupported snapshot format version")
	// ErrMismatch: a snapshot that is whole but does not fit: another root, kind, parent
	// or host.
	ErrMismatch = errors.New("snapshots: snapshot does not match")
)

// Snapshot types.
const (
	TypeRuntime  = "runtime"
	TypeFunction = "function"
)

// Header says what a snapshot is and what it depends on.
type Header struct {
	ID   string
	Type string
	// Kind and RootDigest: the runtime kind and the digest of the root it ran in.
	Kind       string
	RootDigest string
	// Function snapshots: the action and the digest of its init message (code, main,
	// binary flag, init env).
	Namespace, FQN, Revision, CodeDigest, InitDigest string `json:",omitempty"`
	// ParentID and ParentDigest name the runtime snapshot a function snapshot is a diff
	// over (Digest of its file).
	ParentID, ParentDigest string `json:",omitempty"`
	// MemoryDigest is, for a runtime snapshot, the SHA-256 of its memory file's data
	// pages (checked when the file is first used after a start); MemoryPages their number.
	MemoryDigest string `json:",omitempty"`
	MemoryPages  uint64
	Created      time.Time
}

// Run is a run of pages. In a function snapshot (a page diff over its parent): Pages
// pages at Addr, zero, or stored in the page store at Slots (one per page) with their
// hashes. In a runtime snapshot: InFile, the pages are in the memory file at offset Addr.
type Run struct {
	Addr   uint64
	Pages  uint32
	Zero   bool
	InFile bool
	Slots  []uint32
	Hashes [][32]byte
}

// File is a decoded state file.
type File struct {
	Header Header
	State  *unikernel.VMState
	Runs   []Run
	// Digest is "sha256-<hex>" of the file (its checksum): a child names its parent by it.
	Digest string
	Size   int64
}

// The state file's layout is drawn in the package comment (doc.go).

// Encode writes a state file.
func Encode(w io.Writer, h *Header, st *unikernel.VMState, runs []Run) (digest string, err error) {
	hj, err := json.Marshal(h)
	if err != nil {
		return "", err
	}
	pj, err := json.Marshal(st)
	if err != nil {
		return "", err
	}
	var d bytes.Buffer
	le := binary.LittleEndian
	var b8 [8]byte
	le.PutUint32(b8[:4], uint32(len(runs)))
	d.Write(b8[:4])
	for _, r := range runs {
		le.PutUint64(b8[:], r.Addr)
		d.Write(b8[:])
		le.PutUint32(b8[:4], r.Pages)
		flags := uint32(0)
		if r.Zero {
			flags |= 1
		}
		if r.InFile {
			flags |= 2
		}
		le.PutUint32(b8[4:], flags)
		d.Write(b8[:])
	}
	for _, r := range runs {
		if r.Zero || r.InFile {
			continue
		}
		if len(r.Slots) != int(r.Pages) || len(r.Hashes) != int(r.Pages) {
			return "", fmt.Errorf("snapshots: encode: run at %#x has %d pages but %d slots", r.Addr, r.Pages, len(r.Slots))
		}
		for i := range r.Slots {
			le.PutUint32(b8[:4], r.Slots[i])
			d.Write(b8[:4])
			d.Write(r.Hashes[i][:])
		}
	}
	if len(hj) > maxHeader || len(pj) > maxPayload || d.Len() > maxDiff {
		return "", fmt.Errorf("snapshots: encode: too large (header %d, payload %d, diff %d)", len(hj), len(pj), d.Len())
	}
	var pre [preambleSize]byte
	copy(pre[:8], magic[:])
	le.PutUint16(pre[8:], FormatMajor)
	le.PutUint16(pre[10:], FormatMinor)
	le.PutUint32(pre[12:], uint32(len(hj)))
	le.PutUint64(pre[16:], uint64(len(pj)))
	le.PutUint64(pre[24:], uint64(d.Len()))
	sum := sha256.New()
	mw := io.MultiWriter(w, sum)
	for _, part := range [][]byte{pre[:], hj, pj, d.Bytes()} {
		if _, err := mw.Write(part); err != nil {
			return "", err
		}
	}
	s := sum.Sum(nil)
	if _, err := w.Write(s); err != nil {
		return "", err
	}
	return "sha256-" + hex.EncodeToString(s), nil
}

// Decode reads a state file, checking its version, sizes and checksum before looking at
// its contents, then the contents' consistency. size caps the read (the file's size).
func Decode(r io.Reader, size int64) (*File, error) {
	corrupt := func(f string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrCorruptSnapshot, fmt.Sprintf(f, a...))
	}
	if size < preambleSize+32 || size > preambleSize+maxHeader+maxPayload+maxDiff+32 {
		return nil, corrupt("file of %d bytes", size)
	}
	var pre [preambleSize]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return nil, corrupt("preamble: %v", err)
	}
	if !bytes.Equal(pre[:8], magic[:]) {
		return nil, corrupt("bad magic %q", pre[:8])
	}
	le := binary.LittleEndian
	major, minor := le.Uint16(pre[8:]), le.Uint16(pre[10:])
	if major != FormatMajor || minor > FormatMinor {
		return nil, fmt.Errorf("%w: %d.%d (this reader: %d.%d)", ErrVersion, major, minor, FormatMajor, FormatMinor)
	}
	hl, pl, dl := uint64(le.Uint32(pre[12:])), le.Uint64(pre[16:]), le.Uint64(pre[24:])
	if hl > maxHeader || pl > maxPayload || dl > maxDiff || int64(preambleSize+hl+pl+dl+32) != size {
		return nil, corrupt("lengths %d+%d+%d do not fit a file of %d bytes", hl, pl, dl, size)
	}
	body := make([]byte, hl+pl+dl+32)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, corrupt("truncated: %v", err)
	}
	sum := sha256.New()
	sum.Write(pre[:])
	sum.Write(body[:hl+pl+dl])
	s := sum.Sum(nil)
	if !bytes.Equal(s, body[hl+pl+dl:]) {
		return nil, corrupt("checksum mismatch")
	}
	f := &File{Digest: "sha256-" + hex.EncodeToString(s), Size: size}
	if err := json.Unmarshal(body[:hl], &f.Header); err != nil {
		return nil, corrupt("header: %v", err)
	}
	f.State = &unikernel.VMState{}
	if err := json.Unmarshal(body[hl:hl+pl], f.State); err != nil {
		return nil, corrupt("state: %v", err)
	}
	if err := f.State.Validate(); err != nil {
		return nil, corrupt("%v", err)
	}
	runs, err := decodeDiff(body[hl+pl:hl+pl+dl], f.State.AddressSpace)
	if err != nil {
		return nil, corrupt("diff: %v", err)
	}
	f.Runs = runs
	switch f.Header.Type {
	case TypeRuntime:
		for _, r := range runs {
			if !r.InFile {
				return nil, corrupt("runtime snapshot with a page diff")
			}
		}
	case TypeFunction:
		if f.Header.ParentID == "" || f.Header.ParentDigest == "" {
			return nil, corrupt("function snapshot without a parent")
		}
		for _, r := range runs {
			if r.InFile {
				return nil, corrupt("function snapshot with memory-file pages")
			}
		}
	default:
		return nil, corrupt("type %q", f.Header.Type)
	}
	return f, nil
}

func decodeDiff(d []byte, space uint64) ([]Run, error) {
	le := binary.LittleEndian
	if len(d) < 4 {
		return nil, errors.New("short")
	}
	n := uint64(le.Uint32(d))
	d = d[4:]
	if n > maxRuns || n*16 > uint64(len(d)) {
		return nil, fmt.Errorf("%d runs", n)
	}
	runs := make([]Run, n)
	prev := uint64(0)
	var pages uint64
	for i := range runs {
		r := &runs[i]
		r.Addr, r.Pages = le.Uint64(d), le.Uint32(d[8:])
		flags := le.Uint32(d[12:])
		d = d[16:]
		if flags&^3 != 0 || flags == 3 || r.Pages == 0 || r.Addr%unikernel.PageSize != 0 || r.Addr < prev {
			return nil, fmt.Errorf("run %d", i)
		}
		end := r.Addr + uint64(r.Pages)*unikernel.PageSize
		if end > space || end < r.Addr {
			return nil, fmt.Errorf("run %d past the address space", i)
		}
		prev = end
		r.Zero, r.InFile = flags&1 != 0, flags&2 != 0
		if !r.Zero && !r.InFile {
			pages += uint64(r.Pages)
		}
	}
	if pages*36 != uint64(len(d)) {
		return nil, fmt.Errorf("%d page references in %d bytes", pages, len(d))
	}
	for i := range runs {
		r := &runs[i]
		if r.Zero || r.InFile {
			continue
		}
		r.Slots = make([]uint32, r.Pages)
		r.Hashes = make([][32]byte, r.Pages)
		for j := range r.Slots {
			r.Slots[j] = le.Uint32(d)
			copy(r.Hashes[j][:], d[4:36])
			d = d[36:]
		}
	}
	return runs, nil
}

// Pages returns the number of data pages and zero pages of runs.
func Pages(runs []Run) (data, zero uint64) {
	for _, r := range runs {
		if r.Zero {
			zero += uint64(r.Pages)
		} else {
			data += uint64(r.Pages)
		}
	}
	return data, zero
}

// appendChecksum appends the SHA-256 of b (tests build files by hand with it).
func appendChecksum(b []byte) []byte {
	s := sha256.Sum256(b)
	return append(b, s[:]...)
}
