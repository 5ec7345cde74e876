package sharing

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// PageSize is the unit of the store.
const PageSize = 4096

// maxSlots caps the store (64 GiB of pages).
const maxSlots = 1 << 24

// ErrBadPage: a page read back does not match its hash (a corrupt store).
var ErrBadPage = errors.New("sharing: page does not match its hash")

// PageStore is a content-addressed store of 4 KiB pages in a directory: pages.dat holds
// the pages at slot*4096; pages.idx is an append-only log of {u32 slot, [32]byte sha256}
// records, the last record of a slot winning. Identical pages are stored once; references
// are counted in memory (the owners, function snapshots, re-count them at start with Ref)
// and a slot whose count falls to zero is reused.
type PageStore struct {
	dir  string
	data *os.File
	idx  *os.File
	// view maps pages.dat read-only (address space for maxSlots pages is reserved once,
	// so it never moves): a restore copies pages out of it without a system call.
	view []byte
	ro   bool // opened read-only (another process owns the store)

	// fastHash is the fast index's hash of a page (fast.go): maphash with this store's
	// random seed; nil for a read-only store, whose slots another process may rewrite.
	// Tests replace it with a fake to cause collisions.
	fastHash func(page []byte) uint64

	mu     sync.Mutex
	byHash map[[32]byte]uint32
	hashes [][32]byte // by slot
	refs   []uint32   // by slot
	free   []uint32
	live   uint64 // slots with refs > 0
	// byFast is the fast index: a page's fast hash to a slot byHash also finds (live or
	// free but findable) and whose bytes were written; fastOf is each slot's fast hash,
	// meaningful only where byFast points back at the slot (one entry per slot at most).
	byFast   map[uint64]uint32
	fastOf   []uint64 // by slot
	fastHits uint64   // pages found by the fast index, for tests
}

// OpenPageStore opens (creating) the store in dir.
func OpenPageStore(dir string) (*PageStore, error) { return openPageStore(dir, false) }

// OpenPageStoreReadOnly opens a store another process may be writing, for reading only:
// nothing is created, truncated or written.
func OpenPageStoreReadOnly(dir string) (*PageStore, error) { return openPageStore(dir, true) }

func openPageStore(dir string, ro bool) (*PageStore, error) {
	flags := os.O_RDWR | os.O_CREATE
	if ro {
		flags = os.O_RDONLY
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("sharing: open page store: %w", err)
	}
	data, err := os.OpenFile(filepath.Join(dir, "pages.dat"), flags, 0o644)
	if err != nil {
		return nil, fmt.Errorf("sharing: open page store: %w", err)
	}
	idx, err := os.OpenFile(filepath.Join(dir, "pages.idx"), flags, 0o644)
	if err != nil {
		data.Close()
		return nil, fmt.Errorf("sharing: open page store: %w", err)
	}
	s := &PageStore{dir: dir, data: data, idx: idx, byHash: map[[32]byte]uint32{}, ro: ro}
	if !ro {
		s.fastHash = newFastHash()
		s.byFast = map[uint64]uint32{}
	}
	s.view, err = unix.Mmap(int(data.Fd()), 0, maxSlots*PageSize, unix.PROT_READ, unix.MAP_SHARED|unix.MAP_NORESERVE)
	if err != nil {
		data.Close()
		idx.Close()
		return nil, fmt.Errorf("sharing: map page store: %w", err)
	}
	if err := s.load(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *PageStore) load() error {
	st, err := s.data.Stat()
	if err != nil {
		return err
	}
	slots := uint64(st.Size()) / PageSize
	if slots > maxSlots {
		return fmt.Errorf("sharing: page store of %d pages", slots)
	}
	b, err := io.ReadAll(io.LimitReader(s.idx, 36*maxSlots*4))
	if err != nil {
		return fmt.Errorf("sharing: read page index: %w", err)
	}
	n := len(b) / 36
	if len(b)%36 != 0 && !s.ro {
		// A torn last record: drop it.
		if err := s.idx.Truncate(int64(n * 36)); err != nil {
			return err
		}
	}
	if !s.ro {
		if _, err := s.idx.Seek(int64(n*36), io.SeekStart); err != nil {
			return err
		}
	}
	s.hashes = make([][32]byte, slots)
	known := make([]bool, slots)
	for i := 0; i < n; i++ {
		r := b[36*i:]
		slot := binary.LittleEndian.Uint32(r)
		if uint64(slot) >= slots {
			continue // the page itself never made it to disk
		}
		copy(s.hashes[slot][:], r[4:36])
		known[slot] = true
	}
	s.refs = make([]uint32, slots)
	// The fast index starts empty (filling it would read every page): a page found by its
	// SHA-256 enters it.
	s.fastOf = make([]uint64, slots)
	for slot := range s.hashes {
		if known[slot] {
			s.byHash[s.hashes[slot]] = uint32(slot)
		}
	}
	return nil
}

// Ref counts a reference to each slot whose hash matches; it is how owners loaded at
// start claim their pages. It returns false if a slot is unknown or holds another page.
func (s *PageStore) Ref(slots []uint32, hashes [][32]byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, sl := range slots {
		if int(sl) >= len(s.hashes) || s.hashes[sl] != hashes[i] {
			return false
		}
	}
	for _, sl := range slots {
		if s.refs[sl] == 0 {
			s.live++
		}
		s.refs[sl]++
	}
	return true
}

// Sweep makes every unreferenced slot free (after the owners have claimed theirs).
func (s *PageStore) Sweep() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.free = s.free[:0]
	for sl, r := range s.refs {
		if r == 0 {
			s.free = append(s.free, uint32(sl))
			s.forgetLocked(uint32(sl))
		}
	}
}

