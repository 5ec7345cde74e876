package snapshots

import (
	"bufio"
	"bytes"
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/seuss-go/seuss/sharing"
	"github.com/seuss-go/seuss/unikernel"
)

// Store is the snapshot directory (--snapshot-dir) and its in-memory index:
//
//	<dir>/runtimes/<id>.snap    runtime snapshot state (format.go)
//	<dir>/runtimes/<id>.mem     its memory: a sparse file, offset = guest address
//	<dir>/functions/seg-<seq>.log  the function log (funclog.go): function snapshot
//	                            states (state + page diff) as appended records, <seq>
//	                            8 digits, the last segment the one appended to
//	<dir>/functions/<id>.snap   a function snapshot's state file, as stores before the
//	                            log wrote them (still read, never written)
//	<dir>/pages/                the content-addressed page store (package sharing)
//
// Every snapshot is decoded (and checked) when the store opens; function snapshots whose
// parent is missing or different are deleted. Function snapshots are kept under a byte
// budget, least recently used evicted first. Runtime state files are written unnamed and
// linked in, so a crash leaves either nothing or a whole file; function snapshot states
// are appended to the log without fsync. A torn state fails its checksum: a crash can
// lose the newest snapshots but never make one run wrong.
type Store struct {
	dir   string
	pages *sharing.PageStore
	log   *slog.Logger
	lock  *os.File
	// readOnly: opened for listing while another process may own the directory; nothing
	// is deleted, evicted or written.
	readOnly bool

	mu       sync.Mutex
	runtimes map[string]*RuntimeSnapshot // by id
	funcs    map[string]*FunctionSnapshot
	lru      *list.List // *FunctionSnapshot, most recent at the front
	budget   int64
	// stateBytes sums the function snapshots' states (log records or files); with the page store's live
	// pages (each counted once, however many snapshots share it) it is what the budget
	// bounds: the cache's real footprint.
	stateBytes int64

	// logMu serializes the function log's writes, rotation and compaction (taken before
	// mu, never while holding it). active is the segment appended to, the last of segs
	// (nil read-only); segs, oldest first, change under both locks.
	logMu  sync.Mutex
	active *os.File
	segs   []*segment
}

// usedLocked is the cache's footprint: state files plus live pages.
func (s *Store) usedLocked() int64 { return s.stateBytes + s.pages.Stats().LiveBytes }

// RuntimeSnapshot is a kind's runtime snapshot.
type RuntimeSnapshot struct {
	ID   string
	File *File
	mem  *os.File
	// verified: the memory file's pages matched MemoryDigest in this process.
	mu       sync.Mutex
	verified bool
	ranges   [][2]uint64
	view     []byte // the memory file mapped read-only (PutFunction compares pages)
	Hits     uint64
}

// page returns the runtime image's page at addr (a read-only view of the memory file).
func (r *RuntimeSnapshot) page(addr uint64) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.view == nil {
		v, err := unix.Mmap(int(r.mem.Fd()), 0, int(r.size()), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			return nil, err
		}
		r.view = v
	}
	if addr+unikernel.PageSize > uint64(len(r.view)) {
		return nil, fmt.Errorf("snapshots: page %#x outside the runtime image", addr)
	}
	return r.view[addr : addr+unikernel.PageSize], nil
}

func (r *RuntimeSnapshot) close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.view != nil {
		unix.Munmap(r.view)
		r.view = nil
	}
	return r.mem.Close()
}

// FunctionSnapshot is one action's function snapshot.
type FunctionSnapshot struct {
	ID       string
	File     *File
	Bytes    int64 // state (record or file) + the data pages it references (shared ones in full)
	Hits     uint64
	LastUsed time.Time
	elem     *list.Element
	verified bool
	slots    []uint32
	rec      recLoc // where its state is stored; rec.n its size
	// pins counts the restores reading its pages (Acquire); unlinked says the store let
	// go of it. Its slots are released when both hold: a slot released while a restore
	// copies from it can be taken by a concurrent PutPages and overwritten with another
	// snapshot's page, which the restore then loads.
	pins     int
	unlinked bool
}

// ErrInUse: another process has the snapshot directory open for writing.
var ErrInUse = errors.New("snapshots: snapshot directory in use by another process")

// OpenStore opens (creating) a snapshot directory with a byte budget for function
// snapshots (0: 1 GiB). One process at a time owns a directory (an flock on dir/lock).
func OpenStore(dir string, budget int64, log *slog.Logger) (*Store, error) {
	return openStore(dir, budget, log, false)
}

