package sharing

import (
	"bytes"
	"hash/maphash"
	"runtime/debug"
)

// The fast index lets PutPages find a page the store already holds without SHA-256 (most
// of a new function's pages: ~93% of them are pages of other functions of the same
// code). A page's fast hash (maphash, seeded at random per store and never written
// anywhere) names a candidate slot; the page is that slot's only if the slot's bytes in
// view equal the page's, and then the slot's recorded SHA-256 is the page's.
//
// The byte comparison, not the fast hash, is what makes a hit safe: a guest that made
// pages whose fast hashes collide (without knowing the seed) only sends them down the
// SHA-256 path. The index is a cache of byHash: an entry names a slot byHash finds (live
// or free but findable) whose page has been written, and leaves with its byHash entry
// (forgetLocked), so a hit gives the slot and hash the SHA-256 look-up would have given.

// newFastHash returns the fast hash of a store: maphash with a fresh random seed.
func newFastHash() func(page []byte) uint64 {
	seed := maphash.MakeSeed()
	return func(page []byte) uint64 { return maphash.Bytes(seed, page) }
}

// fastFindLocked returns the slot holding exactly page, if the fast index names one.
func (s *PageStore) fastFindLocked(f uint64, page []byte) (uint32, bool) {
	sl, ok := s.byFast[f]
	if !ok || int(sl) >= len(s.hashes) {
		return 0, false
	}
	same, faulted := s.sameBytes(sl, page)
	if faulted {
		// pages.dat is shorter than this process wrote it (damaged from outside): the
		// slot cannot be compared, the SHA-256 path decides as it would without the index.
		s.fastForgetLocked(sl)
		return 0, false
	}
	return sl, same
}

// sameBytes compares page with slot sl's bytes through view. The caller holds mu, so the
// slot is not rewritten meanwhile (and pwrite's data is what a MAP_SHARED view reads).
// Touching view past pages.dat's end raises SIGBUS; that (only a truncation from
// outside can cause it: entries past the end are forgotten before Trim cuts) becomes
// faulted instead of the process's death.
func (s *PageStore) sameBytes(sl uint32, page []byte) (same, faulted bool) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(interface{ Addr() uintptr }); !ok {
				panic(r)
			}
			same, faulted = false, true
		}
	}()
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	off := int(sl) * PageSize
	return bytes.Equal(s.view[off:off+PageSize:off+PageSize], page), false
}

// fastNoteLocked records that slot sl (findable by byHash, written) holds the page whose
// fast hash is f. A slot has one entry at most; an entry of another slot under the same
// fast hash (a collision) is replaced.
func (s *PageStore) fastNoteLocked(f uint64, sl uint32) {
	if s.fastOf[sl] != f {
		s.fastForgetLocked(sl)
	}
	s.byFast[f] = sl
	s.fastOf[sl] = f
}

// fastForgetLocked drops slot sl's fast index entry, if it has one.
func (s *PageStore) fastForgetLocked(sl uint32) {
	if s.byFast == nil || int(sl) >= len(s.fastOf) {
		return
	}
	if cur, ok := s.byFast[s.fastOf[sl]]; ok && cur == sl {
		delete(s.byFast, s.fastOf[sl])
	}
}