// Put stores a page (or finds it stored) and counts a reference to it.
func (s *PageStore) Put(page []byte) (uint32, [32]byte, error) {
	if len(page) != PageSize {
		return 0, [32]byte{}, fmt.Errorf("sharing: put: page of %d bytes", len(page))
	}
	slots, hashes, err := s.PutPages(page)
	if err != nil {
		return 0, [32]byte{}, err
	}
	return slots[0], hashes[0], nil
}

// PutPages stores consecutive pages (a multiple of PageSize bytes) as Put does one by
// one, and returns their slots and hashes: each page gets one reference. The new pages are
// written with one pwrite per run of consecutive slots and the index records with one
// write (Put of each new page would cost two system calls; a call without new pages
// makes none).
//
// A page the fast index finds (fast.go) costs a 64-bit hash and a comparison of its bytes
// with the slot's, no SHA-256; the others are hashed with SHA-256 outside the lock and
// then found by their SHA-256 or stored.
func (s *PageStore) PutPages(pages []byte) ([]uint32, [][32]byte, error) {
	if len(pages)%PageSize != 0 {
		return nil, nil, fmt.Errorf("sharing: put: %d bytes is not whole pages", len(pages))
	}
	n := len(pages) / PageSize
	pageAt := func(i int) []byte { return pages[i*PageSize : (i+1)*PageSize] }
	hs := make([][32]byte, n)
	slots := make([]uint32, n)
	var fh []uint64
	if s.fastHash != nil {
		fh = make([]uint64, n)
		for i := range fh {
			fh[i] = s.fastHash(pageAt(i))
		}
	}
	taken := make([]uint32, 0, n) // slots this call holds a reference to, for fail
	var miss []int                // pages the fast index did not find, in order
	s.mu.Lock()
	if fh == nil {
		miss = make([]int, n)
		for i := range miss {
			miss[i] = i
		}
	} else {
		for i := range n {
			sl, ok := s.fastFindLocked(fh[i], pageAt(i))
			if !ok {
				miss = append(miss, i)
				continue
			}
			s.takeLocked(sl)
			taken = append(taken, sl)
			slots[i], hs[i] = sl, s.hashes[sl]
		}
		s.fastHits += uint64(len(taken))
	}
	if len(miss) == 0 {
		s.mu.Unlock()
		return slots, hs, nil
	}
	// Hash the rest without the lock: another call may store one of them meanwhile, which
	// the look-up by SHA-256 below finds.
	s.mu.Unlock()
	for _, i := range miss {
		hs[i] = sha256.Sum256(pageAt(i))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var local map[[32]byte]uint32 // pages new in this call
	var fresh []int               // their indexes, in order
	fail := func(err error) ([]uint32, [][32]byte, error) {
		s.releaseLocked(taken)
		return nil, nil, err
	}
	// Stored pages first, then new ones: a free slot whose page this call revives is
	// never taken for a new page of the same call (found by either index, a page gets
	// the same slot).
	rest := miss[:0] // pages not stored
	for _, i := range miss {
		if sl, ok := s.byHash[hs[i]]; ok {
			s.takeLocked(sl)
			taken = append(taken, sl)
			slots[i] = sl
			if fh != nil {
				s.fastNoteLocked(fh[i], sl)
			}
			continue
		}
		rest = append(rest, i)
	}
	for _, i := range rest {
		h := hs[i]
		if sl, ok := local[h]; ok {
			s.refs[sl]++
			taken = append(taken, sl)
			slots[i] = sl
			continue
		}
		var sl uint32
		if k := len(s.free); k > 0 {
			sl = s.free[k-1]
			s.free = s.free[:k-1]
		} else {
			if len(s.hashes) >= maxSlots {
				return fail(errors.New("sharing: page store full"))
			}
			sl = uint32(len(s.hashes))
			s.hashes = append(s.hashes, [32]byte{})
			s.refs = append(s.refs, 0)
			s.fastOf = append(s.fastOf, 0)
		}
		// The slot's old page is about to be overwritten: no longer findable, by either
		// index (even if the write below fails half-way).
		s.forgetLocked(sl)
		s.hashes[sl] = h
		s.refs[sl] = 1
		s.live++
		taken = append(taken, sl)
		if local == nil {
			local = map[[32]byte]uint32{}
		}
		local[h] = sl
		fresh = append(fresh, i)
		slots[i] = sl
	}
	for j := 0; j < len(fresh); {
		k := j + 1
		for k < len(fresh) && fresh[k] == fresh[k-1]+1 && slots[fresh[k]] == slots[fresh[k-1]]+1 {
			k++
		}
		if _, err := s.data.WriteAt(pages[fresh[j]*PageSize:(fresh[k-1]+1)*PageSize], int64(slots[fresh[j]])*PageSize); err != nil {
			return fail(fmt.Errorf("sharing: write page: %w", err))
		}
		j = k
	}
	if len(fresh) > 0 {
		rec := make([]byte, 36*len(fresh))
		for j, i := range fresh {
			binary.LittleEndian.PutUint32(rec[36*j:], slots[i])
			copy(rec[36*j+4:], hs[i][:])
		}
		if _, err := s.idx.Write(rec); err != nil {
			return fail(fmt.Errorf("sharing: write page index: %w", err))
		}
	}
	// Only now, written, are the new pages findable.
	for _, i := range fresh {
		s.byHash[hs[i]] = slots[i]
		if fh != nil {
			s.fastNoteLocked(fh[i], slots[i])
		}
	}
	return slots, hs, nil
}

// takeLocked counts a reference to a stored slot (reviving it if it was free).
func (s *PageStore) takeLocked(sl uint32) {
	if s.refs[sl] == 0 {
		s.live++
		s.dropFreeLocked(sl)
	}
	s.refs[sl]++
}

// forgetLocked makes the slot's page unfindable (by SHA-256 and by fast hash), before the
// slot is overwritten or cut off.
func (s *PageStore) forgetLocked(sl uint32) {
	if cur, ok := s.byHash[s.hashes[sl]]; ok && cur == sl {
		delete(s.byHash, s.hashes[sl])
	}
	s.fastForgetLocked(sl)
}

func (s *PageStore) dropFreeLocked(sl uint32) {
	for i, f := range s.free {
		if f == sl {
			s.free = append(s.free[:i], s.free[i+1:]...)
			return
		}
	}
}

// Release drops one reference to each slot.
func (s *PageStore) Release(slots []uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.releaseLocked(slots)
}

func (s *PageStore) releaseLocked(slots []uint32) {
	for _, sl := range slots {
		if int(sl) >= len(s.refs) || s.refs[sl] == 0 {
			continue
		}
		s.refs[sl]--
		if s.refs[sl] == 0 {
			s.live--
			s.free = append(s.free, sl)
			// The hash stays findable until the slot is reused: a page put again soon
			// (the same function cached again) is found without a write.
		}
	}
}

// Refs returns how many owners hold the slot.
func (s *PageStore) Refs(sl uint32) uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if int(sl) >= len(s.refs) {
		return 0
	}
	return s.refs[sl]
}