// OpenStoreReadOnly opens a snapshot directory for listing and inspection, even while an
// invoker owns it: nothing is deleted or written, unusable snapshots are only skipped.
func OpenStoreReadOnly(dir string) (*Store, error) {
	if _, err := os.Stat(filepath.Join(dir, "runtimes")); err != nil {
		return nil, fmt.Errorf("snapshots: %s is not a snapshot directory: %w", dir, err)
	}
	return openStore(dir, 1<<62, nil, true)
}

func openStore(dir string, budget int64, log *slog.Logger, readOnly bool) (*Store, error) {
	if budget <= 0 {
		budget = 1 << 30
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{dir: dir, log: log, readOnly: readOnly, runtimes: map[string]*RuntimeSnapshot{}, funcs: map[string]*FunctionSnapshot{}, lru: list.New(), budget: budget}
	if !readOnly {
		for _, d := range []string{"runtimes", "functions"} {
			if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
				return nil, fmt.Errorf("snapshots: open store: %w", err)
			}
		}
		lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("snapshots: open store: %w", err)
		}
		if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			lock.Close()
			return nil, fmt.Errorf("%w: %s", ErrInUse, dir)
		}
		s.lock = lock
	}
	open := sharing.OpenPageStore
	if readOnly {
		open = sharing.OpenPageStoreReadOnly
	}
	pages, err := open(filepath.Join(dir, "pages"))
	if err != nil {
		if s.lock != nil {
			s.lock.Close()
		}
		return nil, err
	}
	s.pages = pages
	if err := s.load(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the store's files.
func (s *Store) Close() error {
	var errs []error
	s.logMu.Lock()
	if s.active != nil {
		errs = append(errs, s.active.Close())
		s.active = nil
	}
	s.logMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.runtimes {
		errs = append(errs, r.close())
	}
	errs = append(errs, s.pages.Close())
	if s.lock != nil {
		errs = append(errs, s.lock.Close())
	}
	return errors.Join(errs...)
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// Pages is the page store.
func (s *Store) Pages() *sharing.PageStore { return s.pages }

func readFile(p string) (*File, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return Decode(bufio.NewReaderSize(f, 1<<20), st.Size())
}

func (s *Store) load() error {
	rdir := filepath.Join(s.dir, "runtimes")
	ents, _ := os.ReadDir(rdir)
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".tmp") {
			s.remove(filepath.Join(rdir, name))
			continue
		}
		id, ok := strings.CutSuffix(name, ".snap")
		if !ok {
			if id, ok := strings.CutSuffix(name, ".mem"); ok {
				if _, err := os.Stat(filepath.Join(rdir, id+".snap")); err != nil {
					s.remove(filepath.Join(rdir, name))
				}
			}
			continue
		}
		f, err := readFile(filepath.Join(rdir, name))
		if err == nil && (f.Header.Type != TypeRuntime || f.Header.ID != id) {
			err = fmt.Errorf("%w: %s is not runtime snapshot %s", ErrMismatch, name, id)
		}
		var mem *os.File
		if err == nil {
			mem, err = os.Open(filepath.Join(rdir, id+".mem"))
		}
		if err != nil {
			s.log.Warn("snapshots: deleting unusable runtime snapshot", "id", id, "err", err)
			if !s.readOnly {
				s.removeRuntimeFiles(id)
			}
			continue
		}
		s.runtimes[id] = &RuntimeSnapshot{ID: id, File: f, mem: mem}
	}
	fs, err := s.loadFunctions()
	if err != nil {
		return err
	}
	if !s.readOnly {
		s.pages.Sweep()
	}
	// Most recent first; equal times keep the log's order, newest first.
	sort.SliceStable(fs, func(i, j int) bool { return fs[i].LastUsed.After(fs[j].LastUsed) })
	s.mu.Lock()
	for _, f := range fs {
		s.linkLocked(f, false)
	}
	victims := s.evictLocked()
	s.mu.Unlock()
	s.logMu.Lock()
	s.dropLocked(victims)
	s.compactLocked()
	s.logMu.Unlock()
	return nil
}

