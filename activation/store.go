package activation

import (
	"context"
	"errors"
)

// Store is the artifact store as the lifecycle needs it. Backends live in package
// store (bbolt, CouchDB, Couchbase).
type Store interface {
	// GetAction returns the action document docID ("ns/name" or "ns/pkg/name"). A
	// non-empty rev must equal the stored revision, else ErrRevisionMismatch.
	GetAction(ctx context.Context, docID, rev string) (*WhiskAction, error)
	// GetAttachment returns an attachment of the action document docID, for code stored
	// as "couch:<name>" (or a legacy relative name).
	GetAttachment(ctx context.Context, docID, name string) ([]byte, error)
	// PutActivation inserts an activation record under a.DocID(). Inserting a record
	// whose id already exists returns ErrConflict and changes nothing.
	PutActivation(ctx context.Context, a *WhiskActivation) error
	// GetActivation returns the record "<namespace>/<id>".
	GetActivation(ctx context.Context, namespace, id string) (*WhiskActivation, error)
}

// Errors stores return, for callers to branch on with errors.Is.
var (
	// ErrNotFound: no document with that id.
	ErrNotFound = errors.New("document not found")
	// ErrRevisionMismatch: the document exists at another revision.
	ErrRevisionMismatch = errors.New("document revision mismatch")
	// ErrConflict: the document already exists (insert) or changed since it was read (update).
	ErrConflict = errors.New("document update conflict")
	// ErrUnavailable: the store could not be reached; the operation may be retried.
	ErrUnavailable = errors.New("store unavailable")
)