// Fd is pages.dat's descriptor, for mapping pages copy-on-write.
func (s *PageStore) Fd() int { return int(s.data.Fd()) }

// Copy copies the pages at slots into dst (guest memory), one page per slot.
func (s *PageStore) Copy(dst []byte, slots []uint32) error {
	s.mu.Lock()
	n := uint32(len(s.hashes))
	s.mu.Unlock()
	if len(dst) != len(slots)*PageSize {
		return fmt.Errorf("sharing: copy %d pages into %d bytes", len(slots), len(dst))
	}
	for i, sl := range slots {
		if sl >= n {
			return fmt.Errorf("sharing: slot %d past the store's %d pages", sl, n)
		}
		copy(dst[i*PageSize:(i+1)*PageSize], s.view[int(sl)*PageSize:(int(sl)+1)*PageSize])
	}
	return nil
}

// ReadRun reads len(dst)/PageSize pages at consecutive slots into dst.
func (s *PageStore) ReadRun(dst []byte, first uint32) error {
	for len(dst) > 0 {
		n, err := unix.Pread(int(s.data.Fd()), dst, int64(first)*PageSize)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("sharing: read pages: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("sharing: read pages: %w", io.ErrUnexpectedEOF)
		}
		dst = dst[n:]
		first += uint32(n / PageSize)
		if n%PageSize != 0 {
			return fmt.Errorf("sharing: read pages: short read")
		}
	}
	return nil
}

