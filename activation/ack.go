package activation

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
)

// Ack is one of the three acknowledgement messages a controller reads on
// completed{C}: *ResultMessage, *CompletionMessage or *CombinedCompletionAndResultMessage.
type Ack interface {
	// Shrink returns the ack with a full activation replaced by its id, as
	// MessagingActiveAck does for non-blocking activations and for acks too large
	// for Kafka. A CompletionMessage is unchanged.
	Shrink() Ack
	ack()
}

func (*ResultMessage) ack()                      {}
func (*CompletionMessage) ack()                  {}
func (*CombinedCompletionAndResultMessage) ack() {}

// Shrink implements Ack.
func (m *ResultMessage) Shrink() Ack {
	c := *m
	c.Response = shrinkResponse(m.Response)
	return &c
}

// Shrink implements Ack.
func (m *CompletionMessage) Shrink() Ack { return m }

// Shrink implements Ack.
func (m *CombinedCompletionAndResultMessage) Shrink() Ack {
	c := *m
	c.Response = shrinkResponse(m.Response)
	return &c
}

// shrinkResponse turns a WhiskActivation object into its activation id string.
func shrinkResponse(r json.RawMessage) json.RawMessage {
	if len(r) == 0 || r[0] != '{' {
		return r
	}
	var a struct {
		ActivationID string `json:"activationId"`
	}
	if json.Unmarshal(r, &a) != nil {
		return r
	}
	b, _ := json.Marshal(a.ActivationID)
	return b
}

// EncodeAck is Marshal(a), the ack as it goes on the wire. The activation of an ack
// the invoker made is already compact JSON: it is copied in as it is, where Marshal
// would scan it again to compact it.
func EncodeAck(a Ack) ([]byte, error) {
	var b []byte
	switch m := a.(type) {
	case *ResultMessage:
		if !m.compact || len(m.TransID.raw) == 0 || len(m.Response) == 0 {
			break
		}
		b = make([]byte, 0, len(m.TransID.raw)+len(m.Response)+32)
		b = append(b, `{"transid":`...)
		b = append(b, m.TransID.raw...)
		b = append(b, `,"response":`...)
		b = append(b, m.Response...)
		return append(b, '}'), nil
	case *CombinedCompletionAndResultMessage:
		if !m.compact || len(m.TransID.raw) == 0 || len(m.Response) == 0 {
			break
		}
		inst, err := Marshal(&m.Instance)
		if err != nil {
			return nil, err
		}
		b = make([]byte, 0, len(m.TransID.raw)+len(m.Response)+len(inst)+64)
		b = append(b, `{"transid":`...)
		b = append(b, m.TransID.raw...)
		b = append(b, `,"response":`...)
		b = append(b, m.Response...)
		b = append(b, `,"isSystemError":`...)
		b = strconv.AppendBool(b, m.IsSystemError)
		b = append(b, `,"instance":`...)
		b = append(b, inst...)
		return append(b, '}'), nil
	}
	return Marshal(a)
}

// AckSender delivers acks to the controller that sent the activation. It is
// implemented by package kafka (topic completed<controller>).
type AckSender interface {
	// SendAck produces ack on the ack topic of controller (rootControllerIndex.asString)
	// and returns once the broker has it. An ack the broker refuses as too large
	// returns an error wrapping ErrAckTooLarge.
	SendAck(ctx context.Context, controller string, ack Ack) error
}

// AckStarter is an AckSender that can also start an ack and be waited for later, so
// that the lifecycle writes the record while a result ack is on its way without a
// goroutine of its own. The returned wait reports what SendAck would have; it must be
// called exactly once.
type AckStarter interface {
	AckSender
	StartAck(ctx context.Context, controller string, ack Ack) (wait func() error)
}

// ErrAckTooLarge: the ack exceeds the broker's message size limit. The lifecycle then
// resends it shrunk.
var ErrAckTooLarge = errors.New("ack too large")

// EventSender publishes user events (topic "events"); optional.
type EventSender interface {
	SendEvent(ctx context.Context, ev *EventMessage) error
}

// AckKind names an ack type for logs and metrics.
func AckKind(a Ack) string {
	switch a.(type) {
	case *ResultMessage:
		return "result"
	case *CompletionMessage:
		return "completion"
	case *CombinedCompletionAndResultMessage:
		return "combined"
	}
	return "unknown"
}
