// Package couchbase is the artifact store on Couchbase Server through gocb/v2, using
// key-value and sub-document operations only (no N1QL, no views), so that it runs
// against the gocaves mock as well as a real cluster.
//
// Layout: one bucket (Config.Bucket), one scope (Config.Scope, default "_default"), four
// collections created at Open when missing:
//
//	whisks       key "<ns>/[<pkg>/]<name>"  the action document, JSON as in CouchDB
//	                                          (_id, _rev "<gen>-<md5>", entityType, updated, ...)
//	attachments  key "<action id>/<uuid>"   code of 16 KiB and more, raw bytes (binary
//	                                          transcoder); exec.code says "couch:<uuid>"
//	activations  key "<ns>/<activationId>"  the record, JSON as in CouchDB (_id,
//	                                          entityType "activation", updated, ...)
//	indexes      key "actions/<ns>"          {"a": {"<action id>": updated}} for every action
//	                                          of top-level namespace ns (packages included)
//	             key "activations/<ns>"      {"d": {"<YYYYMMDD>": true}} days with records
//	             key "activations/<ns>/<YYYYMMDD>"
//	                                          {"e": {"<activationId>": [start, "<path>"]}}
//	                                          the records of ns started that UTC day
//
// Index entries are written with sub-document dictionary upserts (atomic on the server,
// idempotent on retry) after the record itself, and removed with sub-document removes.
// Listing activations reads the day list, then the day documents newest first, and
// fetches only the page's records. A day document holds ~40 bytes per record, so one
// namespace can keep some 400,000 records a day under Couchbase's 20 MB document limit.
// Action updates are compare-and-swap on the document's CAS, with the _rev check on top.
package couchbase

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/couchbase/gocb/v2"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/store"
)

// Config selects the cluster, bucket and scope.
type Config struct {
	ConnStr  string // "couchbase://host[:port],..."
	Username string
	Password string
	Bucket   string
	Scope    string // "" means "_default"

	Retry       store.Retry   // zero: store.DefaultRetry
	OpenTimeout time.Duration // connecting and creating collections; zero: 20 s
}

// ConfigFromEnv reads COUCHBASE_CONNSTR, COUCHBASE_USERNAME, COUCHBASE_PASSWORD,
// COUCHBASE_BUCKET (default "openwhisk") and COUCHBASE_SCOPE. getenv is os.Getenv in
// production.
func ConfigFromEnv(getenv func(string) string) Config {
	c := Config{
		ConnStr:  getenv("COUCHBASE_CONNSTR"),
		Username: getenv("COUCHBASE_USERNAME"),
		Password: getenv("COUCHBASE_PASSWORD"),
		Bucket:   getenv("COUCHBASE_BUCKET"),
		Scope:    getenv("COUCHBASE_SCOPE"),
	}
	if c.Bucket == "" {
		c.Bucket = "openwhisk"
	}
	return c
}

// Collection names (see the package comment).
const (
	colWhisks      = "whisks"
	colAttachments = "attachments"
	colActivations = "activations"
	colIndexes     = "indexes"
)

// Store is the Couchbase backend. It implements store.Store.
type Store struct {
	cfg                                Config
	cluster                            *gocb.Cluster
	whisks, atts, activations, indexes *gocb.Collection
	bucket                             *gocb.Bucket
	now                                func() time.Time
	days                               sync.Map // "<ns>/<YYYYMMDD>" already in the day list
}

var _ store.Store = (*Store)(nil)

