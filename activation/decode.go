package activation

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// ErrMalformed is wrapped by every error DecodeActivationMessage returns: the message
// cannot be an ActivationMessage. OpenWhisk's invoker logs and drops such messages
// without an ack (openwhisk-protocol.md §2.1); so does this one.
var ErrMalformed = errors.New("malformed activation message")

// MaxMessageBytes is the largest ActivationMessage accepted: OpenWhisk's
// MAX_ACTIVATION_LIMIT, payload.max 1 MiB + 6068 bytes of serdes overhead.
const MaxMessageBytes = 1048576 + 6068

// DecodeActivationMessage parses and checks one message from invoker{N}. Unknown fields
// are ignored, as spray-json does. The error wraps ErrMalformed and says which field is
// wrong; it never panics on any input.
func DecodeActivationMessage(b []byte) (*ActivationMessage, error) {
	if len(b) > MaxMessageBytes {
		return nil, fmt.Errorf("%w: %d bytes > %d", ErrMalformed, len(b), MaxMessageBytes)
	}
	if !utf8.Valid(b) {
		return nil, fmt.Errorf("%w: not UTF-8", ErrMalformed)
	}
	var m ActivationMessage
	// json.Unmarshal refuses anything but white space after the object, as a
	// Decoder's More would, without copying the message into a Decoder's buffer.
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return &m, nil
}

func (m *ActivationMessage) validate() error {
	if m.TransID.IsZero() {
		return errors.New("transid missing")
	}
	if m.Action.Path == "" || m.Action.Name == "" {
		return errors.New("action: path and name required")
	}
	if !isActivationID(m.ActivationID) {
		return fmt.Errorf("activationId %q: want 32 lowercase hex digits", truncate(m.ActivationID, 64))
	}
	if m.User.Namespace.Name == "" {
		return errors.New("user.namespace.name missing")
	}
	if m.User.Subject == "" {
		return errors.New("user.subject missing")
	}
	if !isTopicSuffix(m.RootControllerIndex.AsString) {
		return fmt.Errorf("rootControllerIndex.asString %q: want a non-empty Kafka topic name part", truncate(m.RootControllerIndex.AsString, 64))
	}
	if m.Revision != nil && *m.Revision == "" {
		m.Revision = nil
	}
	switch c := bytes.TrimSpace(m.Content); {
	case len(c) == 0 || string(c) == "null":
		m.Content = nil
	case c[0] == '{' || c[0] == '[':
	default:
		return errors.New("content: want a JSON object or array")
	}
	if m.InitArgs == nil {
		m.InitArgs = []string{}
	}
	if m.LockedArgs == nil {
		m.LockedArgs = map[string]string{}
	}
	return nil
}

// isActivationID reports whether s is an ActivationId: 32 characters [0-9a-f]
// (ActivationId.scala parse).
func isActivationID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// MarshalJSON writes the message as a controller does: initArgs, lockedArgs, rights and
// limits are never null (spray-json readers require them).
func (m ActivationMessage) MarshalJSON() ([]byte, error) {
	type plain ActivationMessage
	p := plain(m)
	if p.InitArgs == nil {
		p.InitArgs = []string{}
	}
	if p.LockedArgs == nil {
		p.LockedArgs = map[string]string{}
	}
	if p.User.Rights == nil {
		p.User.Rights = []string{}
	}
	if len(p.User.Limits) == 0 {
		p.User.Limits = json.RawMessage("{}")
	}
	return json.Marshal(p)
}

// isTopicSuffix reports whether "completed"+s is a legal Kafka topic name: at most 249
// characters of [a-zA-Z0-9._-].
func isTopicSuffix(s string) bool {
	if s == "" || len(s) > 240 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
