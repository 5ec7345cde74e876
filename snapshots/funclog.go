package snapshots

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The function log: function snapshots' states are records appended to segment files,
// functions/seg-<8-digit seq>.log, instead of a file each (creating an inode per function
// snapshot cost ~0.7 ms of CPU on ext4 while the activation store fdatasyncs on the same
// file system). A record, little endian:
//
//	offset  size  field
//	0       4     magic "SFNR"
//	4       1     type: 1 put, 2 delete (a tombstone)
//	5       1     id length L (1..255)
//	6       2     reserved, 0
//	8       4     payload length P (put: the state file's size; delete: 0)
//	12      4     CRC-32C (Castagnoli) of bytes 0..11, the id and the payload
//	16      L     the function snapshot's id
//	16+L    P     put: the state file, exactly as Encode writes it (with its own SHA-256)
//
// Each record is one write(2) to the newest (active) segment, opened O_APPEND, without
// fsync. Opening the store replays the segments in order: the last record of an id wins,
// a tombstone deletes. A short or damaged record ends its segment's replay (the active
// segment is truncated to the record before it): a crash can lose the newest records,
// and what is replayed is still checked as a state file was (checksum, parent, pages),
// so a lost or torn record is made again and never run. Segments are sealed at
// segmentMax; a sealed segment whose live records fill at most half of it is compacted:
// its live records (and, unless it is the oldest segment, its tombstones of ids not
// cached) are copied to the active segment in one write, and it is deleted.

// Record types.
const (
	recPut    = 1
	recDelete = 2
)

const (
	recHeaderSize = 16
	// maxRecordPayload caps a put's payload: the largest state file Decode accepts.
	maxRecordPayload = preambleSize + maxHeader + maxPayload + maxDiff + 32
)

// segmentMax: a segment this large is sealed and a new one started (~650 python states).
// It also bounds what one compaction reads. A variable for tests.
var segmentMax int64 = 16 << 20

var recMagic = [4]byte{'S', 'F', 'N', 'R'}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var (
	// errShortRecord: the data ends inside a record (a torn write, or one being appended).
	errShortRecord = fmt.Errorf("%w: short function log record", ErrCorruptSnapshot)
	// errBadRecord: a record whose framing or CRC is wrong.
	errBadRecord = fmt.Errorf("%w: damaged function log record", ErrCorruptSnapshot)
)

// beginRecord appends a record's header space and id to b; the payload follows, then
// sealRecord fills in the header.
func beginRecord(b []byte, id string) []byte {
	b = append(b, make([]byte, recHeaderSize)...)
	return append(b, id...)
}

// sealRecord fills in the header of the record b (header, id, payload).
func sealRecord(b []byte, typ byte, idLen int) {
	copy(b, recMagic[:])
	b[4], b[5], b[6], b[7] = typ, byte(idLen), 0, 0
	binary.LittleEndian.PutUint32(b[8:], uint32(len(b)-recHeaderSize-idLen))
	c := crc32.Update(0, castagnoli, b[:12])
	c = crc32.Update(c, castagnoli, b[recHeaderSize:])
	binary.LittleEndian.PutUint32(b[12:], c)
}

// checkID refuses ids a record cannot hold.
func checkID(id string) error {
	if len(id) == 0 || len(id) > 255 {
		return fmt.Errorf("snapshots: function snapshot id of %d bytes", len(id))
	}
	return nil
}

// appendTombstone appends a delete record for id to b.
func appendTombstone(b []byte, id string) []byte {
	start := len(b)
	b = beginRecord(b, id)
	sealRecord(b[start:], recDelete, len(id))
	return b
}

// logRecord is a parsed record; payload is a slice of the data it was parsed from.
type logRecord struct {
	typ     byte
	id      string
	payload []byte
	n       int // the whole record's length
}

// parseRecord parses the record at the start of b: errShortRecord if b ends inside it,
// errBadRecord if it is damaged.
func parseRecord(b []byte) (logRecord, error) {
	if len(b) < recHeaderSize {
		return logRecord{}, errShortRecord
	}
	le := binary.LittleEndian
	typ, idLen, pl := b[4], int(b[5]), le.Uint32(b[8:])
	if [4]byte(b[:4]) != recMagic || b[6] != 0 || b[7] != 0 || idLen == 0 ||
		(typ != recPut && typ != recDelete) || (typ == recDelete && pl != 0) || uint64(pl) > maxRecordPayload {
		return logRecord{}, errBadRecord
	}
	n := recHeaderSize + idLen + int(pl)
	if len(b) < n {
		return logRecord{}, errShortRecord
	}
	c := crc32.Update(0, castagnoli, b[:12])
	c = crc32.Update(c, castagnoli, b[recHeaderSize:n])
	if c != le.Uint32(b[12:]) {
		return logRecord{}, errBadRecord
	}
	return logRecord{typ: typ, id: string(b[recHeaderSize : recHeaderSize+idLen]), payload: b[recHeaderSize+idLen : n], n: n}, nil
}

// scanRecords calls fn for each whole record of a segment's data, in order, with its
// offset. It returns the length of the good prefix and, if it stopped before the end,
// why (errShortRecord or errBadRecord).
func scanRecords(data []byte, fn func(off int, r logRecord)) (int, error) {
	off := 0
	for off < len(data) {
		r, err := parseRecord(data[off:])
		if err != nil {
			return off, err
		}
		fn(off, r)
		off += r.n
	}
	return off, nil
}