// Open connects, waits for the bucket and creates the collections when missing.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.ConnStr == "" || cfg.Bucket == "" {
		return nil, errors.New("couchbase: connection string and bucket are required")
	}
	if cfg.Scope == "" {
		cfg.Scope = "_default"
	}
	if cfg.Retry == (store.Retry{}) {
		cfg.Retry = store.DefaultRetry
	}
	if cfg.OpenTimeout <= 0 {
		cfg.OpenTimeout = 20 * time.Second
	}
	cluster, err := gocb.Connect(cfg.ConnStr, gocb.ClusterOptions{
		Username: cfg.Username,
		Password: cfg.Password,
		TimeoutsConfig: gocb.TimeoutsConfig{
			ConnectTimeout: cfg.OpenTimeout,
			KVTimeout:      cfg.Retry.Timeout,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("couchbase: connect: %w", mapErr(err))
	}
	b := cluster.Bucket(cfg.Bucket)
	if err := b.WaitUntilReady(cfg.OpenTimeout, &gocb.WaitUntilReadyOptions{Context: ctx}); err != nil {
		cluster.Close(nil)
		return nil, fmt.Errorf("couchbase: bucket %s: %w: %w", cfg.Bucket, activation.ErrUnavailable, err)
	}
	mgr := b.CollectionsV2()
	for _, name := range []string{colWhisks, colAttachments, colActivations, colIndexes} {
		err := mgr.CreateCollection(cfg.Scope, name, nil, &gocb.CreateCollectionOptions{Context: ctx, Timeout: cfg.OpenTimeout})
		if err != nil && !errors.Is(err, gocb.ErrCollectionExists) {
			cluster.Close(nil)
			return nil, fmt.Errorf("couchbase: create collection %s.%s: %w", cfg.Scope, name, mapErr(err))
		}
	}
	sc := b.Scope(cfg.Scope)
	s := &Store{
		cfg: cfg, cluster: cluster, bucket: b,
		whisks: sc.Collection(colWhisks), atts: sc.Collection(colAttachments),
		activations: sc.Collection(colActivations), indexes: sc.Collection(colIndexes),
		now: time.Now,
	}
	// A collection just created may take a moment to be usable everywhere.
	if err := s.retry(ctx, func(ctx context.Context, _ bool) error {
		_, err := s.indexes.Get("health", &gocb.GetOptions{Context: ctx})
		if errors.Is(err, gocb.ErrDocumentNotFound) {
			return nil
		}
		if errors.Is(err, gocb.ErrCollectionNotFound) {
			return fmt.Errorf("%w: %w", activation.ErrUnavailable, err)
		}
		return mapErr(err)
	}); err != nil {
		cluster.Close(nil)
		return nil, fmt.Errorf("couchbase: collections not ready: %w", err)
	}
	return s, nil
}

// Close implements store.Store.
func (s *Store) Close() error { return s.cluster.Close(nil) }

// mapErr turns gocb's errors into the sentinels callers branch on.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, gocb.ErrDocumentNotFound):
		return fmt.Errorf("%w: %w", activation.ErrNotFound, err)
	case errors.Is(err, gocb.ErrDocumentExists), errors.Is(err, gocb.ErrCasMismatch):
		return fmt.Errorf("%w: %w", activation.ErrConflict, err)
	case errors.Is(err, gocb.ErrTimeout), errors.Is(err, gocb.ErrRequestCanceled),
		errors.Is(err, gocb.ErrServiceNotAvailable), errors.Is(err, gocb.ErrTemporaryFailure),
		errors.Is(err, gocb.ErrOverload), errors.Is(err, gocb.ErrDocumentLocked),
		errors.Is(err, gocb.ErrDurableWriteInProgress), errors.Is(err, gocb.ErrInternalServerFailure),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return fmt.Errorf("%w: %w", activation.ErrUnavailable, err)
	}
	return err
}

func (s *Store) retry(ctx context.Context, op func(ctx context.Context, retried bool) error) error {
	return s.cfg.Retry.Do(ctx, op)
}

// Health implements store.Store: a key-value ping of the bucket.
func (s *Store) Health(ctx context.Context) error {
	return s.retry(ctx, func(ctx context.Context, _ bool) error {
		// A Timeout, not the Context: gocbcore's ping cancellation path races (found
		// by -race in v10.8.1), its timeout path does not.
		timeout := s.cfg.Retry.Timeout
		if d, ok := ctx.Deadline(); ok {
			timeout = max(time.Until(d)-10*time.Millisecond, 10*time.Millisecond)
		}
		res, err := s.bucket.Ping(&gocb.PingOptions{Timeout: timeout, ServiceTypes: []gocb.ServiceType{gocb.ServiceTypeKeyValue}})
		if err != nil {
			return fmt.Errorf("couchbase: health: %w", mapErr(err))
		}
		n := 0
		for _, eps := range res.Services {
			for _, ep := range eps {
				if ep.State != gocb.PingStateOk {
					return fmt.Errorf("couchbase: health: %s %s: %w", ep.Remote, ep.Error, activation.ErrUnavailable)
				}
				n++
			}
		}
		if n == 0 {
			return fmt.Errorf("couchbase: health: no key-value endpoint answered: %w", activation.ErrUnavailable)
		}
		return nil
	})
}