// loadFunctions replays the function log and reads the state files of earlier stores;
// it returns the usable function snapshots, newest record first, their pages counted
// (Ref), and opens the active segment. Unusable ones are logged and deleted.
func (s *Store) loadFunctions() ([]*FunctionSnapshot, error) {
	fdir := filepath.Join(s.dir, "functions")
	ents, _ := os.ReadDir(fdir)
	legacy := map[string]os.DirEntry{}
	var seqs []uint32
	for _, e := range ents {
		name := e.Name()
		if id, ok := strings.CutSuffix(name, ".snap"); ok && !strings.HasPrefix(name, ".") {
			legacy[id] = e
		} else if seq, ok := parseSegName(name); ok {
			seqs = append(seqs, seq)
		} else {
			s.remove(filepath.Join(fdir, name))
		}
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })

	// Replay: the last record of an id wins (nil: deleted). Each segment stays open until
	// its winners are decoded, so a compaction by the owner of the directory, while this
	// read-only store replays, cannot take a segment away halfway.
	last := map[string]*recLoc{}
	var order []string // ids by their last record, oldest first
	files := map[*segment]*os.File{}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for i, seq := range seqs {
		g := &segment{seq: seq}
		f, err := os.Open(s.segPath(g))
		if err != nil {
			s.log.Warn("snapshots: skipping unreadable function log segment", "segment", segName(seq), "err", err)
			continue
		}
		files[g] = f
		data, err := readAll(f)
		if err != nil {
			s.log.Warn("snapshots: skipping unreadable function log segment", "segment", segName(seq), "err", err)
			continue
		}
		good, err := scanRecords(data, func(off int, r logRecord) {
			if r.typ == recPut {
				last[r.id] = &recLoc{seg: g, off: int64(off), n: int64(r.n)}
			} else {
				last[r.id] = nil
			}
			order = append(order, r.id)
		})
		g.size = int64(len(data))
		if err != nil && !s.readOnly {
			// (Read-only, a short tail is most likely a record being appended.)
			s.log.Warn("snapshots: function log ends in a damaged record; dropping the rest of the segment",
				"segment", segName(seq), "offset", good, "dropped", len(data)-good, "err", err)
			if i == len(seqs)-1 {
				if terr := os.Truncate(s.segPath(g), int64(good)); terr != nil {
					return nil, fmt.Errorf("snapshots: truncate function log: %w", terr)
				}
				g.size = int64(good)
			}
		}
		s.segs = append(s.segs, g)
	}
	if !s.readOnly {
		if err := s.openActiveLocked(); err != nil {
			return nil, fmt.Errorf("snapshots: open function log: %w", err)
		}
	}

	var fs []*FunctionSnapshot
	var bad []string
	seen := map[string]bool{}
	for i := len(order) - 1; i >= 0; i-- {
		id := order[i]
		loc := last[id]
		if seen[id] || loc == nil {
			seen[id] = true
			continue
		}
		seen[id] = true
		f, slots, err := s.decodeFunction(id, func() (*File, error) {
			b := make([]byte, loc.n)
			if _, err := files[loc.seg].ReadAt(b, loc.off); err != nil {
				return nil, fmt.Errorf("%w: %v", ErrCorruptSnapshot, err)
			}
			r, err := parseRecord(b)
			if err != nil {
				return nil, err
			}
			return Decode(bytes.NewReader(r.payload), int64(len(r.payload)))
		})
		if err != nil {
			s.log.Warn("snapshots: deleting unusable function snapshot", "id", id, "err", err)
			bad = append(bad, id)
			continue
		}
		fs = append(fs, &FunctionSnapshot{ID: id, File: f, Bytes: loc.n + int64(len(slots))*sharing.PageSize,
			LastUsed: f.Header.Created, slots: slots, rec: *loc})
	}
	// State files of stores before the log: read as they were, unless the log has a
	// newer record of the id.
	for id, e := range legacy {
		p := filepath.Join(fdir, e.Name())
		if seen[id] {
			s.remove(p)
			continue
		}
		f, slots, err := s.decodeFunction(id, func() (*File, error) { return readFile(p) })
		if err != nil {
			s.log.Warn("snapshots: deleting unusable function snapshot", "id", id, "err", err)
			s.remove(p)
			continue
		}
		info, _ := e.Info()
		mtime := f.Header.Created
		if info != nil {
			mtime = info.ModTime()
		}
		fs = append(fs, &FunctionSnapshot{ID: id, File: f, Bytes: f.Size + int64(len(slots))*sharing.PageSize,
			LastUsed: mtime, slots: slots, rec: recLoc{n: f.Size}})
	}
	if !s.readOnly && len(bad) > 0 {
		var b []byte
		for _, id := range bad {
			b = appendTombstone(b, id)
		}
		if _, _, err := s.appendLocked(b); err != nil {
			s.log.Warn("snapshots: recording deleted function snapshots", "err", err)
		}
	}
	return fs, nil
}