// segment is one segment file of the function log.
type segment struct {
	seq uint32
	// size: its length in bytes (a sealed segment's damaged tail counts, as dead bytes).
	// Guarded by Store.logMu.
	size int64
	// live: the bytes of the records of cached function snapshots. Guarded by Store.mu.
	live int64
}

// recLoc is where a function snapshot's state is: a record of a segment, or (seg nil)
// a state file of its own, functions/<id>.snap, as stores before the log wrote them.
type recLoc struct {
	seg    *segment
	off, n int64
}

func segName(seq uint32) string { return fmt.Sprintf("seg-%08d.log", seq) }

func parseSegName(name string) (uint32, bool) {
	d, ok := strings.CutPrefix(name, "seg-")
	if !ok {
		return 0, false
	}
	if d, ok = strings.CutSuffix(d, ".log"); !ok || len(d) != 8 {
		return 0, false
	}
	n, err := strconv.ParseUint(d, 10, 32)
	return uint32(n), err == nil
}

func (s *Store) segPath(g *segment) string {
	return filepath.Join(s.dir, "functions", segName(g.seq))
}

// openActiveLocked opens the last segment for appending, or starts a new one when there
// is none or it is full.
func (s *Store) openActiveLocked() error {
	var seq uint32 = 1
	if n := len(s.segs); n > 0 {
		last := s.segs[n-1]
		if last.size < segmentMax {
			f, err := os.OpenFile(s.segPath(last), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			if err != nil {
				return err
			}
			s.active = f
			return nil
		}
		seq = last.seq + 1
	}
	g := &segment{seq: seq}
	f, err := os.OpenFile(s.segPath(g), os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if s.active != nil {
		s.active.Close()
	}
	s.active = f
	s.mu.Lock()
	s.segs = append(s.segs, g)
	s.mu.Unlock()
	return nil
}

// appendLocked writes whole records to the active segment in one write(2) and returns
// the segment and offset they start at; a full segment is sealed after. Holds logMu.
func (s *Store) appendLocked(b []byte) (*segment, int64, error) {
	if s.active == nil {
		return nil, 0, errors.New("snapshots: function log not open for writing")
	}
	g := s.segs[len(s.segs)-1]
	off := g.size
	n, err := s.active.Write(b)
	if err != nil {
		if n > 0 {
			// Cut the partial record off so the next one follows a good record.
			if terr := s.active.Truncate(off); terr != nil {
				g.size += int64(n) // what is there now; replay stops at it
			}
		}
		return nil, 0, fmt.Errorf("snapshots: append to function log: %w", err)
	}
	g.size += int64(n)
	if g.size >= segmentMax {
		if err := s.openActiveLocked(); err != nil {
			s.log.Warn("snapshots: starting a function log segment", "err", err)
		}
	}
	return g, off, nil
}

// compactLocked compacts every sealed segment at most half live, each once (a segment
// sealed by the copies waits for the next call: tombstones copied forward cannot keep
// one call going). Holds logMu.
func (s *Store) compactLocked() {
	if s.readOnly || s.active == nil {
		return
	}
	var victims []*segment
	s.mu.Lock()
	for _, g := range s.segs[:len(s.segs)-1] {
		if 2*g.live <= g.size {
			victims = append(victims, g)
		}
	}
	s.mu.Unlock()
	for _, g := range victims {
		if err := s.compactSegmentLocked(g); err != nil {
			s.log.Warn("snapshots: compacting the function log", "segment", segName(g.seq), "err", err)
			return
		}
	}
}

// compactSegmentLocked copies a sealed segment's live records to the active segment and
// deletes it. Tombstones are copied too, for ids not cached, unless the segment is the
// oldest: an older segment may still hold a put they delete. Holds logMu.
func (s *Store) compactSegmentLocked(g *segment) error {
	data, err := os.ReadFile(s.segPath(g))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	s.mu.Lock()
	oldest := s.segs[0] == g
	byOff := map[int64]*FunctionSnapshot{}
	for _, f := range s.funcs {
		if f.rec.seg == g {
			byOff[f.rec.off] = f
		}
	}
	s.mu.Unlock()
	type move struct {
		f        *FunctionSnapshot
		from, to int64
	}
	var moves []move
	var out []byte
	var tombs []string
	scanRecords(data, func(off int, r logRecord) {
		switch {
		case r.typ == recPut && byOff[int64(off)] != nil:
			moves = append(moves, move{byOff[int64(off)], int64(off), int64(len(out))})
			out = append(out, data[off:off+r.n]...)
		case r.typ == recDelete && !oldest:
			tombs = append(tombs, r.id)
		}
	})
	s.mu.Lock()
	for _, id := range tombs {
		if s.funcs[id] == nil {
			out = appendTombstone(out, id)
		}
	}
	s.mu.Unlock()
	var to *segment
	var base int64
	if len(out) > 0 {
		if to, base, err = s.appendLocked(out); err != nil {
			return err
		}
	}
	s.mu.Lock()
	for _, m := range moves {
		f := m.f
		if s.funcs[f.ID] == f && f.rec.seg == g && f.rec.off == m.from {
			g.live -= f.rec.n
			f.rec = recLoc{seg: to, off: base + m.to, n: f.rec.n}
			to.live += f.rec.n
		}
	}
	for i, x := range s.segs {
		if x == g {
			s.segs = append(s.segs[:i:i], s.segs[i+1:]...)
			break
		}
	}
	s.mu.Unlock()
	if err := os.Remove(s.segPath(g)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
