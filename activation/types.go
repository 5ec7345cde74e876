package activation

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The JSON shapes below are spray-json's, as OpenWhisk writes and reads them
// (openwhisk-protocol.md §2-§5): Option fields that are None are omitted, every other
// field is always written, unknown fields are ignored on reading. Field order in the
// structs is the order OpenWhisk writes.

// TransactionID is OpenWhisk's transid: [id, startMillis] with optional extra elements.
// It is kept as the raw JSON so that acks echo it verbatim: the controller matches the
// health action's completions by the whole value (openwhisk-protocol.md §3.5).
type TransactionID struct {
	raw   json.RawMessage
	id    string
	start int64
}

// NewTransactionID returns the transid [id, startMillis].
func NewTransactionID(id string, startMillis int64) TransactionID {
	raw, _ := json.Marshal([]any{id, startMillis})
	return TransactionID{raw: raw, id: id, start: startMillis}
}

// ID is the transaction id string (the first element).
func (t TransactionID) ID() string { return t.id }

// StartMillis is the transaction's start in epoch milliseconds (the second element).
func (t TransactionID) StartMillis() int64 { return t.start }

// IsZero reports whether t was never set.
func (t TransactionID) IsZero() bool { return len(t.raw) == 0 }

// MarshalJSON writes the transid exactly as it was read.
func (t TransactionID) MarshalJSON() ([]byte, error) {
	if len(t.raw) == 0 {
		return nil, errors.New("activation: empty transid")
	}
	return t.raw, nil
}

// UnmarshalJSON accepts [id, start, ...] and keeps the raw form.
func (t *TransactionID) UnmarshalJSON(b []byte) error {
	if t.unmarshalPlain(b) {
		return nil
	}
	var parts []json.RawMessage
	if err := json.Unmarshal(b, &parts); err != nil {
		return fmt.Errorf("transid: %w", err)
	}
	if len(parts) < 2 {
		return fmt.Errorf("transid: want [id, start, ...], got %d elements", len(parts))
	}
	var id string
	if err := json.Unmarshal(parts[0], &id); err != nil {
		return fmt.Errorf("transid: id: %w", err)
	}
	var start json.Number
	if err := json.Unmarshal(parts[1], &start); err != nil {
		return fmt.Errorf("transid: start: %w", err)
	}
	ms, err := start.Int64()
	if err != nil {
		f, ferr := start.Float64()
		if ferr != nil {
			return fmt.Errorf("transid: start: %w", err)
		}
		ms = int64(f)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, b); err != nil {
		return fmt.Errorf("transid: %w", err)
	}
	*t = TransactionID{raw: compact.Bytes(), id: id, start: ms}
	return nil
}

// unmarshalPlain reads the transid as controllers write it, ["<id>",<start>(,...)]
// with no white space and no escapes, without decoding it three times; b is a JSON
// value encoding/json has checked. Any other form answers false, for the general path.
func (t *TransactionID) unmarshalPlain(b []byte) bool {
	if len(b) < 6 || b[0] != '[' || b[1] != '"' || b[len(b)-1] != ']' {
		return false
	}
	for _, c := range b {
		if c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\\' {
			return false
		}
	}
	q := bytes.IndexByte(b[2:], '"')
	if q < 0 {
		return false
	}
	id := b[2 : 2+q]
	if !utf8.Valid(id) {
		return false
	}
	rest := b[2+q+1:]
	if len(rest) < 3 || rest[0] != ',' {
		return false
	}
	rest = rest[1:]
	n := 0
	for n < len(rest) && (rest[n] >= '0' && rest[n] <= '9' || n == 0 && rest[n] == '-') {
		n++
	}
	if n == 0 || n >= len(rest) || (rest[n] != ',' && rest[n] != ']') {
		return false // a fraction or an exponent: the general path
	}
	ms, err := strconv.ParseInt(string(rest[:n]), 10, 64)
	if err != nil {
		return false
	}
	*t = TransactionID{raw: bytes.Clone(b), id: string(id), start: ms}
	return true
}