// decodeFunction reads a function snapshot's state and checks it: its id, its parent,
// and its pages in the page store (counted, Ref, when it is usable).
func (s *Store) decodeFunction(id string, read func() (*File, error)) (*File, []uint32, error) {
	f, err := read()
	if err == nil {
		err = s.checkParent(f)
	}
	if err == nil && (f.Header.Type != TypeFunction || f.Header.ID != id) {
		err = fmt.Errorf("%w: state is not function snapshot %s", ErrMismatch, id)
	}
	if err != nil {
		return nil, nil, err
	}
	var slots []uint32
	var hashes [][32]byte
	for _, r := range f.Runs {
		slots = append(slots, r.Slots...)
		hashes = append(hashes, r.Hashes...)
	}
	if !s.pages.Ref(slots, hashes) {
		return nil, nil, fmt.Errorf("%w: its pages are not in the page store", ErrCorruptSnapshot)
	}
	return f, slots, nil
}

// readAll reads a file from its start to its end as it is now.
func readAll(f *os.File) ([]byte, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	b := make([]byte, st.Size())
	n, err := f.ReadAt(b, 0)
	if err == io.EOF {
		err = nil
	}
	return b[:n], err
}

func (s *Store) remove(p string) {
	if !s.readOnly {
		os.Remove(p)
	}
}

func (s *Store) checkParent(f *File) error {
	if f.Header.Type != TypeFunction {
		return nil
	}
	p := s.runtimes[f.Header.ParentID]
	if p == nil {
		return fmt.Errorf("%w: parent %s is gone", ErrMismatch, f.Header.ParentID)
	}
	if p.File.Digest != f.Header.ParentDigest {
		return fmt.Errorf("%w: parent %s is %s, not %s", ErrMismatch, f.Header.ParentID, p.File.Digest, f.Header.ParentDigest)
	}
	return nil
}

func (s *Store) removeRuntimeFiles(id string) {
	s.remove(filepath.Join(s.dir, "runtimes", id+".snap"))
	s.remove(filepath.Join(s.dir, "runtimes", id+".mem"))
}

// RuntimeID names the runtime snapshot of a kind in a root.
func RuntimeID(kind, rootDigest string) string {
	d := strings.TrimPrefix(rootDigest, "sha256-")
	if len(d) > 16 {
		d = d[:16]
	}
	return "rt-" + strings.NewReplacer(":", "-", "/", "-").Replace(kind) + "-" + d
}

// Runtime returns the runtime snapshot of a kind in a root, or nil.
func (s *Store) Runtime(kind, rootDigest string) *RuntimeSnapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.runtimes[RuntimeID(kind, rootDigest)]
	if r != nil && r.File.Header.RootDigest != rootDigest {
		return nil
	}
	return r
}

// PutRuntime writes a runtime snapshot: the state and the runs of a booted, paused UC's
// memory (MemoryRuns(true)), read from mem.
func (s *Store) PutRuntime(h Header, st *unikernel.VMState, runs []unikernel.PageRun, mem []byte) (*RuntimeSnapshot, error) {
	h.Type, h.ID = TypeRuntime, RuntimeID(h.Kind, h.RootDigest)
	h.Created = time.Now().UTC()
	dir := filepath.Join(s.dir, "runtimes")
	tmp, err := os.CreateTemp(dir, ".tmp-mem-")
	if err != nil {
		return nil, fmt.Errorf("snapshots: write runtime snapshot: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := tmp.Truncate(int64(st.AddressSpace)); err != nil {
		return nil, fmt.Errorf("snapshots: write runtime snapshot: %w", err)
	}
	sum := sha256.New()
	var fruns []Run
	for _, r := range runs {
		if r.Zero {
			continue
		}
		b := mem[r.Addr : r.Addr+r.Pages*unikernel.PageSize]
		if _, err := tmp.WriteAt(b, int64(r.Addr)); err != nil {
			return nil, fmt.Errorf("snapshots: write runtime memory: %w", err)
		}
		sum.Write(b)
		h.MemoryPages += r.Pages
		fruns = append(fruns, Run{Addr: r.Addr, Pages: uint32(r.Pages), InFile: true})
	}
	h.MemoryDigest = "sha256-" + hex.EncodeToString(sum.Sum(nil))
	f, err := s.writeState(dir, h.ID, &h, st, fruns)
	if err != nil {
		return nil, err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, h.ID+".mem")); err != nil {
		return nil, err
	}
	memf, err := os.Open(filepath.Join(dir, h.ID+".mem"))
	if err != nil {
		return nil, err
	}
	r := &RuntimeSnapshot{ID: h.ID, File: f, mem: memf, verified: true}
	s.mu.Lock()
	old := s.runtimes[h.ID]
	s.runtimes[h.ID] = r
	s.mu.Unlock()
	if old != nil {
		old.close()
	}
	return r, nil
}

