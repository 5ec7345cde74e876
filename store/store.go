// Package store holds the artifact store backends: bbolt (the embedded default, one
// file), CouchDB (OpenWhisk's own databases and document layout) and Couchbase. Each
// implements Store, which is activation.Store plus what the standalone controller needs.
//
// This package holds what the backends share: the stored document shapes
// (ActivationDoc, entity types, CouchDB-style revisions), OpenWhisk's code encoding
// (EncodeCode, ReadCode: "mem:" inline below MaxInlineSize, "couch:<uuid>" attachments
// above), the query semantics of listings (ActivationQuery.Matches, SortActivations,
// Page), Retry (per-attempt timeouts, retries of ErrUnavailable), and Spool, the
// bounded on-disk queue that keeps activation records while a backend is down.
//
// Wiring: open a backend (bbolt.Open, couchdb.Open with couchdb.ConfigFromEnv,
// couchbase.Open with couchbase.ConfigFromEnv), wrap it with NewSpool for the invoker,
// and run the spool's Run under the orchestrator's errgroup.
//
// Tests: every backend runs storetest.Run against its real peer (pouchdb-server for
// CouchDB, gocaves for Couchbase), which the tests start themselves from the paths
// .ci/peers installs them to (.peers/, gitignored); see store/internal/peers.
// It must not know about Kafka, the REST API or how actions run.
package store

import (
	"context"
	"time"

	"github.com/seuss-go/seuss/activation"
)

// Store is a complete artifact store.
type Store interface {
	activation.Store

	// PutAction creates (a.Rev == "") or updates (a.Rev == the current revision) an
	// action document and returns its new revision. Creating an existing document or
	// updating a stale revision returns activation.ErrConflict. When code is non-nil the
	// store sets a.Exec.Code itself, as OpenWhisk does: inline "mem:<base64url>" below
	// 16 KiB, else an attachment "couch:<uuid>". When code is nil on an update and
	// a.Exec.Code is empty, the stored code is kept. On success *a becomes the stored
	// document (_id, _rev, entityType, updated, exec.code).
	PutAction(ctx context.Context, a *activation.WhiskAction, code []byte) (rev string, err error)
	// DeleteAction removes the action docID at revision rev ("" for the latest).
	DeleteAction(ctx context.Context, docID, rev string) error
	// ListActions lists a namespace's actions ("ns", including packages "ns/pkg"),
	// newest update first. limit <= 0 means no limit.
	ListActions(ctx context.Context, namespace string, skip, limit int) ([]*activation.WhiskAction, error)
	// ListActivations lists a namespace's records, newest start first (equal starts:
	// activation id descending). Limit <= 0 means no limit.
	ListActivations(ctx context.Context, q ActivationQuery) ([]*activation.WhiskActivation, error)
	// Health reports whether the store answers.
	Health(ctx context.Context) error
	Close() error
}

// ActivationQuery selects records as OpenWhisk's activations list does.
type ActivationQuery struct {
	Namespace string
	// Name, when set, keeps records whose path annotation is "<namespace>/<Name>" (Name
	// may be "pkg/action").
	Name        string
	Since, Upto time.Time // zero: unbounded; compared with the record's start
	Skip, Limit int
}
