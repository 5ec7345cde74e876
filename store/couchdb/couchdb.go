// Package couchdb is the artifact store on CouchDB's HTTP API, in OpenWhisk's own
// databases and document layout, so that an unmodified OpenWhisk controller and this
// invoker share one database (openwhisk-protocol.md §4, §5, §7).
//
// Databases: WhiskEntity (default "<DB_PREFIX>whisks") holds actions, WhiskActivation
// (default "<DB_PREFIX>activations") holds records. Both are created when missing (and
// again if they disappear, e.g. an in-memory server that restarted).
//
// Documents: actions "_id" = "<ns>/[<pkg>/]<name>", entityType "action", updated (epoch
// ms), the WhiskAction fields; code below 16 KiB inline as "mem:<base64url>", larger code
// as a "couch:<uuid>" attachment uploaded by PUT /{db}/{id}/{uuid}?rev= after the
// document (CouchDbRestStore.attachToCouch). Records "_id" = "<ns>/<activationId>",
// entityType "activation", updated, the WhiskActivation fields, inserted with
// POST /{db}/_bulk_docs, concurrent inserts grouped up to 500 per request as OpenWhisk's
// batching activation store does (or one PUT each with Config.NoBatching). Ids are
// URL-encoded per path segment ("guest%2Fhello").
//
// Listing activations uses a design document of our own in the activations database,
// "_design/seuss.v1", with two JavaScript map views (served by CouchDB and by
// pouchdb-server 4.2.0, which the tests run against):
//
//	by_start: key [namespace, start]       for every document with an activationId
//	by_path:  key [namespace, path, start] path = the "path" annotation ("ns/pkg/name")
//
// queried with descending=true, include_docs=true, skip and limit. Ties in start come
// back by document id descending, i.e. activation id descending. Listing actions reads
// _all_docs between "<ns>/" and "<ns>/\ufff0". OpenWhisk's own design documents
// (whisks.v2.1.0 ...) are neither needed nor touched.
//
// Configuration is OpenWhisk's: whisk.couchdb.{protocol,host,port,username,password,
// provider,databases.{WhiskEntity,WhiskActivation}}, read from the CONFIG_whisk_couchdb_*
// environment variables by ConfigFromEnv. Every request carries basic auth.
package couchdb

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/store"
)

// Config is OpenWhisk's CouchDbConfig plus client settings.
type Config struct {
	Provider      string // "CouchDB" or "Cloudant"; informational
	Protocol      string // "http" or "https"
	Host          string
	Port          int
	Username      string
	Password      string
	WhisksDB      string // whisk.couchdb.databases.WhiskEntity
	ActivationsDB string // whisk.couchdb.databases.WhiskActivation

	Retry      store.Retry  // zero: store.DefaultRetry
	Client     *http.Client // nil: a client with a 5 s dial timeout
	NoBatching bool         // one PUT per activation record instead of _bulk_docs
}

// ConfigFromEnv reads OpenWhisk's environment (CONFIG_whisk_couchdb_* and DB_PREFIX).
// getenv is os.Getenv in production.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c := Config{
		Provider:      getenv("CONFIG_whisk_couchdb_provider"),
		Protocol:      getenv("CONFIG_whisk_couchdb_protocol"),
		Host:          getenv("CONFIG_whisk_couchdb_host"),
		Username:      getenv("CONFIG_whisk_couchdb_username"),
		Password:      getenv("CONFIG_whisk_couchdb_password"),
		WhisksDB:      getenv("CONFIG_whisk_couchdb_databases_WhiskEntity"),
		ActivationsDB: getenv("CONFIG_whisk_couchdb_databases_WhiskActivation"),
	}
	if p := getenv("CONFIG_whisk_couchdb_port"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil {
			return c, fmt.Errorf("couchdb: CONFIG_whisk_couchdb_port %q: %w", p, err)
		}
		c.Port = n
	}
	prefix := getenv("DB_PREFIX")
	if c.WhisksDB == "" {
		c.WhisksDB = prefix + "whisks"
	}
	if c.ActivationsDB == "" {
		c.ActivationsDB = prefix + "activations"
	}
	return c, nil
}