// writeState encodes a state file to dir/<id>.snap through a temporary file.
func (s *Store) writeState(dir, id string, h *Header, st *unikernel.VMState, runs []Run) (*File, error) {
	buf := stateBufs.Get().(*bytes.Buffer)
	buf.Reset()
	defer stateBufs.Put(buf)
	digest, err := Encode(buf, h, st, runs)
	if err == nil {
		// No fsync: a snapshot lost or torn by a crash is caught by its checksum and made
		// again; syncing would cost every C path milliseconds.
		err = writeFileAtomic(dir, id+".snap", buf.Bytes())
	}
	if err != nil {
		return nil, fmt.Errorf("snapshots: write %s: %w", id, err)
	}
	return &File{Header: *h, State: st, Runs: runs, Digest: digest, Size: int64(buf.Len())}, nil
}

// stateBufs hold encoded state files (tens of KB for a function snapshot).
var stateBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// writeFileAtomic makes dir/name hold b, all or nothing. It writes an unnamed file
// (O_TMPFILE) and links it in: on this machine's ext4 that costs ~0.3 ms of CPU where
// creating a named temporary file and renaming it costs ~0.9 ms, once per C path. Where
// O_TMPFILE is missing, or the name exists, a named temporary file is renamed over it.
func writeFileAtomic(dir, name string, b []byte) error {
	dst := filepath.Join(dir, name)
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
	if err == nil {
		f := os.NewFile(uintptr(fd), dst)
		_, err = f.Write(b)
		if err == nil {
			err = unix.Linkat(fd, "", unix.AT_FDCWD, dst, unix.AT_EMPTY_PATH)
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EPERM) {
				// AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; the /proc link does not.
				err = unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", fd), unix.AT_FDCWD, dst, unix.AT_SYMLINK_FOLLOW)
			}
		}
		f.Close()
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EEXIST) {
			return err
		}
	}
	tmp, err := os.CreateTemp(dir, ".tmp-snap-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(b)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	return err
}

// VerifyMemory checks a runtime snapshot's memory file against its digest, once per
// process; a mismatch is ErrCorruptSnapshot.
func (r *RuntimeSnapshot) VerifyMemory() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.verified {
		return nil
	}
	sum := sha256.New()
	buf := make([]byte, 1<<20)
	var pages uint64
	for _, run := range r.File.Runs {
		n := int64(run.Pages) * unikernel.PageSize
		for off := int64(0); off < n; {
			c := min(n-off, int64(len(buf)))
			if _, err := r.mem.ReadAt(buf[:c], int64(run.Addr)+off); err != nil {
				return fmt.Errorf("%w: memory file: %v", ErrCorruptSnapshot, err)
			}
			sum.Write(buf[:c])
			off += c
		}
		pages += uint64(run.Pages)
	}
	if got := "sha256-" + hex.EncodeToString(sum.Sum(nil)); got != r.File.Header.MemoryDigest || pages != r.File.Header.MemoryPages {
		return fmt.Errorf("%w: memory file digest %s, want %s", ErrCorruptSnapshot, got, r.File.Header.MemoryDigest)
	}
	r.verified = true
	return nil
}

func (r *RuntimeSnapshot) size() uint64 { return r.File.State.AddressSpace }

// MemoryFd is the memory file's descriptor, for GuestMemory.MapFile.
func (r *RuntimeSnapshot) MemoryFd() int { return int(r.mem.Fd()) }

// mapGap: data runs closer than this are mapped as one range.
const mapGap = 4 << 20

// MapRanges are the ranges of the memory file a restore maps: its data runs, merged
// across gaps under 4 MiB. The rest of a fresh VM shell is untouched anonymous memory,
// zero like the file's holes, so it is left as it is: mapping only what holds data costs
// a fraction of remapping the whole guest (the KVM MMU notifier walks the whole range).
func (r *RuntimeSnapshot) MapRanges() [][2]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ranges == nil {
		for _, run := range r.File.Runs {
			end := run.Addr + uint64(run.Pages)*unikernel.PageSize
			if n := len(r.ranges); n > 0 && run.Addr-r.ranges[n-1][1] < mapGap {
				r.ranges[n-1][1] = end
				continue
			}
			r.ranges = append(r.ranges, [2]uint64{run.Addr, end})
		}
		if r.ranges == nil {
			r.ranges = [][2]uint64{}
		}
	}
	return r.ranges
}