// getRaw reads a JSON document and its CAS.
func (s *Store) getRaw(ctx context.Context, col *gocb.Collection, key string) (json.RawMessage, gocb.Cas, error) {
	var raw json.RawMessage
	var cas gocb.Cas
	err := s.retry(ctx, func(ctx context.Context, _ bool) error {
		res, err := col.Get(key, &gocb.GetOptions{Context: ctx})
		if err != nil {
			return mapErr(err)
		}
		cas = res.Cas()
		return res.Content(&raw)
	})
	return raw, cas, err
}

// GetAction implements activation.Store.
func (s *Store) GetAction(ctx context.Context, docID, rev string) (*activation.WhiskAction, error) {
	raw, _, err := s.getRaw(ctx, s.whisks, docID)
	if err != nil {
		return nil, fmt.Errorf("couchbase: get action %s: %w", docID, err)
	}
	a, err := store.DecodeAction(raw)
	if err != nil {
		return nil, fmt.Errorf("couchbase: get action %s: %w", docID, err)
	}
	if rev != "" && a.Rev != rev {
		return nil, fmt.Errorf("couchbase: get action %s: have %s, want %s: %w", docID, a.Rev, rev, activation.ErrRevisionMismatch)
	}
	return a, nil
}

// GetAttachment implements activation.Store.
func (s *Store) GetAttachment(ctx context.Context, docID, name string) ([]byte, error) {
	name = strings.TrimPrefix(name, "couch:")
	var out []byte
	err := s.retry(ctx, func(ctx context.Context, _ bool) error {
		res, err := s.atts.Get(docID+"/"+name, &gocb.GetOptions{Context: ctx, Transcoder: gocb.NewRawBinaryTranscoder()})
		if err != nil {
			return mapErr(err)
		}
		return res.Content(&out)
	})
	if err != nil {
		return nil, fmt.Errorf("couchbase: get attachment %s/%s: %w", docID, name, err)
	}
	return out, nil
}

// topNamespace is the namespace part of an action's namespace ("ns/pkg" → "ns").
func topNamespace(ns string) string {
	top, _, _ := strings.Cut(ns, "/")
	return top
}

// subdocKey quotes a dictionary key for a sub-document path.
func subdocKey(k string) string { return "`" + strings.ReplaceAll(k, "`", "``") + "`" }

