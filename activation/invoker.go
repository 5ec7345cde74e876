package activation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
)

// Config wires an Invoker.
type Config struct {
	// InstanceID is N of invoker{N}.
	InstanceID int
	// UserMemoryMB is the memory shared by running activations (OpenWhisk's
	// whisk.container-pool.user-memory); default 2048.
	UserMemoryMB int
	// Instance is written into acks and pings; derived from InstanceID and UserMemoryMB
	// when zero.
	Instance *InvokerInstanceID

	Store    Store       // required
	Executor Executor    // required
	Acks     AckSender   // required
	Events   EventSender // optional: user events on "events"
	Observer Observer    // optional: metrics
	Logger   *slog.Logger

	// Limits bound action limits and response sizes; zero means DefaultSystemLimits.
	Limits SystemLimits
	// ActionCacheSize bounds the cache of actions by (id, revision); default 1024.
	ActionCacheSize int
	// RecordRetry is how long writing a record is retried while the store is
	// unavailable before the record is given up (the acks are still sent); default 1 min.
	RecordRetry time.Duration
	// AckRetry is how long sending an ack is retried (broker away, ack topic missing)
	// before Handle gives up with an error, leaving the message uncommitted so that
	// it is acked again from its record on redelivery; default 5 min.
	AckRetry time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Observer receives the lifecycle's events, for metrics. Implementations must be safe
// for concurrent use.
type Observer interface {
	// Malformed: a message was dropped because it is not an ActivationMessage.
	Malformed(err error)
	// Redelivered: a message whose activation already has a record was acked again.
	Redelivered()
	// Completed: an activation was run (path H/W/C/B, or "" when it never ran) and
	// acked; latency is from receiving the message to the last ack.
	Completed(path Path, status int, latency time.Duration)
}

// Invoker runs activations: the lifecycle of openwhisk-protocol.md §2.1-§6 on top of
// an Executor and a Store, acking through an AckSender. It is safe for concurrent use:
// the caller (package kafka) calls Handle once per message, concurrently up to
// MaxConcurrent; running activations share UserMemoryMB by their memory limits.
type Invoker struct {
	cfg      Config
	instance InvokerInstanceID
	log      *slog.Logger
	mem      *semaphore.Weighted

	cacheMu sync.Mutex
	cache   map[cacheKey]*cachedAction
	order   []cacheKey // insertion order, for eviction

	flightMu sync.Mutex
	inflight map[string]chan struct{} // activation id → closed when done

	recent recentIDs
}

// recentIDs holds the last activation ids handled, up to a bound (the oldest go first).
type recentIDs struct {
	mu   sync.Mutex
	ids  map[string]struct{}
	ring []string
	next int
}

// recentBound is how many ids recentIDs keeps: a resent message comes within a
// producer's retry time, seconds, long before this many other activations.
const recentBound = 1 << 16

// add records id and reports whether it was not there yet.
func (r *recentIDs) add(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.ids[id]; ok {
		return false
	}
	if r.ids == nil {
		r.ids = make(map[string]struct{})
	}
	if len(r.ring) < recentBound {
		r.ring = append(r.ring, id)
	} else {
		delete(r.ids, r.ring[r.next])
		r.ring[r.next] = id
		r.next = (r.next + 1) % recentBound
	}
	r.ids[id] = struct{}{}
	return true
}

type cacheKey struct{ id, rev string }

type cachedAction struct {
	action *WhiskAction
	code   string
	digest string // CodeDigest(code), computed once per revision
}

// NewInvoker checks cfg and returns an Invoker.
func NewInvoker(cfg Config) (*Invoker, error) {
	if cfg.Store == nil || cfg.Executor == nil || cfg.Acks == nil {
		return nil, errors.New("activation: invoker needs a Store, an Executor and an AckSender")
	}
	if cfg.UserMemoryMB <= 0 {
		cfg.UserMemoryMB = 2048
	}
	if cfg.Limits == (SystemLimits{}) {
		cfg.Limits = DefaultSystemLimits()
	}
	if cfg.ActionCacheSize <= 0 {
		cfg.ActionCacheSize = 1024
	}
	if cfg.RecordRetry <= 0 {
		cfg.RecordRetry = time.Minute
	}
	if cfg.AckRetry <= 0 {
		cfg.AckRetry = 5 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	inst := NewInvokerInstanceID(cfg.InstanceID, cfg.UserMemoryMB)
	if cfg.Instance != nil {
		inst = *cfg.Instance
	}
	return &Invoker{
		cfg:      cfg,
		instance: inst,
		log:      cfg.Logger.With("invoker", cfg.InstanceID),
		mem:      semaphore.NewWeighted(int64(cfg.UserMemoryMB)),
		cache:    map[cacheKey]*cachedAction{},
		inflight: map[string]chan struct{}{},
	}, nil
}

// Instance is the InvokerInstanceId written in acks and pings.
func (inv *Invoker) Instance() InvokerInstanceID { return inv.instance }

// MaxConcurrent is how many messages the consumer should hand over at once: as many
// as the smallest actions (128 MB) fit in user memory, OpenWhisk's maximumContainers.
// Activations beyond what memory admits wait inside Handle, so the consumer pauses
// instead of buffering.
func (inv *Invoker) MaxConcurrent() int {
	n := inv.cfg.UserMemoryMB / 128
	if n < 1 {
		n = 1
	}
	return n
}

// Handle processes one raw message from invoker{N}. A malformed message is logged,
// counted and dropped (nil: commit it). A non-nil error means the message was not
// completely handled (ctx ended before its acks were produced): do not commit it; it
// will be handled again on redelivery, where an existing record is acked, not rerun.
func (inv *Invoker) Handle(ctx context.Context, raw []byte) error {
	return inv.handle(ctx, raw, true)
}

// HandleFirst is Handle for a message that the caller knows no consumer has been
// handed before (package kafka: produced after this consumer was given its
// partition). Such a message has a record only if its activation id came before in
// another message (a controller's producer retry, a resend) that this invoker handled;
// the invoker remembers the ids it handled lately, and asks the store only for those.
func (inv *Invoker) HandleFirst(ctx context.Context, raw []byte) error {
	return inv.handle(ctx, raw, false)
}

func (inv *Invoker) handle(ctx context.Context, raw []byte, redelivery bool) error {
	m, err := DecodeActivationMessage(raw)
	if err != nil {
		inv.log.Warn("dropping malformed activation message", "err", err, "bytes", len(raw))
		if inv.cfg.Observer != nil {
			inv.cfg.Observer.Malformed(err)
		}
		return nil
	}
	return inv.process(ctx, m, redelivery)
}

// Process runs one decoded activation through the lifecycle and produces its acks.
func (inv *Invoker) Process(ctx context.Context, m *ActivationMessage) error {
	return inv.process(ctx, m, true)
}

// process is Process; redelivery false skips the look for an existing record.
func (inv *Invoker) process(ctx context.Context, m *ActivationMessage, redelivery bool) error {
	received := inv.cfg.Now()
	if err := inv.enter(ctx, m.ActivationID); err != nil {
		return err
	}
	defer inv.leave(m.ActivationID)
	if !inv.recent.add(m.ActivationID) {
		redelivery = true // handled here before: look for its record
	}
	log := &actLog{inv: inv, m: m}

	// A redelivered message whose activation already has a record is acked again from
	// the record, never run a second time.
	if redelivery && m.User.StoreActivations() {
		rec, err := inv.cfg.Store.GetActivation(ctx, m.User.Namespace.Name, m.ActivationID)
		if err == nil && rec != nil {
			log.get().Info("activation already recorded; acking again")
			if inv.cfg.Observer != nil {
				inv.cfg.Observer.Redelivered()
			}
			return inv.reack(ctx, m, rec)
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			log.get().Warn("checking for an existing record failed; running", "err", err)
		}
	}

	ca, fail := inv.fetch(ctx, m)
	var action *WhiskAction
	if fail == nil {
		action = ca.action
	}
	if fail == nil {
		if err := inv.cfg.Limits.checkLimits(action.Limits, m.User, inv.cfg.UserMemoryMB); err != nil {
			r := Response(StatusApplicationError, errorResult(err.Error()), nil)
			fail = &r
		}
	}
	if fail != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return inv.fallback(ctx, m, *fail, received, log)
	}

	limits := Limits{
		Timeout:  time.Duration(action.Limits.Timeout) * time.Millisecond,
		MemoryMB: action.Limits.Memory,
		LogBytes: action.Limits.Logs << 20,
	}
	if err := inv.mem.Acquire(ctx, int64(action.Limits.Memory)); err != nil {
		return err
	}
	if len(m.LockedArgs) > 0 {
		// whisk.parameter-storage is "off" by default; seuss has no keys to decrypt
		// with, so encrypted parameters reach the action as the controller sent them.
		log.get().Warn("encrypted parameters (lockedArgs) are passed on undecrypted", "params", len(m.LockedArgs))
	}
	initMsg, runMsg := BuildMessages(m, action, ca.code, inv.cfg.Now())
	job := &Job{
		Key: ActionKey{
			Namespace:  m.User.Namespace.Name,
			FQN:        m.Action.DocID(),
			Revision:   action.Rev,
			CodeDigest: ca.digest,
		},
		Kind:   action.Exec.Kind,
		Init:   initMsg,
		Run:    runMsg,
		Limits: limits,
	}
	out, err := inv.cfg.Executor.Run(ctx, job)
	inv.mem.Release(int64(action.Limits.Memory))
	if err != nil {
		if ctx.Err() != nil {
			// Shutting down: leave the message uncommitted; it runs again later.
			return ctx.Err()
		}
		log.get().Error("executor could not run the activation", "err", err)
		r := Response(StatusWhiskError, errorResult(msgProvisionFailed), nil)
		return inv.finishFailed(ctx, m, action, r, received, log)
	}

	resp := OutcomeResponse(out, limits, inv.cfg.Limits.responseLimits(m.User))
	rec := inv.record(m, action, out, limits, resp)
	split := action.Limits.Logs != 0
	isSys := resp.StatusCode == StatusWhiskError

	if m.Blocking && split {
		// The record is written while the result ack is on its way: the result does
		// not wait for the store, and the completion, which must follow both (a
		// completed activation always has its record, so that a redelivery is acked
		// from it and never run again), waits for the longer of the two, not their sum.
		if err := inv.sendActivationWhile(ctx, m, rec, func() { inv.store(ctx, m, rec, log) }); err != nil {
			return err
		}
	} else {
		inv.store(ctx, m, rec, log)
	}
	if m.Blocking && !split {
		if err := inv.sendCombined(ctx, m, rec); err != nil {
			return err
		}
	} else if err := inv.sendCompletion(ctx, m, isSys); err != nil {
		return err
	}
	inv.event(ctx, m, rec, action.Limits.Memory, log)
	if inv.cfg.Observer != nil {
		inv.cfg.Observer.Completed(out.Path, resp.StatusCode, inv.cfg.Now().Sub(received))
	}
	return nil
}

// enter waits until no other Process of the same activation id is running, then marks
// it as running. A message redelivered while its first delivery still runs (after a
// group rebalance) therefore finds the record and is acked, not run again.
func (inv *Invoker) enter(ctx context.Context, id string) error {
	for {
		inv.flightMu.Lock()
		ch, busy := inv.inflight[id]
		if !busy {
			inv.inflight[id] = make(chan struct{})
			inv.flightMu.Unlock()
			return nil
		}
		inv.flightMu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (inv *Invoker) leave(id string) {
	inv.flightMu.Lock()
	ch := inv.inflight[id]
	delete(inv.inflight, id)
	inv.flightMu.Unlock()
	close(ch)
}

// fetch returns the action and its code, or the response of a fallback activation
// (openwhisk-protocol.md §2.1 step 3, §5.2).
func (inv *Invoker) fetch(ctx context.Context, m *ActivationMessage) (*cachedAction, *ActivationResponse) {
	docID := m.Action.DocID()
	rev := ""
	if m.Revision != nil {
		rev = *m.Revision
		if c := inv.cached(docID, rev); c != nil {
			return c, nil
		}
	}
	a, err := inv.cfg.Store.GetAction(ctx, docID, rev)
	if errors.Is(err, ErrRevisionMismatch) {
		inv.log.Info("action revision mismatch; fetching the latest", "action", docID, "rev", rev)
		rev = ""
		a, err = inv.cfg.Store.GetAction(ctx, docID, "")
	}
	fail := func(status int, msg string) (*cachedAction, *ActivationResponse) {
		r := Response(status, errorResult(msg), nil)
		return nil, &r
	}
	switch {
	case errors.Is(err, ErrNotFound):
		return fail(StatusApplicationError, msgNotFound)
	case err != nil:
		inv.log.Error("fetching action failed", "action", docID, "err", err)
		return fail(StatusWhiskError, msgNotFetched)
	case a == nil || (a.EntityType != "" && a.EntityType != "action") || a.Exec.Kind == "sequence" || a.Exec.Kind == "":
		return fail(StatusWhiskError, msgNotCompatible)
	}
	code, err := ResolveCode(ctx, inv.cfg.Store, a)
	if errors.Is(err, errIncompatible) {
		inv.log.Error("action code unusable", "action", docID, "err", err)
		return fail(StatusWhiskError, msgNotCompatible)
	} else if err != nil {
		inv.log.Error("fetching action code failed", "action", docID, "err", err)
		return fail(StatusWhiskError, msgNotFetched)
	}
	c := &cachedAction{action: a, code: code, digest: CodeDigest(code)}
	if m.Revision != nil {
		// Cache only what was asked for by revision; a null revision means "latest"
		// and is never served from the cache.
		inv.put(docID, a.Rev, c)
	}
	return c, nil
}

func (inv *Invoker) cached(id, rev string) *cachedAction {
	inv.cacheMu.Lock()
	defer inv.cacheMu.Unlock()
	return inv.cache[cacheKey{id, rev}]
}

func (inv *Invoker) put(id, rev string, c *cachedAction) {
	if rev == "" {
		return
	}
	inv.cacheMu.Lock()
	defer inv.cacheMu.Unlock()
	k := cacheKey{id, rev}
	if _, ok := inv.cache[k]; ok {
		return
	}
	inv.cache[k] = c
	inv.order = append(inv.order, k)
	for len(inv.order) > inv.cfg.ActionCacheSize {
		delete(inv.cache, inv.order[0])
		inv.order = inv.order[1:]
	}
}

// fallback records and acks an activation that never ran (fetch or limits error): a
// Combined ack, shrunk when non-blocking, then the record (§2.1, §3.4).
func (inv *Invoker) fallback(ctx context.Context, m *ActivationMessage, r ActivationResponse, received time.Time, log *actLog) error {
	log.get().Info("activation not run", "status", r.StatusCode, "result", string(r.Result))
	rec := inv.fallbackRecord(m, r)
	// The record goes first, as for activations that ran, so that an acked activation
	// always has its record; except when the store itself failed: then the ack must not
	// wait for the store.
	storeFirst := r.StatusCode != StatusWhiskError
	if storeFirst {
		inv.store(ctx, m, rec, log)
	}
	if err := inv.sendCombined(ctx, m, rec); err != nil {
		return err
	}
	if !storeFirst {
		inv.store(ctx, m, rec, log)
	}
	inv.event(ctx, m, rec, 0, log) // no limits annotation: memory 0, as EventMessage.from
	if inv.cfg.Observer != nil {
		inv.cfg.Observer.Completed("", r.StatusCode, inv.cfg.Now().Sub(received))
	}
	return nil
}

// finishFailed records and acks an activation the executor could not place: Combined,
// as ContainerProxy does after a failed container start (§3.4).
func (inv *Invoker) finishFailed(ctx context.Context, m *ActivationMessage, a *WhiskAction, r ActivationResponse, received time.Time, log *actLog) error {
	now := inv.cfg.Now()
	rec := inv.record(m, a, &Outcome{RunStart: now, RunEnd: now}, Limits{}, r)
	inv.store(ctx, m, rec, log)
	if err := inv.sendCombined(ctx, m, rec); err != nil {
		return err
	}
	inv.event(ctx, m, rec, a.Limits.Memory, log)
	if inv.cfg.Observer != nil {
		inv.cfg.Observer.Completed("", r.StatusCode, inv.cfg.Now().Sub(received))
	}
	return nil
}

// reack sends the acks of an activation that already has a record: as the table of
// §3.4 says for a finished activation (blocking: result then completion).
func (inv *Invoker) reack(ctx context.Context, m *ActivationMessage, rec *WhiskActivation) error {
	if m.Blocking {
		if err := inv.sendActivation(ctx, m, rec); err != nil {
			return err
		}
	}
	return inv.sendCompletion(ctx, m, rec.Response.StatusCode == StatusWhiskError)
}

// record builds the WhiskActivation of a run (§4.1).
func (inv *Invoker) record(m *ActivationMessage, a *WhiskAction, out *Outcome, limits Limits, resp ActivationResponse) *WhiskActivation {
	now := inv.cfg.Now()
	var start, end time.Time
	cold := !out.InitStart.IsZero()
	switch {
	case !out.RunStart.IsZero():
		start, end = out.RunStart, out.RunEnd
		if cold {
			start = out.InitStart
		}
	case cold:
		start, end = out.InitStart, out.InitEnd
	default:
		start, end = now, now
	}
	if end.IsZero() || end.Before(start) {
		end = start
	}
	var waitFrom time.Time
	if cold {
		waitFrom = out.InitStart
	} else if !out.RunStart.IsZero() {
		waitFrom = out.RunStart
	} else {
		waitFrom = start
	}
	wait := waitFrom.UnixMilli() - m.TransID.StartMillis()
	if wait < 0 || m.TransID.StartMillis() <= 0 {
		wait = 0
	}
	timedOut := errors.Is(out.Err, ErrRunTimeout) || errors.Is(out.Err, ErrInitTimeout) ||
		(limits.Timeout > 0 && !out.RunStart.IsZero() && out.RunEnd.Sub(out.RunStart) >= limits.Timeout)

	limitsJSON, _ := json.Marshal(a.Limits)
	ann := []KeyValue{
		kv("limits", limitsJSON),
		kv("path", jsonString(m.Action.DocID())),
		kv("kind", jsonString(a.Exec.Kind)),
		kv("timeout", []byte(strconv.FormatBool(timedOut))),
	}
	if cold {
		ann = append(ann, kv("initTime", []byte(strconv.FormatInt(out.InitEnd.Sub(out.InitStart).Milliseconds(), 10))))
	}
	ann = append(ann, kv("waitTime", []byte(strconv.FormatInt(wait, 10))))
	if m.Cause != "" {
		ann = append(ann, kv("causedBy", jsonString("sequence")))
	}
	if m.Action.Binding != "" {
		ann = append(ann, kv("binding", jsonString(m.Action.Binding)))
	}
	if out.Path != "" {
		ann = append(ann, kv("seuss.path", jsonString(string(out.Path))))
	}
	version := a.Version
	if version == "" {
		version = m.Action.Version
	}
	if version == "" {
		version = "0.0.1"
	}
	dur := end.UnixMilli() - start.UnixMilli()
	return &WhiskActivation{
		Namespace:    m.User.Namespace.Name,
		Name:         m.Action.Name,
		Subject:      m.User.Subject,
		ActivationID: m.ActivationID,
		Start:        start.UnixMilli(),
		End:          end.UnixMilli(),
		Cause:        m.Cause,
		Response:     resp,
		Logs:         FormatLogs(out, limits, resp.StatusCode, now),
		Version:      version,
		Publish:      false,
		Annotations:  ann,
		Duration:     &dur,
	}
}

// fallbackRecord is generateFallbackActivation: start = end = now, duration 0, the
// message's version, annotations path and kind "unknown" (+ causedBy) (§2.1).
func (inv *Invoker) fallbackRecord(m *ActivationMessage, r ActivationResponse) *WhiskActivation {
	now := inv.cfg.Now().UnixMilli()
	version := m.Action.Version
	if version == "" {
		version = "0.0.1"
	}
	ann := []KeyValue{kv("path", jsonString(m.Action.DocID())), kv("kind", jsonString("unknown"))}
	if m.Cause != "" {
		ann = append(ann, kv("causedBy", jsonString("sequence")))
	}
	zero := int64(0)
	return &WhiskActivation{
		Namespace:    m.User.Namespace.Name,
		Name:         m.Action.Name,
		Subject:      m.User.Subject,
		ActivationID: m.ActivationID,
		Start:        now,
		End:          now,
		Cause:        m.Cause,
		Response:     r,
		Logs:         []string{},
		Version:      version,
		Annotations:  ann,
		Duration:     &zero,
	}
}

// actLog is an activation's logger, made on first use: most activations log nothing,
// and slog's With formats its attributes at once.
type actLog struct {
	inv *Invoker
	m   *ActivationMessage
	l   *slog.Logger
}

func (a *actLog) get() *slog.Logger {
	if a.l == nil {
		a.l = a.inv.log.With("activation", a.m.ActivationID, "action", a.m.Action.DocID(), "tid", a.m.TransID.ID())
	}
	return a.l
}

func kv(k string, v []byte) KeyValue { return KeyValue{Key: k, Value: json.RawMessage(v)} }

func jsonString(s string) []byte {
	b, _ := json.Marshal(s)
	return b
}

// store writes the record unless the user opted out (limits.storeActivations=false).
// A record that already exists is fine (a redelivery raced us); a store that is down
// is retried for RecordRetry, then the record is given up and logged.
func (inv *Invoker) store(ctx context.Context, m *ActivationMessage, rec *WhiskActivation, log *actLog) {
	if !m.User.StoreActivations() {
		return
	}
	deadline := inv.cfg.Now().Add(inv.cfg.RecordRetry)
	backoff := 50 * time.Millisecond
	for {
		err := inv.cfg.Store.PutActivation(ctx, rec)
		if err == nil || errors.Is(err, ErrConflict) {
			return
		}
		if ctx.Err() != nil || inv.cfg.Now().After(deadline) {
			log.get().Error("activation record lost: the store did not take it", "err", err)
			return
		}
		log.get().Warn("writing the activation record failed; retrying", "err", err, "in", backoff)
		if !sleep(ctx, backoff) {
			log.get().Error("activation record lost: shutting down", "err", ctx.Err())
			return
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// activationJSON is the record as acks carry it: without logs (a ResultMessage is sent
// before logs are collected; the controller reads logs from the record).
func activationJSON(rec *WhiskActivation, withLogs bool) json.RawMessage {
	r := *rec
	if !withLogs || r.Logs == nil {
		r.Logs = []string{}
	}
	if r.Annotations == nil {
		r.Annotations = []KeyValue{}
	}
	b, _ := Marshal(&r)
	return b
}

// sendActivation sends a ResultMessage.
func (inv *Invoker) sendActivation(ctx context.Context, m *ActivationMessage, rec *WhiskActivation) error {
	return inv.send(ctx, m, &ResultMessage{TransID: m.TransID, Response: activationJSON(rec, false), compact: true})
}

func (inv *Invoker) sendCombined(ctx context.Context, m *ActivationMessage, rec *WhiskActivation) error {
	return inv.send(ctx, m, &CombinedCompletionAndResultMessage{
		TransID:       m.TransID,
		Response:      activationJSON(rec, true),
		IsSystemError: rec.Response.StatusCode == StatusWhiskError,
		Instance:      inv.instance,
		compact:       true,
	})
}

func (inv *Invoker) sendCompletion(ctx context.Context, m *ActivationMessage, isSystemError bool) error {
	return inv.send(ctx, m, &CompletionMessage{
		TransID:       m.TransID,
		ActivationID:  m.ActivationID,
		IsSystemError: isSystemError,
		Instance:      inv.instance,
	})
}

// send delivers an ack as MessagingActiveAck does: shrunk when the activation is
// non-blocking, resent shrunk when the broker refuses it as too large. Other failures
// (broker away) are retried until ctx ends.
func (inv *Invoker) send(ctx context.Context, m *ActivationMessage, a Ack) error {
	if !m.Blocking {
		a = a.Shrink()
	}
	return inv.resend(ctx, m, a, inv.cfg.Acks.SendAck(ctx, m.RootControllerIndex.AsString, a))
}

// sendActivationWhile sends the ResultMessage of a blocking activation and runs also
// while it is on its way; it returns once both are done, with the send's error. With
// an AckStarter the ack is started, not handed to a goroutine.
func (inv *Invoker) sendActivationWhile(ctx context.Context, m *ActivationMessage, rec *WhiskActivation, also func()) error {
	var a Ack = &ResultMessage{TransID: m.TransID, Response: activationJSON(rec, false), compact: true}
	if !m.Blocking {
		a = a.Shrink()
	}
	if st, ok := inv.cfg.Acks.(AckStarter); ok {
		wait := st.StartAck(ctx, m.RootControllerIndex.AsString, a)
		also()
		return inv.resend(ctx, m, a, wait())
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		also()
	}()
	err := inv.resend(ctx, m, a, inv.cfg.Acks.SendAck(ctx, m.RootControllerIndex.AsString, a))
	<-done
	return err
}

// resend completes sending a after a first attempt that returned err: nil is done;
// otherwise as send says (shrunk when too large, retried while the broker is away).
func (inv *Invoker) resend(ctx context.Context, m *ActivationMessage, a Ack, err error) error {
	ctrl := m.RootControllerIndex.AsString
	backoff := 100 * time.Millisecond
	giveUp := inv.cfg.Now().Add(inv.cfg.AckRetry)
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			err = inv.cfg.Acks.SendAck(ctx, ctrl, a)
		}
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrAckTooLarge) {
			s := a.Shrink()
			if s == a {
				return fmt.Errorf("activation: %s ack of %s too large even shrunk: %w", AckKind(a), m.ActivationID, err)
			}
			inv.log.Warn("ack too large; sending it shrunk", "activation", m.ActivationID, "kind", AckKind(a))
			a = s
			continue
		}
		if ctx.Err() != nil {
			return fmt.Errorf("activation: %s ack of %s: %w", AckKind(a), m.ActivationID, ctx.Err())
		}
		if inv.cfg.Now().After(giveUp) {
			inv.log.Error("giving up sending an ack; the message stays uncommitted", "activation", m.ActivationID, "kind", AckKind(a), "err", err)
			return fmt.Errorf("activation: %s ack of %s: %w", AckKind(a), m.ActivationID, err)
		}
		inv.log.Warn("sending ack failed; retrying", "activation", m.ActivationID, "kind", AckKind(a), "err", err, "in", backoff)
		if !sleep(ctx, backoff) {
			return fmt.Errorf("activation: %s ack of %s: %w", AckKind(a), m.ActivationID, ctx.Err())
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// event publishes the user event of a finished activation (§3.7), if enabled.
func (inv *Invoker) event(ctx context.Context, m *ActivationMessage, rec *WhiskActivation, memory int, log *actLog) {
	if inv.cfg.Events == nil {
		return
	}
	ev := NewEventMessage(rec, "invoker"+strconv.Itoa(inv.cfg.InstanceID), m.User, memory, inv.cfg.Now())
	if ev == nil {
		return
	}
	if err := inv.cfg.Events.SendEvent(ctx, ev); err != nil {
		log.get().Warn("sending user event failed", "err", err)
	}
}

// NewEventMessage is EventMessage.from: nil when the record has no path or kind
// annotation (§3.7).
func NewEventMessage(rec *WhiskActivation, source string, user Identity, memory int, now time.Time) *EventMessage {
	var path, kind string
	if json.Unmarshal(rec.Annotation("path"), &path) != nil || json.Unmarshal(rec.Annotation("kind"), &kind) != nil {
		return nil
	}
	var wait, init int64
	_ = json.Unmarshal(rec.Annotation("waitTime"), &wait)
	_ = json.Unmarshal(rec.Annotation("initTime"), &init)
	var dur int64
	if rec.Duration != nil {
		dur = *rec.Duration
	}
	body := ActivationEvent{
		Name:         path,
		ActivationID: rec.ActivationID,
		StatusCode:   rec.Response.StatusCode,
		Duration:     dur,
		WaitTime:     wait,
		InitTime:     init,
		Kind:         kind,
		Memory:       memory,
		Size:         rec.Response.Size,
	}
	if rec.Cause != "" {
		body.CausedBy = "sequence"
	}
	body.UserDefinedStatusCode = userDefinedStatusCode(rec.Response.Result)
	return &EventMessage{
		Source:    source,
		Body:      body,
		Subject:   rec.Subject,
		Namespace: rec.Namespace,
		UserID:    user.Namespace.UUID,
		EventType: "Activation",
		Timestamp: now.UnixMilli(),
	}
}

// userDefinedStatusCode is result.error.statusCode or result.statusCode, if a number.
func userDefinedStatusCode(result json.RawMessage) *int {
	var r struct {
		StatusCode *int `json:"statusCode"`
		Error      struct {
			StatusCode *int `json:"statusCode"`
		} `json:"error"`
	}
	if json.Unmarshal(result, &r) != nil {
		// "error" may be a string: try the top level alone.
		var top struct {
			StatusCode *int `json:"statusCode"`
		}
		if json.Unmarshal(result, &top) != nil {
			return nil
		}
		return top.StatusCode
	}
	if r.Error.StatusCode != nil {
		return r.Error.StatusCode
	}
	return r.StatusCode
}