// Store is the CouchDB backend. It implements store.Store.
type Store struct {
	cfg   Config
	base  string // protocol://host:port
	hc    *http.Client
	now   func() time.Time
	batch batcher
}

var _ store.Store = (*Store)(nil)

// Open checks the configuration and creates the databases and the design document when
// missing. An unreachable server fails with activation.ErrUnavailable.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Protocol == "" {
		cfg.Protocol = "http"
	}
	if cfg.Port == 0 {
		cfg.Port = 5984
	}
	if cfg.Host == "" || cfg.WhisksDB == "" || cfg.ActivationsDB == "" {
		return nil, fmt.Errorf("couchdb: host and database names are required")
	}
	if cfg.Retry == (store.Retry{}) {
		cfg.Retry = store.DefaultRetry
	}
	hc := cfg.Client
	if hc == nil {
		hc = &http.Client{Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     90 * time.Second,
		}}
	}
	s := &Store{
		cfg:  cfg,
		base: fmt.Sprintf("%s://%s", cfg.Protocol, net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))),
		hc:   hc,
		now:  time.Now,
	}
	if err := s.retry(ctx, func(ctx context.Context, _ bool) error { return s.ensure(ctx) }); err != nil {
		return nil, err
	}
	return s, nil
}

// Close implements store.Store.
func (s *Store) Close() error {
	s.hc.CloseIdleConnections()
	return nil
}

// designDoc is the activations database's listing views (see the package comment).
const designID = "_design/seuss.v1"

var designDoc = map[string]any{
	"_id":      designID,
	"language": "javascript",
	"views": map[string]any{
		"by_start": map[string]string{"map": `function (doc) {
  if (doc.activationId !== undefined && doc.namespace !== undefined) emit([doc.namespace, doc.start], null);
}`},
		"by_path": map[string]string{"map": `function (doc) {
  if (doc.activationId === undefined || doc.namespace === undefined) return;
  var path = doc.namespace + "/" + doc.name;
  var as = doc.annotations || [];
  for (var i = 0; i < as.length; i++) {
    if (as[i] && as[i].key === "path" && typeof as[i].value === "string") path = as[i].value;
  }
  emit([doc.namespace, path, doc.start], null);
}`},
	},
}

// ensure creates both databases and the design document if missing.
func (s *Store) ensure(ctx context.Context) error {
	for _, db := range []string{s.cfg.WhisksDB, s.cfg.ActivationsDB} {
		resp, body, err := s.do(ctx, http.MethodPut, "/"+url.PathEscape(db), nil, nil, "")
		if err != nil {
			return fmt.Errorf("couchdb: create database %s: %w", db, err)
		}
		if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusPreconditionFailed {
			return fmt.Errorf("couchdb: create database %s: %w", db, statusError(resp, body))
		}
	}
	path := s.docPath(s.cfg.ActivationsDB, designID)
	resp, body, err := s.do(ctx, http.MethodGet, path, nil, nil, "")
	if err != nil {
		return fmt.Errorf("couchdb: read design document: %w", err)
	}
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	if resp.StatusCode != http.StatusNotFound {
		return fmt.Errorf("couchdb: read design document: %w", statusError(resp, body))
	}
	doc, _ := json.Marshal(designDoc)
	resp, body, err = s.do(ctx, http.MethodPut, path, nil, doc, "application/json")
	if err != nil {
		return fmt.Errorf("couchdb: write design document: %w", err)
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusConflict {
		return fmt.Errorf("couchdb: write design document: %w", statusError(resp, body))
	}
	return nil
}

// docPath is /{db}/{id} with the id URL-encoded per segment, as OpenWhisk's
// CouchDbRestClient does ("guest/hello" → "guest%2Fhello"); a design document keeps
// its "_design/" slash.
func (s *Store) docPath(db, id string) string {
	if rest, ok := strings.CutPrefix(id, "_design/"); ok {
		return "/" + url.PathEscape(db) + "/_design/" + url.PathEscape(rest)
	}
	return "/" + url.PathEscape(db) + "/" + url.PathEscape(id)
}

// do sends one request with basic auth and reads the whole answer. Transport failures
// and 5xx answers are activation.ErrUnavailable.
func (s *Store) do(ctx context.Context, method, path string, query url.Values, body []byte, contentType string) (*http.Response, []byte, error) {
	u := s.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, nil, err
	}
	// Always authenticate: pouchdb-server crashes on an anonymous PUT /db once an admin exists.
	req.SetBasicAuth(s.cfg.Username, s.cfg.Password)
	req.Header.Set("Accept", "application/json")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s %s: %w", activation.ErrUnavailable, method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s %s: read answer: %w", activation.ErrUnavailable, method, path, err)
	}
	if resp.StatusCode >= 500 {
		return nil, nil, fmt.Errorf("%w: %s %s: %w", activation.ErrUnavailable, method, path, statusError(resp, b))
	}
	return resp, b, nil
}