// FullyQualifiedEntityName is {"path","name","version"?,"binding"?}; a bare string
// "ns/pkg/name" is accepted on reading.
type FullyQualifiedEntityName struct {
	Path    string `json:"path"`
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	Binding string `json:"binding,omitempty"`
}

// UnmarshalJSON accepts the object form and the string form.
func (f *FullyQualifiedEntityName) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		s = strings.TrimPrefix(s, "/")
		i := strings.LastIndexByte(s, '/')
		if i <= 0 || i == len(s)-1 {
			return fmt.Errorf("action name %q: want namespace[/package]/name", s)
		}
		*f = FullyQualifiedEntityName{Path: s[:i], Name: s[i+1:]}
		return nil
	}
	type plain FullyQualifiedEntityName
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*f = FullyQualifiedEntityName(p)
	return nil
}

// DocID is the action document's id, "path/name".
func (f FullyQualifiedEntityName) DocID() string { return f.Path + "/" + f.Name }

// QualifiedNameWithLeadingSlash is "/path/name", OpenWhisk's __OW_ACTION_NAME.
func (f FullyQualifiedEntityName) QualifiedNameWithLeadingSlash() string {
	return "/" + f.DocID()
}

// Namespace is an identity's namespace.
type Namespace struct {
	Name string `json:"name"`
	UUID string `json:"uuid"`
}

// Identity is the invoking user (openwhisk-protocol.md §2, Identity.scala).
type Identity struct {
	Subject   string          `json:"subject"`
	Namespace Namespace       `json:"namespace"`
	AuthKey   AuthKey         `json:"authkey"`
	Rights    []string        `json:"rights"`
	Limits    json.RawMessage `json:"limits"`
}

// AuthKey is {"api_key": "uuid:key"}.
type AuthKey struct {
	APIKey string `json:"api_key,omitempty"`
}

// StoreActivations reports the user limit storeActivations (absent means true).
func (id Identity) StoreActivations() bool {
	if !mayName(id.Limits, "storeactivations") {
		// Nearly every user's limits: the key is not there, nothing to decode.
		return true
	}
	var l struct {
		StoreActivations *bool `json:"storeActivations"`
	}
	if len(id.Limits) == 0 || json.Unmarshal(id.Limits, &l) != nil || l.StoreActivations == nil {
		return true
	}
	return *l.StoreActivations
}

// ControllerInstanceID is {"asString":"0","instanceType":"controller"}.
type ControllerInstanceID struct {
	AsString     string `json:"asString"`
	InstanceType string `json:"instanceType,omitempty"`
}

// ActivationMessage is what a controller sends on invoker{N} (Message.scala).
type ActivationMessage struct {
	TransID             TransactionID            `json:"transid"`
	Action              FullyQualifiedEntityName `json:"action"`
	Revision            *string                  `json:"revision"` // null for the health action
	User                Identity                 `json:"user"`
	ActivationID        string                   `json:"activationId"`
	RootControllerIndex ControllerInstanceID     `json:"rootControllerIndex"`
	Blocking            bool                     `json:"blocking"`
	Content             json.RawMessage          `json:"content,omitempty"`
	InitArgs            []string                 `json:"initArgs"`
	LockedArgs          map[string]string        `json:"lockedArgs"`
	Cause               string                   `json:"cause,omitempty"`
	TraceContext        map[string]string        `json:"traceContext,omitempty"`
}

// InvokerInstanceID identifies this invoker in pings and acks. Tags and
// DedicatedNamespaces are always written: 2.0.0+ controllers require them (§3.1).
type InvokerInstanceID struct {
	Instance            int      `json:"instance"`
	UserMemory          string   `json:"userMemory"` // ByteSize, e.g. "2147483648 B"
	BusyMemory          string   `json:"busyMemory,omitempty"`
	InstanceType        string   `json:"instanceType"` // "invoker"
	Tags                []string `json:"tags"`
	DedicatedNamespaces []string `json:"dedicatedNamespaces"`
	UniqueName          string   `json:"uniqueName,omitempty"`
	DisplayedName       string   `json:"displayedName,omitempty"`
}