// RemoveRuntime deletes a runtime snapshot and every function snapshot over it.
func (s *Store) RemoveRuntime(id string) {
	s.mu.Lock()
	r := s.runtimes[id]
	delete(s.runtimes, id)
	var victims []*FunctionSnapshot
	for _, f := range s.funcs {
		if f.File.Header.ParentID == id {
			victims = append(victims, f)
			s.unlinkLocked(f)
		}
	}
	s.mu.Unlock()
	if r != nil {
		r.close()
	}
	s.removeRuntimeFiles(id)
	s.drop(victims)
}

// FunctionID names an action's function snapshot: the runtime it was made in (kind and
// root), the invoking namespace, the action revision and the init message's digest.
func FunctionID(kind, rootDigest, namespace, fqn, revision, codeDigest, initDigest string) string {
	h := sha256.New()
	for _, p := range []string{kind, rootDigest, namespace, fqn, revision, codeDigest, initDigest} {
		fmt.Fprintf(h, "%d:%s;", len(p), p)
	}
	return "fn-" + hex.EncodeToString(h.Sum(nil))[:40]
}

// Acquire returns a function snapshot by id for a restore (counting a hit), or nil: its
// pages stay in the page store, its slots unreleased, until Release, even if the snapshot
// is replaced (PutFunction of the same id: two C paths of one action captured at once),
// evicted or removed meanwhile.
func (s *Store) Acquire(id string) *FunctionSnapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.funcs[id]
	if f == nil {
		return nil
	}
	f.Hits++
	f.LastUsed = time.Now()
	s.lru.MoveToFront(f.elem)
	f.pins++
	return f
}

// Release ends an Acquire: once no restore reads them, the pages of a snapshot the store
// has let go of are released.
func (s *Store) Release(f *FunctionSnapshot) {
	if f == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.pins--; f.pins < 0 {
		panic("snapshots: Release of a function snapshot not acquired")
	}
	if f.pins == 0 && f.unlinked {
		s.pages.Release(f.slots)
	}
}

// VerifyPages checks, once per process, that a function snapshot's pages in the page
// store match their hashes (a snapshot made by this process is trusted).
func (s *Store) VerifyPages(f *FunctionSnapshot) error {
	s.mu.Lock()
	ok := f.verified
	s.mu.Unlock()
	if ok {
		return nil
	}
	for _, r := range f.File.Runs {
		for i, sl := range r.Slots {
			if err := s.pages.Verify(sl, r.Hashes[i]); err != nil {
				return fmt.Errorf("%w: %v", ErrCorruptSnapshot, err)
			}
		}
	}
	s.mu.Lock()
	f.verified = true
	s.mu.Unlock()
	return nil
}

// PendingRun is a captured run of a function snapshot whose data is still to be stored.
type PendingRun struct {
	unikernel.PageRun
	Data []byte // nil for zero runs
}

// PutFunction stores a function snapshot over parent: its pages go to the page store
// (identical pages stored once), the state file to the function log (a record appended
// to the active segment of functions/, funclog.go). Pages equal to the
// parent's are left out (written with what they held: ~18% of a python init's).
func (s *Store) PutFunction(h Header, parent *RuntimeSnapshot, st *unikernel.VMState, runs []PendingRun) (*FunctionSnapshot, error) {
	runs = dropParentPages(parent, runs)
	h.Type = TypeFunction
	h.ParentID, h.ParentDigest = parent.ID, parent.File.Digest
	h.Kind, h.RootDigest = parent.File.Header.Kind, parent.File.Header.RootDigest
	h.Created = time.Now().UTC()
	var fruns []Run
	var slots []uint32
	fail := func(err error) (*FunctionSnapshot, error) {
		s.pages.Release(slots)
		return nil, fmt.Errorf("snapshots: store function snapshot %s: %w", h.ID, err)
	}
	for _, r := range runs {
		fr := Run{Addr: r.Addr, Pages: uint32(r.Pages), Zero: r.Zero}
		if !r.Zero {
			sls, hashes, err := s.pages.PutPages(r.Data[:r.Pages*unikernel.PageSize])
			if err != nil {
				return fail(err)
			}
			slots = append(slots, sls...)
			fr.Slots, fr.Hashes = sls, hashes
		}
		fruns = append(fruns, fr)
	}
	if err := checkID(h.ID); err != nil {
		return fail(err)
	}
	buf := stateBufs.Get().(*bytes.Buffer)
	defer stateBufs.Put(buf)
	buf.Reset()
	buf.Write(beginRecord(buf.AvailableBuffer(), h.ID))
	digest, err := Encode(buf, &h, st, fruns)
	if err != nil {
		return fail(err)
	}
	rec := buf.Bytes()
	sealRecord(rec, recPut, len(h.ID))
	f := &File{Header: h, State: st, Runs: fruns, Digest: digest, Size: int64(len(rec) - recHeaderSize - len(h.ID))}
	// One write(2) to the active segment; no fsync (a record lost or torn by a crash
	// fails its CRC or checksum and the snapshot is made again; syncing would cost
	// milliseconds per new function).
	s.logMu.Lock()
	defer s.logMu.Unlock()
	g, off, err := s.appendLocked(rec)
	if err != nil {
		return fail(err)
	}
	fs := &FunctionSnapshot{ID: h.ID, File: f, Bytes: int64(len(rec)) + int64(len(slots))*sharing.PageSize, LastUsed: time.Now(),
		verified: true, slots: slots, rec: recLoc{seg: g, off: off, n: int64(len(rec))}}
	s.mu.Lock()
	old := s.funcs[h.ID]
	if old != nil {
		s.unlinkLocked(old)
	}
	s.linkLocked(fs, true)
	victims := s.evictLocked()
	s.mu.Unlock()
	if old != nil && old.rec.seg == nil {
		s.remove(filepath.Join(s.dir, "functions", h.ID+".snap")) // superseded by the record
	}
	s.dropLocked(victims)
	s.compactLocked()
	return fs, nil
}