// PutAction implements store.Store.
func (s *Store) PutAction(ctx context.Context, a *activation.WhiskAction, code []byte) (string, error) {
	docID := a.Namespace + "/" + a.Name
	doc := *a
	doc.ID, doc.EntityType, doc.Updated = docID, store.EntityAction, s.now().UnixMilli()
	var attName string
	if code != nil {
		var err error
		if attName, _, err = store.EncodeCode(&doc, code); err != nil {
			return "", fmt.Errorf("couchbase: put action %s: %w", docID, err)
		}
	}
	var cas gocb.Cas
	var oldAtt string
	if a.Rev != "" {
		raw, c, err := s.getRaw(ctx, s.whisks, docID)
		if errors.Is(err, activation.ErrNotFound) {
			return "", fmt.Errorf("couchbase: put action %s: update of a missing document: %w", docID, activation.ErrConflict)
		}
		if err != nil {
			return "", fmt.Errorf("couchbase: put action %s: %w", docID, err)
		}
		old, err := store.DecodeAction(raw)
		if err != nil {
			return "", fmt.Errorf("couchbase: put action %s: %w", docID, err)
		}
		if old.Rev != a.Rev {
			return "", fmt.Errorf("couchbase: put action %s: update at %s, stored %s: %w", docID, a.Rev, old.Rev, activation.ErrConflict)
		}
		cas = c
		if code == nil && len(doc.Exec.Code) == 0 {
			doc.Exec.Code = old.Exec.Code
		}
		if code != nil {
			oldAtt = store.CodeAttachment(old)
		}
	}
	// The attachment first: a document never points at code that is not there.
	if attName != "" {
		err := s.retry(ctx, func(ctx context.Context, _ bool) error {
			_, err := s.atts.Upsert(docID+"/"+attName, code, &gocb.UpsertOptions{Context: ctx, Transcoder: gocb.NewRawBinaryTranscoder()})
			return mapErr(err)
		})
		if err != nil {
			return "", fmt.Errorf("couchbase: put action %s: store code: %w", docID, err)
		}
	}
	doc.Rev = ""
	body, err := json.Marshal(&doc)
	if err != nil {
		return "", fmt.Errorf("couchbase: put action %s: %w", docID, err)
	}
	doc.Rev = store.NextRev(a.Rev, body)
	body, _ = json.Marshal(&doc)
	err = s.retry(ctx, func(ctx context.Context, retried bool) error {
		var err error
		if a.Rev == "" {
			_, err = s.whisks.Insert(docID, json.RawMessage(body), &gocb.InsertOptions{Context: ctx})
		} else {
			_, err = s.whisks.Replace(docID, json.RawMessage(body), &gocb.ReplaceOptions{Context: ctx, Cas: cas})
		}
		err = mapErr(err)
		if retried && errors.Is(err, activation.ErrConflict) {
			// An earlier attempt may have landed: it did if the stored revision is ours.
			if raw, _, gerr := s.getRaw(ctx, s.whisks, docID); gerr == nil {
				if cur, derr := store.DecodeAction(raw); derr == nil && cur.Rev == doc.Rev {
					return nil
				}
			}
		}
		return err
	})
	if err != nil {
		if attName != "" {
			s.removeAttachment(ctx, docID, attName)
		}
		return "", fmt.Errorf("couchbase: put action %s: %w", docID, err)
	}
	if oldAtt != "" && oldAtt != attName {
		s.removeAttachment(ctx, docID, oldAtt)
	}
	if err := s.upsertIndex(ctx, "actions/"+topNamespace(a.Namespace), "a."+subdocKey(docID), doc.Updated); err != nil {
		return "", fmt.Errorf("couchbase: put action %s: index: %w", docID, err)
	}
	*a = doc
	return doc.Rev, nil
}

func (s *Store) removeAttachment(ctx context.Context, docID, name string) {
	s.retry(context.WithoutCancel(ctx), func(ctx context.Context, _ bool) error {
		_, err := s.atts.Remove(docID+"/"+name, &gocb.RemoveOptions{Context: ctx})
		if errors.Is(err, gocb.ErrDocumentNotFound) {
			return nil
		}
		return mapErr(err)
	})
}

// upsertIndex sets one dictionary entry of an index document, creating it if needed.
func (s *Store) upsertIndex(ctx context.Context, key, path string, value any) error {
	return s.retry(ctx, func(ctx context.Context, _ bool) error {
		_, err := s.indexes.MutateIn(key, []gocb.MutateInSpec{
			gocb.UpsertSpec(path, value, &gocb.UpsertSpecOptions{CreatePath: true}),
		}, &gocb.MutateInOptions{Context: ctx, StoreSemantic: gocb.StoreSemanticsUpsert})
		return mapErr(err)
	})
}

// DeleteAction implements store.Store.
func (s *Store) DeleteAction(ctx context.Context, docID, rev string) error {
	raw, cas, err := s.getRaw(ctx, s.whisks, docID)
	if err != nil {
		return fmt.Errorf("couchbase: delete action %s: %w", docID, err)
	}
	old, err := store.DecodeAction(raw)
	if err != nil {
		return fmt.Errorf("couchbase: delete action %s: %w", docID, err)
	}
	if rev != "" && old.Rev != rev {
		return fmt.Errorf("couchbase: delete action %s: at %s, stored %s: %w", docID, rev, old.Rev, activation.ErrConflict)
	}
	err = s.retry(ctx, func(ctx context.Context, retried bool) error {
		_, err := s.whisks.Remove(docID, &gocb.RemoveOptions{Context: ctx, Cas: cas})
		if retried && errors.Is(err, gocb.ErrDocumentNotFound) {
			return nil
		}
		return mapErr(err)
	})
	if err != nil {
		return fmt.Errorf("couchbase: delete action %s: %w", docID, err)
	}
	if att := store.CodeAttachment(old); att != "" {
		s.removeAttachment(ctx, docID, att)
	}
	err = s.retry(ctx, func(ctx context.Context, _ bool) error {
		_, err := s.indexes.MutateIn("actions/"+topNamespace(old.Namespace), []gocb.MutateInSpec{
			gocb.RemoveSpec("a."+subdocKey(docID), nil),
		}, &gocb.MutateInOptions{Context: ctx})
		if errors.Is(err, gocb.ErrPathNotFound) || errors.Is(err, gocb.ErrDocumentNotFound) {
			return nil
		}
		return mapErr(err)
	})
	if err != nil {
		return fmt.Errorf("couchbase: delete action %s: index: %w", docID, err)
	}
	return nil
}