// NewInvokerInstanceID returns the id of invoker n with userMemoryMB of user memory,
// written in bytes as the Scala invoker does.
func NewInvokerInstanceID(n int, userMemoryMB int) InvokerInstanceID {
	return InvokerInstanceID{
		Instance:            n,
		UserMemory:          fmt.Sprintf("%d B", int64(userMemoryMB)<<20),
		InstanceType:        "invoker",
		Tags:                []string{},
		DedicatedNamespaces: []string{},
	}
}

// PingMessage is sent on "health" every second; the JSON key of the instance is "name".
type PingMessage struct {
	Name      InvokerInstanceID `json:"name"`
	IsEnabled *bool             `json:"isEnabled,omitempty"`
}

// ResultMessage completes a waiting blocking request. Response is a WhiskActivation
// object, or the activation id string when shrunk.
type ResultMessage struct {
	TransID  TransactionID   `json:"transid"`
	Response json.RawMessage `json:"response"`

	// compact: Response is compact JSON from Marshal, for EncodeAck.
	compact bool
}

// CompletionMessage frees the controller's slot for the activation.
type CompletionMessage struct {
	TransID       TransactionID     `json:"transid"`
	ActivationID  string            `json:"activationId"`
	IsSystemError bool              `json:"isSystemError"`
	Instance      InvokerInstanceID `json:"instance"`
}

// CombinedCompletionAndResultMessage frees the slot and completes the request at once.
type CombinedCompletionAndResultMessage struct {
	TransID       TransactionID     `json:"transid"`
	Response      json.RawMessage   `json:"response"`
	IsSystemError bool              `json:"isSystemError"`
	Instance      InvokerInstanceID `json:"instance"`

	// compact: Response is compact JSON from Marshal, for EncodeAck.
	compact bool
}

// KeyValue is one entry of OpenWhisk's Parameters (annotations, parameters).
type KeyValue struct {
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"`
	Init  bool            `json:"init,omitempty"`
}

// Status codes of an activation response (ActivationResult.scala).
const (
	StatusSuccess          = 0
	StatusApplicationError = 1
	StatusDeveloperError   = 2
	StatusWhiskError       = 3
)

// ActivationResponse is {"statusCode", "result"?, "size"?}.
type ActivationResponse struct {
	StatusCode int             `json:"statusCode"`
	Result     json.RawMessage `json:"result,omitempty"`
	Size       *int            `json:"size,omitempty"`
}

// WhiskActivation is the activation record (WhiskActivation.scala, §4.1). Start and End
// are epoch milliseconds.
type WhiskActivation struct {
	Namespace    string             `json:"namespace"`
	Name         string             `json:"name"`
	Subject      string             `json:"subject"`
	ActivationID string             `json:"activationId"`
	Start        int64              `json:"start"`
	End          int64              `json:"end"`
	Cause        string             `json:"cause,omitempty"`
	Response     ActivationResponse `json:"response"`
	Logs         []string           `json:"logs"`
	Version      string             `json:"version"`
	Publish      bool               `json:"publish"`
	Annotations  []KeyValue         `json:"annotations"`
	Duration     *int64             `json:"duration,omitempty"`
}

// DocID is the record's document id, "<user namespace>/<activationId>".
func (a *WhiskActivation) DocID() string { return a.Namespace + "/" + a.ActivationID }

// Annotation returns the raw value of annotation key, or nil.
func (a *WhiskActivation) Annotation(key string) json.RawMessage {
	for _, kv := range a.Annotations {
		if kv.Key == key {
			return kv.Value
		}
	}
	return nil
}

