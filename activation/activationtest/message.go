package activationtest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/seuss-go/seuss/activation"
)

// GuestUUID and GuestKey are OpenWhisk's default guest credentials (ansible/files/auth.guest).
const (
	GuestUUID = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502"
	GuestKey  = "123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP"
)

// NewActivationID returns a random activation id: 32 lowercase hex digits.
func NewActivationID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Message returns an ActivationMessage as a controller sends it for the guest user:
// action "path/name" at revision rev ("" for null), controller 0, content params
// (nil: none).
func Message(path, name, rev string, blocking bool, params map[string]any) *activation.ActivationMessage {
	m := &activation.ActivationMessage{
		TransID: activation.NewTransactionID(NewActivationID(), time.Now().UnixMilli()),
		Action:  activation.FullyQualifiedEntityName{Path: path, Name: name, Version: "0.0.1"},
		User: activation.Identity{
			Subject:   "guest",
			Namespace: activation.Namespace{Name: "guest", UUID: GuestUUID},
			AuthKey:   activation.AuthKey{APIKey: GuestUUID + ":" + GuestKey},
			Rights:    []string{"READ", "PUT", "DELETE", "ACTIVATE"},
			Limits:    json.RawMessage(`{}`),
		},
		ActivationID:        NewActivationID(),
		RootControllerIndex: activation.ControllerInstanceID{AsString: "0", InstanceType: "controller"},
		Blocking:            blocking,
		InitArgs:            []string{},
		LockedArgs:          map[string]string{},
	}
	if rev != "" {
		m.Revision = &rev
	}
	if params != nil {
		m.Content, _ = json.Marshal(params)
	} else {
		m.Content = json.RawMessage(`{}`)
	}
	return m
}

// Encode is json.Marshal that panics, for tests.
func Encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
