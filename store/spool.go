package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/seuss-go/seuss/activation"
)

// ErrSpoolFull: the backend is unavailable and the spool has reached its bound; the
// record was not accepted. It wraps activation.ErrUnavailable, so a caller that retries
// unavailable stores (and holds its Kafka offset) does the right thing.
var ErrSpoolFull = fmt.Errorf("activation spool full: %w", activation.ErrUnavailable)

// SpoolOptions bound a Spool.
type SpoolOptions struct {
	Dir        string        // where spooled records live; created if missing
	MaxRecords int           // <= 0: 100000
	MaxBytes   int64         // <= 0: 1 GiB
	Timeout    time.Duration // for one direct write to the backend; <= 0: 10 s
	Interval   time.Duration // between drain passes while records wait; <= 0: 1 s
	Logger     *slog.Logger  // nil: slog.Default()
}

// Spool is a Store that never loses an activation record to a backend outage: when
// PutActivation finds the backend unavailable, the record goes to a bounded on-disk
// spool, PutActivation succeeds, and Run drains the spool into the backend once it
// answers again. Everything else is passed through.
//
// On disk: one file per record in Dir, "<sequence, 20 digits>.json" holding the
// WhiskActivation JSON, written to a temporary name, synced and renamed, so a crash
// leaves either the whole record or none. A restarted Spool picks the files up again
// (in sequence order). Records the backend refuses for good (not unavailable, not
// already stored) are moved to Dir/rejected/ and logged.
//
// While records wait, reads see them: GetActivation and ListActivations merge spooled
// records with the backend's, and inserting an id already spooled is a conflict, so
// the invoker's "already recorded" check keeps working during an outage.
type Spool struct {
	Store
	opts SpoolOptions

	drainMu sync.Mutex // one drain pass at a time

	mu        sync.Mutex
	seq       uint64
	files     map[string]spooled // record doc id → file
	bytes     int64
	downUntil time.Time // while records wait, skip the backend until then
}

type spooled struct {
	file string
	size int64
	rec  *activation.WhiskActivation
}

var _ Store = (*Spool)(nil)

// NewSpool wraps backend with a spool in opts.Dir, loading records left there.
func NewSpool(backend Store, opts SpoolOptions) (*Spool, error) {
	if opts.Dir == "" {
		return nil, errors.New("spool: no directory")
	}
	if opts.MaxRecords <= 0 {
		opts.MaxRecords = 100000
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 1 << 30
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s := &Spool{Store: backend, opts: opts, files: map[string]spooled{}}
	names, err := s.list()
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		path := filepath.Join(opts.Dir, name)
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("spool: load %s: %w", name, err)
		}
		var rec activation.WhiskActivation
		if err := json.Unmarshal(b, &rec); err != nil || rec.ActivationID == "" {
			s.reject(name, fmt.Errorf("unreadable: %v", err))
			continue
		}
		n, _ := strconv.ParseUint(strings.TrimSuffix(name, ".json"), 10, 64)
		s.seq = max(s.seq, n)
		s.files[rec.DocID()] = spooled{file: name, size: int64(len(b)), rec: &rec}
		s.bytes += int64(len(b))
	}
	return s, nil
}

// list returns the spooled file names in sequence order.
func (s *Spool) list() ([]string, error) {
	entries, err := os.ReadDir(s.opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".json") && !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// Len returns the number of records waiting.
func (s *Spool) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.files)
}

// PutActivation implements activation.Store.
func (s *Spool) PutActivation(ctx context.Context, a *activation.WhiskActivation) error {
	s.mu.Lock()
	_, waiting := s.files[a.DocID()]
	skip := len(s.files) > 0 && time.Now().Before(s.downUntil)
	s.mu.Unlock()
	if waiting {
		return fmt.Errorf("spool: put activation %s: spooled already: %w", a.DocID(), activation.ErrConflict)
	}
	if !skip {
		dctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
		err := s.Store.PutActivation(dctx, a)
		down := err != nil && unavailable(err, dctx)
		cancel()
		if !down {
			return err
		}
		s.opts.Logger.Warn("store unavailable, spooling activation record", "id", a.DocID(), "err", err)
		s.markDown()
	}
	return s.write(a)
}

// unavailable reports an error that means "try later": the store said so, or the
// attempt's own deadline passed. Call it before cancelling ctx.
func unavailable(err error, ctx context.Context) bool {
	return errors.Is(err, activation.ErrUnavailable) || ctx.Err() != nil
}

func (s *Spool) markDown() {
	s.mu.Lock()
	s.downUntil = time.Now().Add(s.opts.Interval)
	s.mu.Unlock()
}