type couchError struct {
	Error  string `json:"error"`
	Reason string `json:"reason"`
}

// statusError maps an unexpected answer to the sentinel errors callers branch on.
func statusError(resp *http.Response, body []byte) error {
	var ce couchError
	json.Unmarshal(body, &ce)
	msg := fmt.Sprintf("%s: %s %s", resp.Status, ce.Error, ce.Reason)
	switch resp.StatusCode {
	case http.StatusNotFound:
		return fmt.Errorf("%s: %w", msg, activation.ErrNotFound)
	case http.StatusConflict:
		return fmt.Errorf("%s: %w", msg, activation.ErrConflict)
	}
	return errors.New(msg)
}

// missingDB reports a 404 for the database itself rather than for a document.
func missingDB(resp *http.Response, body []byte) bool {
	if resp.StatusCode != http.StatusNotFound {
		return false
	}
	var ce couchError
	json.Unmarshal(body, &ce)
	return ce.Reason == "no_db_file" || ce.Reason == "Database does not exist."
}

// retry runs op under the configured retry policy.
func (s *Store) retry(ctx context.Context, op func(ctx context.Context, retried bool) error) error {
	return s.cfg.Retry.Do(ctx, op)
}

// call sends a request; when the database is missing it is re-created once and the
// request repeated.
func (s *Store) call(ctx context.Context, method, path string, query url.Values, body []byte, contentType string) (*http.Response, []byte, error) {
	resp, b, err := s.do(ctx, method, path, query, body, contentType)
	if err != nil || !missingDB(resp, b) {
		return resp, b, err
	}
	if err := s.ensure(ctx); err != nil {
		return nil, nil, err
	}
	return s.do(ctx, method, path, query, body, contentType)
}

// Health implements store.Store: the activations database answers to our credentials.
func (s *Store) Health(ctx context.Context) error {
	return s.retry(ctx, func(ctx context.Context, _ bool) error {
		resp, body, err := s.call(ctx, http.MethodGet, "/"+url.PathEscape(s.cfg.ActivationsDB), nil, nil, "")
		if err != nil {
			return fmt.Errorf("couchdb: health: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("couchdb: health: %w", statusError(resp, body))
		}
		return nil
	})
}

// getDoc reads a document's raw JSON.
func (s *Store) getDoc(ctx context.Context, db, id string) ([]byte, error) {
	var out []byte
	err := s.retry(ctx, func(ctx context.Context, _ bool) error {
		resp, body, err := s.call(ctx, http.MethodGet, s.docPath(db, id), nil, nil, "")
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return statusError(resp, body)
		}
		out = body
		return nil
	})
	return out, err
}

// GetAction implements activation.Store.
func (s *Store) GetAction(ctx context.Context, docID, rev string) (*activation.WhiskAction, error) {
	body, err := s.getDoc(ctx, s.cfg.WhisksDB, docID)
	if err != nil {
		return nil, fmt.Errorf("couchdb: get action %s: %w", docID, err)
	}
	a, err := store.DecodeAction(body)
	if err != nil {
		return nil, fmt.Errorf("couchdb: get action %s: %w", docID, err)
	}
	if rev != "" && a.Rev != rev {
		return nil, fmt.Errorf("couchdb: get action %s: have %s, want %s: %w", docID, a.Rev, rev, activation.ErrRevisionMismatch)
	}
	return a, nil
}