// ActionLimits are an action's limits (Limits.scala): timeout ms, memory MB, logs MB.
type ActionLimits struct {
	Timeout     int  `json:"timeout"`
	Memory      int  `json:"memory"`
	Logs        int  `json:"logs"`
	Concurrency int  `json:"concurrency"`
	Instances   *int `json:"instances,omitempty"`
}

// DefaultActionLimits are OpenWhisk's standard limits (application.conf).
func DefaultActionLimits() ActionLimits {
	return ActionLimits{Timeout: 60000, Memory: 256, Logs: 10, Concurrency: 1}
}

// Exec is an action's exec: kind, code (string or attachment object), binary, main.
type Exec struct {
	Kind       string          `json:"kind"`
	Code       json.RawMessage `json:"code,omitempty"`
	Binary     bool            `json:"binary"`
	Main       string          `json:"main,omitempty"`
	Image      string          `json:"image,omitempty"`
	Components []string        `json:"components,omitempty"`
}

// Attachment is the object form of exec.code: "mem:<base64url>" inline code, or
// "couch:<uuid>" (and legacy relative names) for a CouchDB attachment.
type Attachment struct {
	AttachmentName string `json:"attachmentName"`
	AttachmentType string `json:"attachmentType,omitempty"`
	Length         *int64 `json:"length,omitempty"`
	Digest         string `json:"digest,omitempty"`
}

// WhiskAction is an action document (WhiskAction.scala, §5.1). Rev is the store's
// revision of the document (CouchDB _rev).
type WhiskAction struct {
	ID          string       `json:"_id,omitempty"`
	Rev         string       `json:"_rev,omitempty"`
	EntityType  string       `json:"entityType,omitempty"`
	Updated     int64        `json:"updated,omitempty"`
	Namespace   string       `json:"namespace"`
	Name        string       `json:"name"`
	Exec        Exec         `json:"exec"`
	Parameters  []KeyValue   `json:"parameters"`
	Limits      ActionLimits `json:"limits"`
	Version     string       `json:"version"`
	Publish     bool         `json:"publish"`
	Annotations []KeyValue   `json:"annotations"`
}

// EventMessage is the optional user event on "events" (§3.7).
type EventMessage struct {
	Source    string          `json:"source"`
	Body      ActivationEvent `json:"body"`
	Subject   string          `json:"subject"`
	Namespace string          `json:"namespace"`
	UserID    string          `json:"userId"`
	EventType string          `json:"eventType"`
	Timestamp int64           `json:"timestamp"`
}

// ActivationEvent is an EventMessage body of type "Activation".
type ActivationEvent struct {
	Name                  string `json:"name"`
	ActivationID          string `json:"activationId"`
	StatusCode            int    `json:"statusCode"`
	Duration              int64  `json:"duration"`
	WaitTime              int64  `json:"waitTime"`
	InitTime              int64  `json:"initTime"`
	Kind                  string `json:"kind"`
	Conductor             bool   `json:"conductor"`
	Memory                int    `json:"memory"`
	CausedBy              string `json:"causedBy,omitempty"`
	Size                  *int   `json:"size,omitempty"`
	UserDefinedStatusCode *int   `json:"userDefinedStatusCode,omitempty"`
}

// mayName reports whether the JSON text b may hold an object key that encoding/json
// matches to the field key (lower case ASCII): false only when b is plain ASCII without
// escapes and does not contain key in any letter case, which is then certain.
// (encoding/json matches keys case-insensitively, with Unicode folding, and decodes
// escapes; any non-ASCII byte or backslash therefore answers true.)
func mayName(b []byte, key string) bool {
	n := len(key)
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c >= 0x80 || c == '\\' {
			return true
		}
		if i+n <= len(b) && lower(c) == key[0] {
			j := 1
			for ; j < n; j++ {
				if b[i+j] >= 0x80 || lower(b[i+j]) != key[j] {
					break
				}
			}
			if j == n {
				return true
			}
		}
	}
	return false
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