// write spools one record durably.
func (s *Spool) write(a *activation.WhiskActivation) error {
	b, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("spool: encode %s: %w", a.DocID(), err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.files[a.DocID()]; ok {
		return fmt.Errorf("spool: put activation %s: spooled already: %w", a.DocID(), activation.ErrConflict)
	}
	if len(s.files) >= s.opts.MaxRecords || s.bytes+int64(len(b)) > s.opts.MaxBytes {
		return fmt.Errorf("spool: put activation %s (%d records, %d bytes waiting): %w", a.DocID(), len(s.files), s.bytes, ErrSpoolFull)
	}
	s.seq++
	name := fmt.Sprintf("%020d.json", s.seq)
	if err := writeFileSync(s.opts.Dir, name, b); err != nil {
		return fmt.Errorf("spool: put activation %s: %w: %w", a.DocID(), activation.ErrUnavailable, err)
	}
	cp := *a
	s.files[a.DocID()] = spooled{file: name, size: int64(len(b)), rec: &cp}
	s.bytes += int64(len(b))
	return nil
}

// writeFileSync writes dir/name atomically and durably: temporary file, fsync, rename,
// fsync of the directory.
func writeFileSync(dir, name string, b []byte) error {
	tmp := filepath.Join(dir, "."+name+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		os.Remove(tmp)
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Drain writes every spooled record to the backend, oldest first, and returns how
// many landed. It stops at the first unavailable answer (the records stay spooled). A
// record the backend already has (a conflict) counts as landed.
func (s *Spool) Drain(ctx context.Context) (int, error) {
	s.drainMu.Lock()
	defer s.drainMu.Unlock()
	s.mu.Lock()
	batch := make([]spooled, 0, len(s.files))
	for _, f := range s.files {
		batch = append(batch, f)
	}
	s.mu.Unlock()
	sort.Slice(batch, func(i, j int) bool { return batch[i].file < batch[j].file })
	n := 0
	for _, f := range batch {
		dctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
		err := s.Store.PutActivation(dctx, f.rec)
		down := err != nil && unavailable(err, dctx)
		cancel()
		switch {
		case err == nil || errors.Is(err, activation.ErrConflict):
			s.remove(f)
			n++
		case down:
			s.markDown()
			return n, fmt.Errorf("spool: drain: %w", err)
		default:
			s.opts.Logger.Error("store refused a spooled activation record; kept in rejected/", "id", f.rec.DocID(), "err", err)
			s.mu.Lock()
			s.reject(f.file, err)
			s.forget(f)
			s.mu.Unlock()
		}
	}
	return n, nil
}

func (s *Spool) remove(f spooled) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.Remove(filepath.Join(s.opts.Dir, f.file)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.opts.Logger.Error("spool: remove drained record", "file", f.file, "err", err)
	}
	s.forget(f)
}

// forget drops f from the index; s.mu is held.
func (s *Spool) forget(f spooled) {
	if cur, ok := s.files[f.rec.DocID()]; ok && cur.file == f.file {
		delete(s.files, f.rec.DocID())
		s.bytes -= f.size
	}
}

// reject moves a file to Dir/rejected/; s.mu is held or the Spool not yet shared.
func (s *Spool) reject(name string, why error) {
	dir := filepath.Join(s.opts.Dir, "rejected")
	os.MkdirAll(dir, 0o700)
	if err := os.Rename(filepath.Join(s.opts.Dir, name), filepath.Join(dir, name)); err != nil {
		s.opts.Logger.Error("spool: reject record", "file", name, "why", why, "err", err)
	}
}

// Run drains the spool every Interval until ctx ends; it is the spool's one
// long-lived goroutine, for the orchestrator to start. It returns nil when ctx ends.
func (s *Spool) Run(ctx context.Context) error {
	t := time.NewTicker(s.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if s.Len() == 0 {
			continue
		}
		if n, err := s.Drain(ctx); n > 0 || err != nil {
			s.opts.Logger.Info("spool drained", "landed", n, "waiting", s.Len(), "err", err)
		}
	}
}

// GetActivation implements activation.Store: the backend's record, else a spooled one.
func (s *Spool) GetActivation(ctx context.Context, namespace, id string) (*activation.WhiskActivation, error) {
	a, err := s.Store.GetActivation(ctx, namespace, id)
	if err == nil {
		return a, nil
	}
	s.mu.Lock()
	f, ok := s.files[namespace+"/"+id]
	s.mu.Unlock()
	if ok {
		cp := *f.rec
		return &cp, nil
	}
	return nil, err
}

// ListActivations implements Store: the backend's records merged with spooled ones.
// When the backend is unavailable, only spooled records are listed, with its error.
func (s *Spool) ListActivations(ctx context.Context, q ActivationQuery) ([]*activation.WhiskActivation, error) {
	var waiting []*activation.WhiskActivation
	s.mu.Lock()
	for _, f := range s.files {
		if q.Matches(f.rec) {
			cp := *f.rec
			waiting = append(waiting, &cp)
		}
	}
	s.mu.Unlock()
	if len(waiting) == 0 {
		return s.Store.ListActivations(ctx, q)
	}
	bq := q
	bq.Skip = 0
	if q.Limit > 0 {
		bq.Limit = q.Skip + q.Limit
	}
	stored, err := s.Store.ListActivations(ctx, bq)
	seen := map[string]bool{}
	all := make([]*activation.WhiskActivation, 0, len(stored)+len(waiting))
	for _, a := range stored {
		seen[a.DocID()] = true
		all = append(all, a)
	}
	for _, a := range waiting {
		if !seen[a.DocID()] {
			all = append(all, a)
		}
	}
	SortActivations(all)
	return Page(all, q.Skip, q.Limit), err
}