// GetAttachment implements activation.Store.
func (s *Store) GetAttachment(ctx context.Context, docID, name string) ([]byte, error) {
	name = strings.TrimPrefix(name, "couch:")
	var out []byte
	err := s.retry(ctx, func(ctx context.Context, _ bool) error {
		resp, body, err := s.call(ctx, http.MethodGet, s.docPath(s.cfg.WhisksDB, docID)+"/"+url.PathEscape(name), nil, nil, "")
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return statusError(resp, body)
		}
		out = body
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("couchdb: get attachment %s/%s: %w", docID, name, err)
	}
	return out, nil
}

type okRev struct {
	OK  bool   `json:"ok"`
	Rev string `json:"rev"`
}

// putDoc writes a document and returns its new revision. Retries are not blind: a
// conflict after an attempt that may have landed is reported to the caller's check.
func (s *Store) putDoc(ctx context.Context, db, id string, body []byte) (rev string, err error) {
	err = s.retry(ctx, func(ctx context.Context, _ bool) error {
		resp, b, err := s.call(ctx, http.MethodPut, s.docPath(db, id), nil, body, "application/json")
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusAccepted {
			return statusError(resp, b)
		}
		var r okRev
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("answer %s: %w", b, err)
		}
		rev = r.Rev
		return nil
	})
	return rev, err
}

// PutAction implements store.Store. Large code is uploaded as an attachment after the
// document, with ?rev= (what both CouchDB and pouchdb-server accept).
func (s *Store) PutAction(ctx context.Context, a *activation.WhiskAction, code []byte) (string, error) {
	docID := a.Namespace + "/" + a.Name
	doc := *a
	doc.ID, doc.EntityType, doc.Updated = docID, store.EntityAction, s.now().UnixMilli()
	var attName, contentType string
	if code != nil {
		var err error
		if attName, contentType, err = store.EncodeCode(&doc, code); err != nil {
			return "", fmt.Errorf("couchdb: put action %s: %w", docID, err)
		}
	}
	body, err := json.Marshal(&doc)
	if err != nil {
		return "", fmt.Errorf("couchdb: put action %s: %w", docID, err)
	}
	if a.Rev != "" && code == nil {
		// Keep the stored code and its attachment stubs: a PUT without _attachments
		// drops them.
		cur, err := s.getDoc(ctx, s.cfg.WhisksDB, docID)
		if errors.Is(err, activation.ErrNotFound) {
			return "", fmt.Errorf("couchdb: put action %s: update of a missing document: %w", docID, activation.ErrConflict)
		}
		if err != nil {
			return "", fmt.Errorf("couchdb: put action %s: %w", docID, err)
		}
		var stored struct {
			Rev         string          `json:"_rev"`
			Exec        json.RawMessage `json:"exec"`
			Attachments json.RawMessage `json:"_attachments"`
		}
		if err := json.Unmarshal(cur, &stored); err != nil {
			return "", fmt.Errorf("couchdb: put action %s: %w", docID, err)
		}
		if stored.Rev != a.Rev {
			return "", fmt.Errorf("couchdb: put action %s: update at %s, stored %s: %w", docID, a.Rev, stored.Rev, activation.ErrConflict)
		}
		var fields map[string]json.RawMessage
		json.Unmarshal(body, &fields)
		if len(doc.Exec.Code) == 0 {
			var se activation.Exec
			if json.Unmarshal(stored.Exec, &se) == nil {
				doc.Exec.Code = se.Code
				fields["exec"], _ = json.Marshal(doc.Exec)
			}
		}
		if len(stored.Attachments) > 0 {
			fields["_attachments"] = stored.Attachments
		}
		body, _ = json.Marshal(fields)
	}
	rev, err := s.putDoc(ctx, s.cfg.WhisksDB, docID, body)
	if errors.Is(err, activation.ErrNotFound) && a.Rev != "" {
		err = fmt.Errorf("update of a missing document: %w", activation.ErrConflict)
	}
	if err != nil {
		return "", fmt.Errorf("couchdb: put action %s: %w", docID, err)
	}
	if attName != "" {
		path := s.docPath(s.cfg.WhisksDB, docID) + "/" + url.PathEscape(attName)
		err = s.retry(ctx, func(ctx context.Context, _ bool) error {
			resp, b, err := s.call(ctx, http.MethodPut, path, url.Values{"rev": {rev}}, code, contentType)
			if err != nil {
				return err
			}
			if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusAccepted {
				return statusError(resp, b)
			}
			var r okRev
			if err := json.Unmarshal(b, &r); err != nil {
				return fmt.Errorf("answer %s: %w", b, err)
			}
			rev = r.Rev
			return nil
		})
		if err != nil {
			if a.Rev == "" {
				// Do not leave a new action whose code is missing.
				s.deleteDoc(context.WithoutCancel(ctx), s.cfg.WhisksDB, docID, rev)
			}
			return "", fmt.Errorf("couchdb: put action %s: upload code attachment: %w", docID, err)
		}
	}
	doc.Rev = rev
	*a = doc
	return rev, nil
}

