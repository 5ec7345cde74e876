package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/seuss-go/seuss/activation"
)

const (
	// maxPayloadBytes is whisk.activation.payload.max (1 MB).
	maxPayloadBytes = 1 << 20
	// maxMessageBytes is ActivationEntityLimit.MAX_ACTIVATION_LIMIT: the payload limit
	// plus serdes overhead, the max.message.bytes of invoker{N}.
	maxMessageBytes = maxPayloadBytes + 6068
	// dbPollFallback is how often a blocking invoke reads the store while no ack has
	// said anything, as OpenWhisk's controller polls its activations DB
	// (whisk.controller.activation.polling-from-db) in case an ack is lost.
	dbPollFallback = time.Second
)

// waiter is a blocking invoke in flight.
type waiter struct {
	// done receives the activation from a ResultMessage or a combined ack.
	done chan *activation.WhiskActivation
	// poll is signalled when an ack says the record is (about to be) in the store: a
	// shrunk response or a completion.
	poll chan struct{}
}

func (s *Server) addWaiter(id string) *waiter {
	wt := &waiter{done: make(chan *activation.WhiskActivation, 1), poll: make(chan struct{}, 1)}
	s.waitMu.Lock()
	s.waiters[id] = wt
	s.waitMu.Unlock()
	return wt
}

func (s *Server) removeWaiter(id string) {
	s.waitMu.Lock()
	delete(s.waiters, id)
	s.waitMu.Unlock()
}

func (s *Server) waiterFor(id string) *waiter {
	s.waitMu.Lock()
	defer s.waitMu.Unlock()
	return s.waiters[id]
}

func (s *Server) invoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	name, err := actionName(r)
	if err != nil {
		s.fail(w, r, "invoke", err)
		return
	}
	q := r.URL.Query()
	blocking := q.Get("blocking") == "true"
	result := q.Get("result") == "true"
	wait := s.cfg.BlockingTimeout
	if v := q.Get("timeout"); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil || ms <= 0 || time.Duration(ms)*time.Millisecond > DefaultBlockingTimeout {
			writeError(w, r, http.StatusBadRequest,
				fmt.Sprintf("Timeout must be number of milliseconds up to %d.", DefaultBlockingTimeout.Milliseconds()))
			return
		}
		wait = time.Duration(ms) * time.Millisecond
	}

	body, err := io.ReadAll(io.LimitReader(r.Body, maxPayloadBytes+1))
	if err != nil {
		s.fail(w, r, "invoke", malformed("%v", err))
		return
	}
	if len(body) > maxPayloadBytes {
		writeError(w, r, http.StatusRequestEntityTooLarge,
			fmt.Sprintf("Payload larger than allowed: more than %d bytes.", maxPayloadBytes))
		return
	}
	payload := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &payload); err != nil {
			s.fail(w, r, "invoke", malformed("the payload must be a JSON object: %v", err))
			return
		}
		if payload == nil { // the body was null
			payload = map[string]json.RawMessage{}
		}
	}

	a, err := s.cfg.Store.GetAction(ctx, GuestNamespace+"/"+name, "")
	if err != nil {
		s.fail(w, r, "invoke", err)
		return
	}

	// Parameters of the action, overridden by the payload (PrimitiveActions:
	// action.parameters merge payload); init parameters are named in initArgs.
	content := map[string]json.RawMessage{}
	initArgs := []string{}
	for _, p := range a.Parameters {
		content[p.Key] = p.Value
		if p.Init {
			initArgs = append(initArgs, p.Key)
		}
	}
	for k, v := range payload {
		content[k] = v
	}
	contentJSON, err := json.Marshal(content)
	if err != nil {
		s.fail(w, r, "invoke", malformed("%v", err))
		return
	}

	id := newActivationID()
	rev := a.Rev
	msg := activation.ActivationMessage{
		TransID:             activation.NewTransactionID(requestTID(r), time.Now().UnixMilli()),
		Action:              activation.FullyQualifiedEntityName{Path: GuestNamespace, Name: a.Name, Version: a.Version},
		Revision:            &rev,
		User:                s.guest,
		ActivationID:        id,
		RootControllerIndex: activation.ControllerInstanceID{AsString: s.cfg.ControllerID, InstanceType: "controller"},
		Blocking:            blocking,
		Content:             contentJSON,
		InitArgs:            initArgs,
		LockedArgs:          map[string]string{},
	}
	value, err := json.Marshal(&msg)
	if err != nil {
		s.fail(w, r, "invoke", err)
		return
	}
	if len(value) > maxMessageBytes {
		writeError(w, r, http.StatusRequestEntityTooLarge, msgRequestEntityTooLarge)
		return
	}

	var wt *waiter
	if blocking {
		wt = s.addWaiter(id)
		defer s.removeWaiter(id)
	}
	if err := s.cfg.Bus.Publish(ctx, s.cfg.InvokerTopic, value); err != nil {
		s.cfg.Logf("controller: invoke %s: publish to %s: %v", name, s.cfg.InvokerTopic, err)
		writeError(w, r, http.StatusServiceUnavailable, msgServiceUnavailable)
		return
	}
	w.Header().Set("x-openwhisk-activation-id", id)
	if !blocking {
		writeJSON(w, http.StatusAccepted, map[string]string{"activationId": id})
		return
	}

	rec, err := s.await(ctx, wt, id, wait)
	if err != nil {
		if ctx.Err() == nil { // blocking timeout: the activation is still running
			writeJSON(w, http.StatusAccepted, map[string]string{"activationId": id})
		}
		return
	}
	status := http.StatusOK
	switch rec.Response.StatusCode {
	case activation.StatusSuccess:
	case activation.StatusApplicationError, activation.StatusDeveloperError:
		status = http.StatusBadGateway
	default:
		status = http.StatusInternalServerError
	}
	if result {
		writeJSON(w, status, resultJSON(rec))
		return
	}
	writeJSON(w, status, extendedJSON(rec))
}

