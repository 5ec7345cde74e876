// Package bbolt is the embedded artifact store: one bbolt file holding actions, their
// code attachments and activation records. It is the default of standalone mode.
//
// Layout (bucket: key → value):
//
//	meta:                 "format" → "1"
//	whisks:               "<ns>/[<pkg>/]<name>" → action document JSON, as CouchDB holds it
//	                      (_id, _rev, entityType "action", updated, the WhiskAction fields)
//	attachments:          "<action id>\x00<attachment name>" → code bytes
//	activations:          "<ns>/<activationId>" → record JSON (_id, entityType "activation",
//	                      updated, the WhiskActivation fields)
//	activations_by_start: "<ns>\x00" + 8-byte big-endian start (ms, offset by 2^63) +
//	                      "<activationId>" → nothing; ordered for newest-first range scans
//
// Revisions are CouchDB-like ("<generation>-<md5>"), computed by store.NextRev. The
// package knows nothing of OpenWhisk beyond the document shapes in package store.
package bbolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/store"
)

var (
	bucketMeta        = []byte("meta")
	bucketWhisks      = []byte("whisks")
	bucketAttachments = []byte("attachments")
	bucketActivations = []byte("activations")
	bucketByStart     = []byte("activations_by_start")
)

// formatVersion is the layout version kept in meta; an unknown one is refused.
const formatVersion = "1"

// Store is the bbolt backend. It implements store.Store.
type Store struct {
	db   *bolt.DB
	now  func() time.Time
	acts activationGroup
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the store file at path. It waits up to a second for
// another process's lock on the file.
func Open(path string) (*Store, error) {
	// The freelist is not written at each commit (one page write less per record's
	// transaction) but rebuilt from the pages when the file is opened, as etcd does;
	// the hashmap freelist keeps allocation cheap as the file grows.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("bbolt: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketWhisks, bucketAttachments, bucketActivations, bucketByStart} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch v := meta.Get([]byte("format")); {
		case v == nil:
			return meta.Put([]byte("format"), []byte(formatVersion))
		case string(v) != formatVersion:
			return fmt.Errorf("unknown format version %q (want %s)", v, formatVersion)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("bbolt: open %s: %w", path, err)
	}
	return &Store{db: db, now: time.Now}, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// wrap turns bbolt's closed-database error into ErrUnavailable.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		err = fmt.Errorf("%w: %w", activation.ErrUnavailable, err)
	}
	return fmt.Errorf("bbolt: %s: %w", op, err)
}

// Health implements store.Store.
func (s *Store) Health(ctx context.Context) error {
	return wrap("health", s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMeta) == nil {
			return errors.New("meta bucket missing")
		}
		return nil
	}))
}

// GetAction implements activation.Store.
func (s *Store) GetAction(ctx context.Context, docID, rev string) (*activation.WhiskAction, error) {
	var a *activation.WhiskAction
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketWhisks).Get([]byte(docID))
		if v == nil {
			return activation.ErrNotFound
		}
		var err error
		a, err = store.DecodeAction(v)
		if err != nil {
			return err
		}
		if rev != "" && a.Rev != rev {
			return fmt.Errorf("have %s, want %s: %w", a.Rev, rev, activation.ErrRevisionMismatch)
		}
		return nil
	})
	if err != nil {
		return nil, wrap("get action "+docID, err)
	}
	return a, nil
}

func attachmentKey(docID, name string) []byte { return []byte(docID + "\x00" + name) }

// GetAttachment implements activation.Store.
func (s *Store) GetAttachment(ctx context.Context, docID, name string) ([]byte, error) {
	name = trimCouch(name)
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketAttachments).Get(attachmentKey(docID, name))
		if v == nil {
			return activation.ErrNotFound
		}
		out = bytes.Clone(v)
		return nil
	})
	if err != nil {
		return nil, wrap("get attachment "+docID+"/"+name, err)
	}
	return out, nil
}

func trimCouch(name string) string {
	if len(name) > 6 && name[:6] == "couch:" {
		return name[6:]
	}
	return name
}