func (s *Store) deleteDoc(ctx context.Context, db, id, rev string) error {
	return s.retry(ctx, func(ctx context.Context, _ bool) error {
		resp, b, err := s.call(ctx, http.MethodDelete, s.docPath(db, id), url.Values{"rev": {rev}}, nil, "")
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
			return statusError(resp, b)
		}
		return nil
	})
}

// DeleteAction implements store.Store.
func (s *Store) DeleteAction(ctx context.Context, docID, rev string) error {
	if rev == "" {
		a, err := s.GetAction(ctx, docID, "")
		if err != nil {
			return err
		}
		rev = a.Rev
	}
	if err := s.deleteDoc(ctx, s.cfg.WhisksDB, docID, rev); err != nil {
		return fmt.Errorf("couchdb: delete action %s: %w", docID, err)
	}
	return nil
}

type rows struct {
	Rows []struct {
		ID  string          `json:"id"`
		Doc json.RawMessage `json:"doc"`
	} `json:"rows"`
}

func (s *Store) query(ctx context.Context, path string, q url.Values) (*rows, error) {
	var out rows
	err := s.retry(ctx, func(ctx context.Context, _ bool) error {
		resp, body, err := s.call(ctx, http.MethodGet, path, q, nil, "")
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return statusError(resp, body)
		}
		out = rows{}
		return json.Unmarshal(body, &out)
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

func jsonParam(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// ListActions implements store.Store.
func (s *Store) ListActions(ctx context.Context, namespace string, skip, limit int) ([]*activation.WhiskAction, error) {
	r, err := s.query(ctx, "/"+url.PathEscape(s.cfg.WhisksDB)+"/_all_docs", url.Values{
		"startkey":     {jsonParam(namespace + "/")},
		"endkey":       {jsonParam(namespace + "/\ufff0")},
		"include_docs": {"true"},
	})
	if err != nil {
		return nil, fmt.Errorf("couchdb: list actions %s: %w", namespace, err)
	}
	var out []*activation.WhiskAction
	for _, row := range r.Rows {
		if len(row.Doc) == 0 || string(row.Doc) == "null" {
			continue
		}
		var probe struct {
			EntityType string `json:"entityType"`
		}
		if json.Unmarshal(row.Doc, &probe) != nil || probe.EntityType != store.EntityAction {
			continue // packages, triggers, rules share the database
		}
		a, err := store.DecodeAction(row.Doc)
		if err != nil {
			return nil, fmt.Errorf("couchdb: list actions %s: %w", namespace, err)
		}
		out = append(out, a)
	}
	store.SortActions(out)
	return store.Page(out, skip, limit), nil
}

// PutActivation implements activation.Store. Concurrent inserts are grouped into
// POST /{db}/_bulk_docs requests, as OpenWhisk's activation store batches them (see
// batch.go); with Config.NoBatching each record is one PUT.
func (s *Store) PutActivation(ctx context.Context, a *activation.WhiskActivation) error {
	body, err := json.Marshal(store.NewActivationDoc(a, s.now()))
	if err != nil {
		return fmt.Errorf("couchdb: put activation %s: %w", a.DocID(), err)
	}
	if s.cfg.NoBatching {
		err = s.putActivation(ctx, a, body)
	} else {
		err = s.batch.put(ctx, s, &pendingPut{a: a, doc: body, done: make(chan outcome, 1)})
	}
	if err != nil {
		return fmt.Errorf("couchdb: put activation %s: %w", a.DocID(), err)
	}
	return nil
}

// putActivation is one PUT. When an earlier attempt may have landed (a timeout), a
// conflict on the retry is checked against the stored record.
func (s *Store) putActivation(ctx context.Context, a *activation.WhiskActivation, body []byte) error {
	return s.retry(ctx, func(ctx context.Context, retried bool) error {
		resp, b, err := s.call(ctx, http.MethodPut, s.docPath(s.cfg.ActivationsDB, a.DocID()), nil, body, "application/json")
		if err != nil {
			return err
		}
		if resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusAccepted {
			return nil
		}
		err = statusError(resp, b)
		if retried && errors.Is(err, activation.ErrConflict) && s.sameRecord(ctx, a) {
			return nil
		}
		return err
	})
}

// sameRecord reports whether the stored record with a's id is a itself (written by an
// attempt whose answer was lost).
func (s *Store) sameRecord(ctx context.Context, a *activation.WhiskActivation) bool {
	resp, b, err := s.do(ctx, http.MethodGet, s.docPath(s.cfg.ActivationsDB, a.DocID()), nil, nil, "")
	if err != nil || resp.StatusCode != http.StatusOK {
		return false
	}
	got, err := store.DecodeActivation(b)
	if err != nil {
		return false
	}
	x, _ := json.Marshal(got)
	y, _ := json.Marshal(a)
	return bytes.Equal(x, y)
}

// GetActivation implements activation.Store.
func (s *Store) GetActivation(ctx context.Context, namespace, id string) (*activation.WhiskActivation, error) {
	docID := namespace + "/" + id
	body, err := s.getDoc(ctx, s.cfg.ActivationsDB, docID)
	if err != nil {
		return nil, fmt.Errorf("couchdb: get activation %s: %w", docID, err)
	}
	a, err := store.DecodeActivation(body)
	if err != nil {
		return nil, fmt.Errorf("couchdb: get activation %s: %w", docID, err)
	}
	return a, nil
}

// ListActivations implements store.Store with the seuss.v1 views (package comment).
func (s *Store) ListActivations(ctx context.Context, q store.ActivationQuery) ([]*activation.WhiskActivation, error) {
	prefix := []any{q.Namespace}
	view := "by_start"
	if q.Name != "" {
		prefix = append(prefix, q.Namespace+"/"+q.Name)
		view = "by_path"
	}
	// Descending: startkey is the high end. {} sorts after every number, and the bare
	// prefix array before every longer one.
	high := append(append([]any{}, prefix...), map[string]any{})
	if !q.Upto.IsZero() {
		high[len(high)-1] = q.Upto.UnixMilli()
	}
	low := append([]any{}, prefix...)
	if !q.Since.IsZero() {
		low = append(low, q.Since.UnixMilli())
	}
	params := url.Values{
		"descending":   {"true"},
		"include_docs": {"true"},
		"startkey":     {jsonParam(high)},
		"endkey":       {jsonParam(low)},
	}
	if q.Skip > 0 {
		params.Set("skip", strconv.Itoa(q.Skip))
	}
	if q.Limit > 0 {
		params.Set("limit", strconv.Itoa(q.Limit))
	}
	r, err := s.query(ctx, s.docPath(s.cfg.ActivationsDB, designID)+"/_view/"+view, params)
	if err != nil {
		return nil, fmt.Errorf("couchdb: list activations %s: %w", q.Namespace, err)
	}
	out := make([]*activation.WhiskActivation, 0, len(r.Rows))
	for _, row := range r.Rows {
		a, err := store.DecodeActivation(row.Doc)
		if err != nil {
			return nil, fmt.Errorf("couchdb: list activations %s: row %s: %w", q.Namespace, row.ID, err)
		}
		out = append(out, a)
	}
	return out, nil
}