var errWaitTimeout = errors.New("blocking invoke timed out")

// await waits for the activation id of a blocking invoke: from an ack with the record,
// or from the store once an ack says it is there (or, as a fallback, every second).
func (s *Server) await(ctx context.Context, wt *waiter, id string, wait time.Duration) (*activation.WhiskActivation, error) {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	fallback := time.NewTicker(dbPollFallback)
	defer fallback.Stop()
	var fast <-chan time.Time
	for {
		select {
		case a := <-wt.done:
			return a, nil
		case <-wt.poll:
			if fast == nil {
				t := time.NewTicker(s.cfg.PollInterval)
				defer t.Stop()
				fast = t.C
			}
			if a := s.readRecord(ctx, id); a != nil {
				return a, nil
			}
		case <-fast:
			if a := s.readRecord(ctx, id); a != nil {
				return a, nil
			}
		case <-fallback.C:
			if a := s.readRecord(ctx, id); a != nil {
				return a, nil
			}
		case <-deadline.C:
			return nil, errWaitTimeout
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (s *Server) readRecord(ctx context.Context, id string) *activation.WhiskActivation {
	a, err := s.cfg.Store.GetActivation(ctx, GuestNamespace, id)
	if err != nil {
		if !errors.Is(err, activation.ErrNotFound) && ctx.Err() == nil {
			s.cfg.Logf("controller: read activation %s: %v", id, err)
		}
		return nil
	}
	return a
}

// HandleAck processes one message from completed{C}. AcknowledgementMessage.serdes
// dispatches on keys: "instance" and "response" → combined; "instance" alone →
// completion; otherwise a result. A response is the record, or its id when shrunk.
func (s *Server) HandleAck(value []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(value, &m); err != nil {
		return fmt.Errorf("controller: ack: %w", err)
	}
	_, hasInstance := m["instance"]
	resp, hasResponse := m["response"]
	if hasInstance && !hasResponse { // CompletionMessage
		var id string
		if err := json.Unmarshal(m["activationId"], &id); err != nil {
			return fmt.Errorf("controller: completion ack: activationId: %w", err)
		}
		s.signalPoll(id)
		return nil
	}
	if !hasResponse {
		return fmt.Errorf("controller: ack without response or instance")
	}
	resp = bytes.TrimSpace(resp)
	if len(resp) > 0 && resp[0] == '"' { // shrunk: only the id
		var id string
		if err := json.Unmarshal(resp, &id); err != nil {
			return fmt.Errorf("controller: ack: response id: %w", err)
		}
		s.signalPoll(id)
		return nil
	}
	var a activation.WhiskActivation
	if err := json.Unmarshal(resp, &a); err != nil {
		return fmt.Errorf("controller: ack: response: %w", err)
	}
	if wt := s.waiterFor(a.ActivationID); wt != nil {
		select {
		case wt.done <- &a:
		default:
		}
	}
	return nil
}

func (s *Server) signalPoll(id string) {
	if wt := s.waiterFor(id); wt != nil {
		select {
		case wt.poll <- struct{}{}:
		default:
		}
	}
}