// PutAction implements store.Store.
func (s *Store) PutAction(ctx context.Context, a *activation.WhiskAction, code []byte) (string, error) {
	docID := a.Namespace + "/" + a.Name
	doc := *a
	doc.ID, doc.EntityType = docID, store.EntityAction
	var attName, newAttName string
	if code != nil {
		var err error
		if newAttName, _, err = store.EncodeCode(&doc, code); err != nil {
			return "", err
		}
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		whisks, atts := tx.Bucket(bucketWhisks), tx.Bucket(bucketAttachments)
		cur := whisks.Get([]byte(docID))
		switch {
		case a.Rev == "" && cur != nil:
			return fmt.Errorf("create: %w", activation.ErrConflict)
		case a.Rev != "" && cur == nil:
			return fmt.Errorf("update of a missing document: %w", activation.ErrConflict)
		}
		if cur != nil {
			old, err := store.DecodeAction(cur)
			if err != nil {
				return err
			}
			if old.Rev != a.Rev {
				return fmt.Errorf("update at %s, stored %s: %w", a.Rev, old.Rev, activation.ErrConflict)
			}
			attName = store.CodeAttachment(old)
			if code == nil && len(doc.Exec.Code) == 0 {
				doc.Exec.Code = old.Exec.Code // keep the stored code
			}
		}
		doc.Rev = ""
		doc.Updated = s.now().UnixMilli()
		body, err := json.Marshal(&doc)
		if err != nil {
			return err
		}
		doc.Rev = store.NextRev(a.Rev, body)
		if body, err = json.Marshal(&doc); err != nil {
			return err
		}
		if code != nil && attName != "" {
			if err := atts.Delete(attachmentKey(docID, attName)); err != nil {
				return err
			}
		}
		if newAttName != "" {
			if err := atts.Put(attachmentKey(docID, newAttName), code); err != nil {
				return err
			}
		}
		return whisks.Put([]byte(docID), body)
	})
	if err != nil {
		return "", wrap("put action "+docID, err)
	}
	*a = doc
	return doc.Rev, nil
}

// DeleteAction implements store.Store.
func (s *Store) DeleteAction(ctx context.Context, docID, rev string) error {
	return wrap("delete action "+docID, s.db.Update(func(tx *bolt.Tx) error {
		whisks, atts := tx.Bucket(bucketWhisks), tx.Bucket(bucketAttachments)
		cur := whisks.Get([]byte(docID))
		if cur == nil {
			return activation.ErrNotFound
		}
		old, err := store.DecodeAction(cur)
		if err != nil {
			return err
		}
		if rev != "" && old.Rev != rev {
			return fmt.Errorf("delete at %s, stored %s: %w", rev, old.Rev, activation.ErrConflict)
		}
		// Remove every attachment of the document, not only the current code's.
		prefix := []byte(docID + "\x00")
		c := atts.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
			if err := atts.Delete(k); err != nil {
				return err
			}
		}
		return whisks.Delete([]byte(docID))
	}))
}

// ListActions implements store.Store.
func (s *Store) ListActions(ctx context.Context, namespace string, skip, limit int) ([]*activation.WhiskAction, error) {
	var out []*activation.WhiskAction
	err := s.db.View(func(tx *bolt.Tx) error {
		prefix := []byte(namespace + "/")
		c := tx.Bucket(bucketWhisks).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			a, err := store.DecodeAction(v)
			if errors.Is(err, activation.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			out = append(out, a)
		}
		return nil
	})
	if err != nil {
		return nil, wrap("list actions "+namespace, err)
	}
	store.SortActions(out)
	return store.Page(out, skip, limit), nil
}

// startKey is the activations_by_start key: namespace, NUL, start as a sortable
// unsigned number, activation id.
func startKey(ns string, start int64, id string) []byte {
	k := make([]byte, 0, len(ns)+1+8+len(id))
	k = append(k, ns...)
	k = append(k, 0)
	k = binary.BigEndian.AppendUint64(k, uint64(start)^(1<<63))
	return append(k, id...)
}

// PutActivation implements activation.Store. Records are group-committed (see
// activationGroup): it returns once the transaction holding its record is synced.
// Once queued, a record is written whatever ctx says, as before.
func (s *Store) PutActivation(ctx context.Context, a *activation.WhiskActivation) error {
	body, err := json.Marshal(store.NewActivationDoc(a, s.now()))
	if err != nil {
		return fmt.Errorf("bbolt: put activation %s: %w", a.DocID(), err)
	}
	p := &activationPut{
		key:      []byte(a.DocID()),
		startKey: startKey(a.Namespace, a.Start, a.ActivationID),
		body:     body,
		done:     make(chan bool, 1),
	}
	return wrap("put activation "+a.DocID(), s.acts.put(s.db, p))
}

// activationPut is one record waiting in an activationGroup.
type activationPut struct {
	key, startKey, body []byte
	// err is the record's result, set by the leader before it sends false on done.
	err error
	// done receives exactly one value: true when the record's writer is to lead the
	// next transaction, false when its record's transaction is over (err holds the result).
	done chan bool
}

// activationGroup commits activation records in groups. A record arriving while no
// transaction is in flight is committed at once by its own writer (no timer, unlike
// bolt.DB.Batch's MaxBatchDelay, which the ack path would pay on every lone write);
// records arriving while one is in flight queue up, and when it ends the first of them
// leads one transaction for all that queued: one fsync for the group instead of one
// each, since bbolt serializes write transactions anyway.
type activationGroup struct {
	// commit is called by a leader with the records of one transaction, before it
	// starts; tests use it to count and to hold transactions.
	commit func(n int)

	mu sync.Mutex
	// queue holds the records waiting for the next transaction.
	queue []*activationPut
	// busy is set while a leader is committing or has been chosen.
	busy bool
}