// Verify reads a slot and checks it against its hash.
func (s *PageStore) Verify(sl uint32, h [32]byte) error {
	var b [PageSize]byte
	if err := s.ReadRun(b[:], sl); err != nil {
		return err
	}
	if sha256.Sum256(b[:]) != h {
		return fmt.Errorf("%w: slot %d", ErrBadPage, sl)
	}
	return nil
}

// StoreStats describes the store.
type StoreStats struct {
	Slots, Live, Free uint64
	// FileBytes is pages.dat's size; LiveBytes the pages in use.
	FileBytes, LiveBytes int64
}

// Stats returns the store's numbers.
func (s *PageStore) Stats() StoreStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return StoreStats{Slots: uint64(len(s.hashes)), Live: s.live, Free: uint64(len(s.free)),
		FileBytes: int64(len(s.hashes)) * PageSize, LiveBytes: int64(s.live) * PageSize}
}

// Close closes the files.
func (s *PageStore) Close() error {
	var err error
	if s.view != nil {
		err = unix.Munmap(s.view)
		s.view = nil
	}
	return errors.Join(err, s.data.Close(), s.idx.Close())
}

// Attribution splits a set of slots (one owner's pages) into the bytes only this owner
// holds and the bytes it shares with other owners, and its proportional share (each page
// divided by its number of owners), in bytes.
func (s *PageStore) Attribution(slots []uint32) (private, shared, proportional int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var pss float64
	for _, sl := range slots {
		if int(sl) >= len(s.refs) || s.refs[sl] == 0 {
			continue
		}
		if s.refs[sl] == 1 {
			private += PageSize
		} else {
			shared += PageSize
		}
		pss += PageSize / float64(s.refs[sl])
	}
	return private, shared, int64(pss)
}

// Trim cuts free pages off the end of pages.dat and rewrites pages.idx with one record
// per live page (written to a temporary file and renamed). It returns the bytes freed.
func (s *PageStore) Trim() (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.refs)
	for n > 0 && s.refs[n-1] == 0 {
		n--
	}
	freed := int64(len(s.refs)-n) * PageSize
	tmp, err := os.CreateTemp(s.dir, ".tmp-idx-")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	buf := make([]byte, 0, 36*n)
	for sl := 0; sl < n; sl++ {
		if s.refs[sl] == 0 {
			continue
		}
		var rec [36]byte
		binary.LittleEndian.PutUint32(rec[:], uint32(sl))
		copy(rec[4:], s.hashes[sl][:])
		buf = append(buf, rec[:]...)
	}
	if _, err := tmp.Write(buf); err != nil {
		tmp.Close()
		return 0, err
	}
	if err := tmp.Close(); err != nil {
		return 0, err
	}
	// The tail's pages stop being findable before they are cut off (a page found in a
	// slot past the file's end could be neither read nor compared), whatever fails next.
	for sl := n; sl < len(s.hashes); sl++ {
		s.forgetLocked(uint32(sl))
	}
	if err := s.data.Truncate(int64(n) * PageSize); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(s.dir, "pages.idx")); err != nil {
		return 0, err
	}
	idx, err := os.OpenFile(filepath.Join(s.dir, "pages.idx"), os.O_RDWR|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	s.idx.Close()
	s.idx = idx
	s.hashes, s.refs, s.fastOf = s.hashes[:n], s.refs[:n], s.fastOf[:n]
	s.free = s.free[:0]
	for sl := 0; sl < n; sl++ {
		if s.refs[sl] == 0 {
			s.free = append(s.free, uint32(sl))
			s.forgetLocked(uint32(sl))
		}
	}
	return freed, nil
}
