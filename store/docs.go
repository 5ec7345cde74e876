package store

import (
	"crypto/md5"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/seuss-go/seuss/activation"
)

// Entity types OpenWhisk writes into every document (WhiskEntity.toDocumentRecord); a
// reader rejects a document of another type.
const (
	EntityAction     = "action"
	EntityActivation = "activation"
)

// ActivationDoc is the stored form of an activation record, as OpenWhisk writes it
// (openwhisk-protocol.md §4.1): the record's fields plus _id, entityType and updated
// (epoch ms). Activations are only inserted, so _rev is only ever read.
type ActivationDoc struct {
	ID         string `json:"_id"`
	Rev        string `json:"_rev,omitempty"`
	EntityType string `json:"entityType"`
	Updated    int64  `json:"updated"`
	*activation.WhiskActivation
}

// NewActivationDoc wraps a for storage, stamped with now.
func NewActivationDoc(a *activation.WhiskActivation, now time.Time) ActivationDoc {
	return ActivationDoc{ID: a.DocID(), EntityType: EntityActivation, Updated: now.UnixMilli(), WhiskActivation: a}
}

// DecodeActivation reads a stored activation document; a document of another entity
// type is reported as not found, as OpenWhisk's reader refuses it.
func DecodeActivation(b []byte) (*activation.WhiskActivation, error) {
	var d ActivationDoc
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("decode activation: %w", err)
	}
	if d.WhiskActivation == nil || (d.EntityType != "" && d.EntityType != EntityActivation) {
		return nil, fmt.Errorf("%s is a %q document: %w", d.ID, d.EntityType, activation.ErrNotFound)
	}
	return d.WhiskActivation, nil
}

// DecodeAction reads a stored action document; another entity type is not found.
func DecodeAction(b []byte) (*activation.WhiskAction, error) {
	var a activation.WhiskAction
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("decode action: %w", err)
	}
	if a.EntityType != "" && a.EntityType != EntityAction {
		return nil, fmt.Errorf("%s is a %q document: %w", a.ID, a.EntityType, activation.ErrNotFound)
	}
	return &a, nil
}

// NextRev returns a CouchDB-style revision "<generation>-<md5 hex of body>" following
// prev ("" for a new document). Backends without native revisions use it.
func NextRev(prev string, body []byte) string {
	gen := 0
	if i := strings.IndexByte(prev, '-'); i > 0 {
		gen, _ = strconv.Atoi(prev[:i])
	}
	return fmt.Sprintf("%d-%x", gen+1, md5.Sum(body))
}

// ActivationPath is the record's "path" annotation ("ns/name" or "ns/pkg/name"), or
// "<namespace>/<name>" when it has none.
func ActivationPath(a *activation.WhiskActivation) string {
	var p string
	if raw := a.Annotation("path"); raw != nil && json.Unmarshal(raw, &p) == nil && p != "" {
		return p
	}
	return a.Namespace + "/" + a.Name
}

// Matches reports whether a is selected by q's namespace, name and time range (skip
// and limit aside). Since and Upto are inclusive, as the bounds of OpenWhisk's view
// query are.
func (q ActivationQuery) Matches(a *activation.WhiskActivation) bool {
	if a.Namespace != q.Namespace {
		return false
	}
	if q.Name != "" && ActivationPath(a) != q.Namespace+"/"+q.Name {
		return false
	}
	if !q.Since.IsZero() && a.Start < q.Since.UnixMilli() {
		return false
	}
	if !q.Upto.IsZero() && a.Start > q.Upto.UnixMilli() {
		return false
	}
	return true
}

// SortActivations orders records newest start first (ties: activation id descending,
// so that every backend returns the same order).
func SortActivations(as []*activation.WhiskActivation) {
	sort.Slice(as, func(i, j int) bool {
		if as[i].Start != as[j].Start {
			return as[i].Start > as[j].Start
		}
		return as[i].ActivationID > as[j].ActivationID
	})
}

// SortActions orders actions newest update first (ties: id ascending).
func SortActions(as []*activation.WhiskAction) {
	sort.Slice(as, func(i, j int) bool {
		if as[i].Updated != as[j].Updated {
			return as[i].Updated > as[j].Updated
		}
		return as[i].ID < as[j].ID
	})
}

// Page applies skip and limit (limit <= 0: no limit) to an ordered list.
func Page[T any](xs []T, skip, limit int) []T {
	if skip < 0 {
		skip = 0
	}
	if skip >= len(xs) {
		return nil
	}
	xs = xs[skip:]
	if limit > 0 && limit < len(xs) {
		xs = xs[:limit]
	}
	return xs
}

// InNamespace reports whether an action document id belongs to namespace ns, directly
// ("ns/name") or in one of its packages ("ns/pkg/name").
func InNamespace(docID, ns string) bool { return strings.HasPrefix(docID, ns+"/") }