// ListActions implements store.Store: the namespace's index, sorted by its update
// times, then the page's documents.
func (s *Store) ListActions(ctx context.Context, namespace string, skip, limit int) ([]*activation.WhiskAction, error) {
	raw, _, err := s.getRaw(ctx, s.indexes, "actions/"+topNamespace(namespace))
	if errors.Is(err, activation.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("couchbase: list actions %s: %w", namespace, err)
	}
	var idx struct {
		A map[string]int64 `json:"a"`
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, fmt.Errorf("couchbase: list actions %s: index: %w", namespace, err)
	}
	ids := make([]string, 0, len(idx.A))
	for id := range idx.A {
		if store.InNamespace(id, namespace) {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool {
		if idx.A[ids[i]] != idx.A[ids[j]] {
			return idx.A[ids[i]] > idx.A[ids[j]]
		}
		return ids[i] < ids[j]
	})
	ids = store.Page(ids, skip, limit)
	out := make([]*activation.WhiskAction, 0, len(ids))
	for _, id := range ids {
		a, err := s.GetAction(ctx, id, "")
		if errors.Is(err, activation.ErrNotFound) {
			continue // deleted between the index read and now
		}
		if err != nil {
			return nil, fmt.Errorf("couchbase: list actions %s: %w", namespace, err)
		}
		out = append(out, a)
	}
	store.SortActions(out)
	return out, nil
}

// day is the UTC day of an epoch-ms time, "YYYYMMDD".
func day(ms int64) string { return time.UnixMilli(ms).UTC().Format("20060102") }

// PutActivation implements activation.Store: insert the record, then its index
// entries (idempotent, so a retried or re-drained insert repairs a missing entry).
func (s *Store) PutActivation(ctx context.Context, a *activation.WhiskActivation) error {
	body, err := json.Marshal(store.NewActivationDoc(a, s.now()))
	if err != nil {
		return fmt.Errorf("couchbase: put activation %s: %w", a.DocID(), err)
	}
	same := false
	err = s.retry(ctx, func(ctx context.Context, retried bool) error {
		_, err := s.activations.Insert(a.DocID(), json.RawMessage(body), &gocb.InsertOptions{Context: ctx})
		err = mapErr(err)
		if errors.Is(err, activation.ErrConflict) && s.sameRecord(ctx, a) {
			// This very record is stored: written by an attempt whose answer was lost,
			// here or in an earlier call (a spool drain). Its index entries may be
			// missing; write them below.
			same = true
			if retried {
				return nil
			}
		}
		return err
	})
	if err != nil && !same {
		return fmt.Errorf("couchbase: put activation %s: %w", a.DocID(), err)
	}
	if ierr := s.indexActivation(ctx, a); ierr != nil {
		return fmt.Errorf("couchbase: put activation %s: %w", a.DocID(), ierr)
	}
	if err != nil {
		return fmt.Errorf("couchbase: put activation %s: %w", a.DocID(), err)
	}
	return nil
}

func (s *Store) indexActivation(ctx context.Context, a *activation.WhiskActivation) error {
	d := day(a.Start)
	if err := s.upsertIndex(ctx, "activations/"+a.Namespace+"/"+d, "e."+subdocKey(a.ActivationID), []any{a.Start, store.ActivationPath(a)}); err != nil {
		return fmt.Errorf("index: %w", err)
	}
	key := a.Namespace + "/" + d
	if _, known := s.days.Load(key); known {
		return nil
	}
	if err := s.upsertIndex(ctx, "activations/"+a.Namespace, "d."+subdocKey(d), true); err != nil {
		return fmt.Errorf("index days: %w", err)
	}
	s.days.Store(key, struct{}{})
	return nil
}

// sameRecord reports whether the stored record with a's id is a itself.
func (s *Store) sameRecord(ctx context.Context, a *activation.WhiskActivation) bool {
	res, err := s.activations.Get(a.DocID(), &gocb.GetOptions{Context: ctx})
	if err != nil {
		return false
	}
	var raw json.RawMessage
	if res.Content(&raw) != nil {
		return false
	}
	got, err := store.DecodeActivation(raw)
	if err != nil {
		return false
	}
	x, _ := json.Marshal(got)
	y, _ := json.Marshal(a)
	return string(x) == string(y)
}

// GetActivation implements activation.Store.
func (s *Store) GetActivation(ctx context.Context, namespace, id string) (*activation.WhiskActivation, error) {
	docID := namespace + "/" + id
	raw, _, err := s.getRaw(ctx, s.activations, docID)
	if err != nil {
		return nil, fmt.Errorf("couchbase: get activation %s: %w", docID, err)
	}
	a, err := store.DecodeActivation(raw)
	if err != nil {
		return nil, fmt.Errorf("couchbase: get activation %s: %w", docID, err)
	}
	return a, nil
}

type indexEntry struct {
	id    string
	start int64
	path  string
}

// ListActivations implements store.Store from the day indexes (package comment).
func (s *Store) ListActivations(ctx context.Context, q store.ActivationQuery) ([]*activation.WhiskActivation, error) {
	fail := func(err error) ([]*activation.WhiskActivation, error) {
		return nil, fmt.Errorf("couchbase: list activations %s: %w", q.Namespace, err)
	}
	raw, _, err := s.getRaw(ctx, s.indexes, "activations/"+q.Namespace)
	if errors.Is(err, activation.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return fail(err)
	}
	var days struct {
		D map[string]bool `json:"d"`
	}
	if err := json.Unmarshal(raw, &days); err != nil {
		return fail(err)
	}
	var ds []string
	for d := range days.D {
		if (!q.Since.IsZero() && d < day(q.Since.UnixMilli())) || (!q.Upto.IsZero() && d > day(q.Upto.UnixMilli())) {
			continue
		}
		ds = append(ds, d)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(ds)))
	want := q.Skip + q.Limit
	var picked []indexEntry
	for _, d := range ds {
		if q.Limit > 0 && len(picked) >= want {
			break
		}
		raw, _, err := s.getRaw(ctx, s.indexes, "activations/"+q.Namespace+"/"+d)
		if errors.Is(err, activation.ErrNotFound) {
			continue
		}
		if err != nil {
			return fail(err)
		}
		var doc struct {
			E map[string][]json.RawMessage `json:"e"`
		}
		if err := json.Unmarshal(raw, &doc); err != nil {
			return fail(err)
		}
		var es []indexEntry
		for id, v := range doc.E {
			var e indexEntry
			if len(v) != 2 || json.Unmarshal(v[0], &e.start) != nil || json.Unmarshal(v[1], &e.path) != nil {
				continue
			}
			e.id = id
			if (!q.Since.IsZero() && e.start < q.Since.UnixMilli()) || (!q.Upto.IsZero() && e.start > q.Upto.UnixMilli()) ||
				(q.Name != "" && e.path != q.Namespace+"/"+q.Name) {
				continue
			}
			es = append(es, e)
		}
		sort.Slice(es, func(i, j int) bool {
			if es[i].start != es[j].start {
				return es[i].start > es[j].start
			}
			return es[i].id > es[j].id
		})
		picked = append(picked, es...)
	}
	picked = store.Page(picked, q.Skip, q.Limit)
	out := make([]*activation.WhiskActivation, 0, len(picked))
	for _, e := range picked {
		a, err := s.GetActivation(ctx, q.Namespace, e.id)
		if errors.Is(err, activation.ErrNotFound) {
			continue
		}
		if err != nil {
			return fail(err)
		}
		out = append(out, a)
	}
	return out, nil
}