// linkLocked caches a function snapshot, most recent (front) or least (back).
func (s *Store) linkLocked(f *FunctionSnapshot, front bool) {
	if front {
		f.elem = s.lru.PushFront(f)
	} else {
		f.elem = s.lru.PushBack(f)
	}
	s.funcs[f.ID] = f
	s.stateBytes += f.rec.n
	if f.rec.seg != nil {
		f.rec.seg.live += f.rec.n
	}
}

func (s *Store) unlinkLocked(f *FunctionSnapshot) {
	if s.funcs[f.ID] != f {
		return
	}
	delete(s.funcs, f.ID)
	s.lru.Remove(f.elem)
	s.stateBytes -= f.rec.n
	if f.rec.seg != nil {
		f.rec.seg.live -= f.rec.n
	}
	f.unlinked = true
	if f.pins == 0 {
		s.pages.Release(f.slots)
	}
}

// evictLocked unlinks least recently used function snapshots until the budget holds.
func (s *Store) evictLocked() []*FunctionSnapshot {
	var out []*FunctionSnapshot
	for s.usedLocked() > s.budget && s.lru.Len() > 0 {
		f := s.lru.Back().Value.(*FunctionSnapshot)
		s.unlinkLocked(f)
		out = append(out, f)
	}
	return out
}

// drop deletes unlinked function snapshots (unlinking released their pages).
func (s *Store) drop(fs []*FunctionSnapshot) {
	if len(fs) == 0 || s.readOnly {
		return
	}
	s.logMu.Lock()
	defer s.logMu.Unlock()
	s.dropLocked(fs)
}

// dropLocked deletes unlinked function snapshots: tombstones for log records (one
// write), the files of earlier stores' state files. Holds logMu.
func (s *Store) dropLocked(fs []*FunctionSnapshot) {
	if len(fs) == 0 || s.readOnly {
		return
	}
	var b []byte
	for _, f := range fs {
		if f.rec.seg == nil {
			s.remove(filepath.Join(s.dir, "functions", f.ID+".snap"))
			continue
		}
		b = appendTombstone(b, f.ID)
	}
	if len(b) > 0 {
		if _, _, err := s.appendLocked(b); err != nil {
			// The snapshots come back at the next start, checked as any other.
			s.log.Warn("snapshots: recording deleted function snapshots", "n", len(fs), "err", err)
		}
	}
}

// RemoveFunction deletes a function snapshot (corrupt, or asked to).
func (s *Store) RemoveFunction(id string) bool {
	s.mu.Lock()
	f := s.funcs[id]
	if f != nil {
		s.unlinkLocked(f)
	}
	s.mu.Unlock()
	if f == nil {
		return false
	}
	s.drop([]*FunctionSnapshot{f})
	return true
}

// Entry is one snapshot as listed by `snapshot ls`.
type Entry struct {
	ID, Type, Kind, FQN, Revision, Parent string
	Created                               time.Time
	Hits                                  uint64
	// StateBytes is the state file (a function snapshot's: its log record); MemoryBytes the runtime memory file's data pages or
	// the function diff's data pages; PrivateBytes what only this function snapshot holds
	// in the page store, SharedBytes its pages shared with other function snapshots.
	StateBytes, MemoryBytes, PrivateBytes, SharedBytes int64
	DataPages, ZeroPages                               uint64
}