func (g *activationGroup) put(db *bolt.DB, p *activationPut) error {
	g.mu.Lock()
	g.queue = append(g.queue, p)
	if g.busy {
		g.mu.Unlock()
		if lead := <-p.done; !lead {
			return p.err
		}
		g.mu.Lock() // chosen to lead: the queue holds p and those that came after
	} else {
		g.busy = true
	}
	group := g.queue
	g.queue = nil
	g.mu.Unlock()

	if g.commit != nil {
		g.commit(len(group))
	}
	commitActivations(db, group)

	g.mu.Lock()
	if len(g.queue) > 0 {
		g.queue[0].done <- true // hand over; busy stays set
	} else {
		g.busy = false
	}
	g.mu.Unlock()
	for _, q := range group {
		if q != p {
			q.done <- false
		}
	}
	return p.err
}

// commitActivations writes the group in one transaction, setting each record's err: a
// record whose id exists (stored before, or earlier in the group) gets ErrConflict
// without failing the others. Should the transaction itself fail, each record is
// retried in a transaction of its own, so that one record's failure stays its own.
func commitActivations(db *bolt.DB, group []*activationPut) {
	err := db.Update(func(tx *bolt.Tx) error {
		acts, byStart := tx.Bucket(bucketActivations), tx.Bucket(bucketByStart)
		for _, p := range group {
			p.err = insertActivation(acts, byStart, p)
			if p.err != nil && !errors.Is(p.err, activation.ErrConflict) {
				return p.err
			}
		}
		return nil
	})
	if err == nil {
		return
	}
	if len(group) == 1 {
		group[0].err = err
		return
	}
	for _, p := range group {
		p.err = db.Update(func(tx *bolt.Tx) error {
			return insertActivation(tx.Bucket(bucketActivations), tx.Bucket(bucketByStart), p)
		})
	}
}

func insertActivation(acts, byStart *bolt.Bucket, p *activationPut) error {
	if acts.Get(p.key) != nil {
		return activation.ErrConflict
	}
	if err := acts.Put(p.key, p.body); err != nil {
		return err
	}
	return byStart.Put(p.startKey, nil)
}

// GetActivation implements activation.Store.
func (s *Store) GetActivation(ctx context.Context, namespace, id string) (*activation.WhiskActivation, error) {
	var a *activation.WhiskActivation
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketActivations).Get([]byte(namespace + "/" + id))
		if v == nil {
			return activation.ErrNotFound
		}
		var err error
		a, err = store.DecodeActivation(v)
		return err
	})
	if err != nil {
		return nil, wrap("get activation "+namespace+"/"+id, err)
	}
	return a, nil
}

// ListActivations implements store.Store: a reverse scan of the namespace's start
// index between Upto and Since, filtering by name, then skip and limit.
func (s *Store) ListActivations(ctx context.Context, q store.ActivationQuery) ([]*activation.WhiskActivation, error) {
	var out []*activation.WhiskActivation
	err := s.db.View(func(tx *bolt.Tx) error {
		acts := tx.Bucket(bucketActivations)
		nsPrefix := append([]byte(q.Namespace), 0)
		low := startKey(q.Namespace, -1<<63, "")
		if !q.Since.IsZero() {
			low = startKey(q.Namespace, q.Since.UnixMilli(), "")
		}
		// Seek past every key of the highest start wanted, then step back.
		high := append(bytes.Clone(nsPrefix), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
		if !q.Upto.IsZero() && q.Upto.UnixMilli() < 1<<63-1 {
			high = startKey(q.Namespace, q.Upto.UnixMilli()+1, "")
		}
		c := tx.Bucket(bucketByStart).Cursor()
		k, _ := c.Seek(high)
		if k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
		skipped := 0
		for ; k != nil && bytes.HasPrefix(k, nsPrefix) && bytes.Compare(k, low) >= 0; k, _ = c.Prev() {
			if err := ctx.Err(); err != nil {
				return err
			}
			id := k[len(nsPrefix)+8:]
			v := acts.Get(append([]byte(q.Namespace+"/"), id...))
			if v == nil {
				continue
			}
			a, err := store.DecodeActivation(v)
			if err != nil {
				return err
			}
			if !q.Matches(a) {
				continue
			}
			if skipped < q.Skip {
				skipped++
				continue
			}
			out = append(out, a)
			if q.Limit > 0 && len(out) == q.Limit {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, wrap("list activations "+q.Namespace, err)
	}
	return out, nil
}