// List returns every snapshot, runtimes first, then functions by recency.
func (s *Store) List() []Entry {
	s.mu.Lock()
	var rs []*RuntimeSnapshot
	for _, r := range s.runtimes {
		rs = append(rs, r)
	}
	var fs []*FunctionSnapshot
	for e := s.lru.Front(); e != nil; e = e.Next() {
		fs = append(fs, e.Value.(*FunctionSnapshot))
	}
	s.mu.Unlock()
	sort.Slice(rs, func(i, j int) bool { return rs[i].ID < rs[j].ID })
	var out []Entry
	for _, r := range rs {
		h := r.File.Header
		out = append(out, Entry{ID: r.ID, Type: TypeRuntime, Kind: h.Kind, Created: h.Created, Hits: r.Hits,
			StateBytes: r.File.Size, MemoryBytes: int64(h.MemoryPages) * unikernel.PageSize, DataPages: h.MemoryPages})
	}
	for _, f := range fs {
		h := f.File.Header
		data, zero := Pages(f.File.Runs)
		priv, shared, _ := s.pages.Attribution(f.slots)
		out = append(out, Entry{ID: f.ID, Type: TypeFunction, Kind: h.Kind, FQN: h.FQN, Revision: h.Revision, Parent: h.ParentID,
			Created: h.Created, Hits: f.Hits, StateBytes: f.rec.n, MemoryBytes: int64(data) * unikernel.PageSize,
			PrivateBytes: priv + f.rec.n, SharedBytes: shared, DataPages: data, ZeroPages: zero})
	}
	return out
}

// Usage is the budget's state: the cache's footprint (state files and live pages, each
// page once), the budget, and the number of function snapshots.
func (s *Store) Usage() (used, budget int64, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.usedLocked(), s.budget, len(s.funcs)
}

// FunctionPrivateBytes returns, for each cached function snapshot, the bytes it holds
// of its own (state file and pages no other function snapshot shares).
func (s *Store) FunctionPrivateBytes() []int64 {
	var out []int64
	for _, e := range s.List() {
		if e.Type == TypeFunction {
			out = append(out, e.PrivateBytes)
		}
	}
	return out
}

// GC evicts function snapshots past budget (0: the store's), then compacts the page
// store (trailing free pages are cut off the file, the index rewritten); it returns the
// number of snapshots evicted and the bytes the page file shrank by. Run it on a store
// this process owns (OpenStore).
func (s *Store) GC(budget int64) (evicted int, freed int64, err error) {
	if s.readOnly {
		return 0, 0, fmt.Errorf("snapshots: gc on a read-only store")
	}
	s.mu.Lock()
	if budget > 0 {
		s.budget = budget
	}
	victims := s.evictLocked()
	s.mu.Unlock()
	s.logMu.Lock()
	s.dropLocked(victims)
	s.compactLocked()
	s.logMu.Unlock()
	freed, err = s.pages.Trim()
	return len(victims), freed, err
}

// HasRuntime reports whether a runtime snapshot of that id is in the store.
func (s *Store) HasRuntime(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runtimes[id] != nil
}

// Inspect returns the decoded state file of a snapshot by id.
func (s *Store) Inspect(id string) (*File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.runtimes[id]; r != nil {
		return r.File, nil
	}
	if f := s.funcs[id]; f != nil {
		return f.File, nil
	}
	return nil, fmt.Errorf("snapshots: no snapshot %s", id)
}

// dropParentPages splits data runs around pages equal to the parent's at the same
// address (a restore maps the parent there anyway).
func dropParentPages(parent *RuntimeSnapshot, runs []PendingRun) []PendingRun {
	const ps = unikernel.PageSize
	var out []PendingRun
	for _, r := range runs {
		if r.Zero {
			out = append(out, r)
			continue
		}
		start := -1
		for i := uint64(0); i <= r.Pages; i++ {
			keep := false
			if i < r.Pages {
				p, err := parent.page(r.Addr + i*ps)
				keep = err != nil || !bytes.Equal(p, r.Data[i*ps:(i+1)*ps])
			}
			switch {
			case keep && start < 0:
				start = int(i)
			case !keep && start >= 0:
				a := uint64(start)
				out = append(out, PendingRun{PageRun: unikernel.PageRun{Addr: r.Addr + a*ps, Pages: i - a}, Data: r.Data[a*ps : i*ps]})
				start = -1
			}
		}
	}
	return out
}
