package controller

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/seuss-go/seuss/activation"
)

// Runtime kinds standalone accepts, each resolved to the concrete kind stored in the
// action (OpenWhisk resolves ":default" through its runtimes manifest at create time).
var kindAliases = map[string]string{
	"nodejs:20":      "nodejs:20",
	"nodejs:default": "nodejs:20",
	"python:3.11":    "python:3.11",
	"python:3":       "python:3.11",
	"python:default": "python:3.11",
}

const supportedKinds = "nodejs:20, nodejs:default, python:3.11, python:3, python:default"

// System limits (common/scala/src/main/resources/application.conf, whisk.*-limit).
const (
	minTimeoutMs   = 100
	maxTimeoutMs   = 300000
	minMemoryMB    = 128
	maxMemoryMB    = 512
	maxLogsMB      = 10
	minConcurrency = 1
	maxConcurrency = 1

	maxCodeBytes      = 48 << 20 // whisk.exec-size-limit (Exec.sizeLimit)
	maxParameterBytes = 1 << 20  // whisk.parameter-size-limit (default 1 MB)
	maxPutBodyBytes   = 64 << 20
)

// actionPut is WhiskActionPut: every field optional, merged into an existing action on
// update.
type actionPut struct {
	Exec        *execPut               `json:"exec"`
	Parameters  *[]activation.KeyValue `json:"parameters"`
	Annotations *[]activation.KeyValue `json:"annotations"`
	Limits      *limitsPut             `json:"limits"`
	Version     *string                `json:"version"`
	Publish     *bool                  `json:"publish"`
	// DelAnnotations names annotations an update removes (wsk action update --del-annotation).
	DelAnnotations []string `json:"delAnnotations"`
}

type execPut struct {
	Kind       string          `json:"kind"`
	Code       json.RawMessage `json:"code"`
	Binary     *bool           `json:"binary"`
	Main       string          `json:"main"`
	Image      string          `json:"image"`
	Components []string        `json:"components"`
}

type limitsPut struct {
	Timeout     *json.Number `json:"timeout"`
	Memory      *json.Number `json:"memory"`
	Logs        *json.Number `json:"logs"`
	Concurrency *json.Number `json:"concurrency"`
}

// actionJSON is an action as the API returns it (WhiskAction.serdes): code as text, or
// standard base64 for binary code.
type actionJSON struct {
	Namespace   string                  `json:"namespace"`
	Name        string                  `json:"name"`
	Version     string                  `json:"version"`
	Exec        execJSON                `json:"exec"`
	Annotations []activation.KeyValue   `json:"annotations"`
	Parameters  []activation.KeyValue   `json:"parameters"`
	Limits      activation.ActionLimits `json:"limits"`
	Publish     bool                    `json:"publish"`
	Updated     int64                   `json:"updated,omitempty"`
}

type execJSON struct {
	Kind   string  `json:"kind"`
	Code   *string `json:"code,omitempty"`
	Binary bool    `json:"binary"`
	Main   string  `json:"main,omitempty"`
}

// requestError is a client error with its HTTP status.
type requestError struct {
	status int
	msg    string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &requestError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

func malformed(format string, args ...any) error {
	return &requestError{status: http.StatusBadRequest, msg: msgMalformed + fmt.Sprintf(format, args...)}
}

// fail writes err: a requestError as itself, "not found" as 404, a conflict as 409, the
// rest as 500.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, op string, err error) {
	var re *requestError
	switch {
	case errors.As(err, &re):
		writeError(w, r, re.status, re.msg)
	case errors.Is(err, activation.ErrNotFound):
		writeError(w, r, http.StatusNotFound, msgResourceDoesNotExist)
	case errors.Is(err, activation.ErrConflict), errors.Is(err, activation.ErrRevisionMismatch):
		writeError(w, r, http.StatusConflict, msgConflict)
	case errors.Is(err, activation.ErrUnavailable):
		s.cfg.Logf("controller: %s: %v", op, err)
		writeError(w, r, http.StatusServiceUnavailable, msgServiceUnavailable)
	default:
		s.cfg.Logf("controller: %s: %v", op, err)
		writeError(w, r, http.StatusInternalServerError, msgInternalServerError)
	}
}

// actionName validates the {name} path segment.
func actionName(r *http.Request) (string, error) {
	name := r.PathValue("name")
	if !validEntityName(name) {
		return "", badRequest(msgEntityNameIllegal)
	}
	return name, nil
}

func (s *Server) getAction(w http.ResponseWriter, r *http.Request) {
	name, err := actionName(r)
	if err != nil {
		s.fail(w, r, "get action", err)
		return
	}
	a, err := s.cfg.Store.GetAction(r.Context(), GuestNamespace+"/"+name, "")
	if err != nil {
		s.fail(w, r, "get action", err)
		return
	}
	withCode := r.URL.Query().Get("code") != "false"
	out, err := s.actionOut(r.Context(), a, withCode)
	if err != nil {
		s.fail(w, r, "get action", err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) deleteAction(w http.ResponseWriter, r *http.Request) {
	name, err := actionName(r)
	if err != nil {
		s.fail(w, r, "delete action", err)
		return
	}
	docID := GuestNamespace + "/" + name
	a, err := s.cfg.Store.GetAction(r.Context(), docID, "")
	if err != nil {
		s.fail(w, r, "delete action", err)
		return
	}
	out, err := s.actionOut(r.Context(), a, false)
	if err != nil {
		s.fail(w, r, "delete action", err)
		return
	}
	if err := s.cfg.Store.DeleteAction(r.Context(), docID, a.Rev); err != nil {
		s.fail(w, r, "delete action", err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) listActions(w http.ResponseWriter, r *http.Request) {
	skip, limit, err := listBounds(r, "actions")
	if err != nil {
		s.fail(w, r, "list actions", err)
		return
	}
	if r.URL.Query().Get("count") == "true" {
		all, err := s.cfg.Store.ListActions(r.Context(), GuestNamespace, skip, 0)
		if err != nil {
			s.fail(w, r, "list actions", err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{"actions": len(ownActions(all))})
		return
	}
	list, err := s.cfg.Store.ListActions(r.Context(), GuestNamespace, skip, limit)
	if err != nil {
		s.fail(w, r, "list actions", err)
		return
	}
	// The list view's summary (whisks.v2.1.0/actions): no code, no parameters.
	type summary struct {
		Namespace   string                  `json:"namespace"`
		Name        string                  `json:"name"`
		Version     string                  `json:"version"`
		Publish     bool                    `json:"publish"`
		Annotations []activation.KeyValue   `json:"annotations"`
		Limits      activation.ActionLimits `json:"limits"`
		Exec        struct {
			Binary bool `json:"binary"`
		} `json:"exec"`
		Updated int64 `json:"updated,omitempty"`
	}
	out := []summary{}
	for _, a := range ownActions(list) {
		sm := summary{Namespace: a.Namespace, Name: a.Name, Version: a.Version, Publish: a.Publish,
			Annotations: nonNilKV(a.Annotations), Limits: a.Limits, Updated: a.Updated}
		sm.Exec.Binary = a.Exec.Binary
		out = append(out, sm)
	}
	writeJSON(w, http.StatusOK, out)
}

// ownActions keeps the actions of the namespace itself (standalone has no packages).
func ownActions(list []*activation.WhiskAction) []*activation.WhiskAction {
	out := list[:0:0]
	for _, a := range list {
		if a.Namespace == GuestNamespace {
			out = append(out, a)
		}
	}
	return out
}

// listBounds parses skip and limit as RestApiCommons does: limit defaults to 30, 0
// means the maximum (200).
func listBounds(r *http.Request, collection string) (skip, limit int, err error) {
	const defLimit, maxLimit = 30, 200
	q := r.URL.Query()
	limit = defLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, 0, badRequest("The value '%s' is not an integer for %s.", v, collection)
		}
		if n < 0 || n > maxLimit {
			return 0, 0, badRequest("The value '%d' is not in the range of 0 to %d for %s.", n, maxLimit, collection)
		}
		limit = n
		if n == 0 {
			limit = maxLimit
		}
	}
	if v := q.Get("skip"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, 0, badRequest("The value '%s' is not an integer for %s.", v, collection)
		}
		if n < 0 {
			return 0, 0, badRequest("The value '%d' is not greater than or equal to 0 for %s.", n, collection)
		}
		skip = n
	}
	return skip, limit, nil
}

func (s *Server) putAction(w http.ResponseWriter, r *http.Request) {
	name, err := actionName(r)
	if err != nil {
		s.fail(w, r, "put action", err)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxPutBodyBytes+1))
	if err != nil {
		s.fail(w, r, "put action", malformed("%v", err))
		return
	}
	if len(body) > maxPutBodyBytes {
		writeError(w, r, http.StatusRequestEntityTooLarge, msgRequestEntityTooLarge)
		return
	}
	var put actionPut
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&put); err != nil {
		s.fail(w, r, "put action", malformed("%v", err))
		return
	}
	overwrite := r.URL.Query().Get("overwrite") == "true"
	docID := GuestNamespace + "/" + name
	ctx := r.Context()

	old, err := s.cfg.Store.GetAction(ctx, docID, "")
	switch {
	case errors.Is(err, activation.ErrNotFound):
		old = nil
	case err != nil:
		s.fail(w, r, "put action", err)
		return
	case !overwrite:
		writeError(w, r, http.StatusConflict, msgConflict)
		return
	}

	a, code, err := s.buildAction(ctx, name, &put, old)
	if err != nil {
		s.fail(w, r, "put action", err)
		return
	}
	rev, err := s.cfg.Store.PutAction(ctx, a, code)
	if err != nil {
		s.fail(w, r, "put action", err)
		return
	}
	a.Rev = rev
	out, err := s.actionOut(ctx, a, true)
	if err != nil {
		s.fail(w, r, "put action", err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// buildAction makes the action document for a create (old == nil) or an update, and
// returns it with the code bytes to store (raw bytes for binary code).
func (s *Server) buildAction(ctx context.Context, name string, put *actionPut, old *activation.WhiskAction) (*activation.WhiskAction, []byte, error) {
	if old == nil && put.Exec == nil {
		return nil, nil, badRequest(msgExecUndefined)
	}
	a := &activation.WhiskAction{
		Namespace: GuestNamespace,
		Name:      name,
		Version:   "0.0.1",
		Limits:    activation.DefaultActionLimits(),
	}
	var code []byte
	if old != nil {
		a.Rev = old.Rev
		a.Exec = old.Exec
		a.Parameters = old.Parameters
		a.Limits = old.Limits
		a.Version = upPatch(old.Version)
		a.Publish = old.Publish
		a.Annotations = old.Annotations
	}
	if put.Exec != nil {
		exec, c, err := resolveExec(put.Exec)
		if err != nil {
			return nil, nil, err
		}
		a.Exec, code = exec, c
	} else {
		// An update without exec keeps the code: hand the store the same bytes again.
		c, err := s.codeBytes(ctx, old)
		if err != nil {
			return nil, nil, err
		}
		code = c
	}
	if put.Parameters != nil {
		a.Parameters = *put.Parameters
	}
	if b, _ := json.Marshal(a.Parameters); len(b) > maxParameterBytes {
		return nil, nil, &requestError{status: http.StatusRequestEntityTooLarge,
			msg: fmt.Sprintf("Parameters larger than allowed: %d > %d bytes.", len(b), maxParameterBytes)}
	}
	if put.Limits != nil {
		if err := applyLimits(&a.Limits, put.Limits); err != nil {
			return nil, nil, err
		}
	}
	if put.Version != nil {
		if !semverRe.MatchString(*put.Version) {
			return nil, nil, malformed("bad semantic version %q", *put.Version)
		}
		a.Version = *put.Version
	}
	if put.Publish != nil {
		a.Publish = *put.Publish
	}
	a.Annotations = amendAnnotations(old, put.Annotations, put.DelAnnotations, a.Exec.Kind)
	a.Parameters = nonNilKV(a.Parameters)
	return a, code, nil
}

// resolveExec checks the exec of a PUT and resolves its kind; it returns the exec to
// store (code left for the store to set) and the code bytes.
func resolveExec(e *execPut) (activation.Exec, []byte, error) {
	kind, ok := kindAliases[e.Kind]
	if !ok {
		if e.Kind == "" {
			return activation.Exec{}, nil, malformed("kind '' not in [%s]", supportedKinds)
		}
		return activation.Exec{}, nil, badRequest(
			"The action kind '%s' is not supported by seuss standalone; supported kinds are %s.", e.Kind, supportedKinds)
	}
	var text string
	if len(e.Code) == 0 || json.Unmarshal(e.Code, &text) != nil {
		return activation.Exec{}, nil, malformed("'code' must be a string defined in 'exec' for '%s' actions", e.Kind)
	}
	binary := isBinaryCode(text)
	if e.Binary != nil {
		binary = *e.Binary
	}
	var code []byte
	if binary {
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(text))
		if err != nil {
			return activation.Exec{}, nil, malformed("binary code is not valid base64: %v", err)
		}
		code = b
	} else {
		code = []byte(text)
	}
	if len(code) > maxCodeBytes {
		return activation.Exec{}, nil, &requestError{status: http.StatusRequestEntityTooLarge,
			msg: fmt.Sprintf("Code larger than allowed: %d > %d bytes.", len(code), maxCodeBytes)}
	}
	return activation.Exec{Kind: kind, Binary: binary, Main: e.Main}, code, nil
}

// isBinaryCode mirrors Exec.isBinaryCode: code that decodes as base64 is binary (a zip).
func isBinaryCode(code string) bool {
	t := strings.TrimSpace(code)
	if t == "" || len(t)%4 != 0 {
		return false
	}
	_, err := base64.StdEncoding.DecodeString(t)
	return err == nil
}

// applyLimits validates and merges limits, with the messages of OpenWhisk's TimeLimit,
// MemoryLimit, LogLimit and ConcurrencyLimit.
func applyLimits(l *activation.ActionLimits, p *limitsPut) error {
	num := func(n *json.Number, what string) (int, bool, error) {
		if n == nil {
			return 0, false, nil
		}
		v, err := n.Int64()
		if err != nil {
			return 0, false, malformed("%s limit must be whole number", what)
		}
		return int(v), true, nil
	}
	if v, ok, err := num(p.Timeout, "time"); err != nil {
		return err
	} else if ok {
		if v < minTimeoutMs {
			return malformed("requirement failed: duration %d milliseconds below allowed threshold of %d milliseconds", v, minTimeoutMs)
		}
		if v > maxTimeoutMs {
			return malformed("requirement failed: duration %d milliseconds exceeds allowed threshold of %d milliseconds", v, maxTimeoutMs)
		}
		l.Timeout = v
	}
	if v, ok, err := num(p.Memory, "memory"); err != nil {
		return err
	} else if ok {
		if v < minMemoryMB {
			return malformed("requirement failed: memory %d MB below allowed threshold of %d B", v, minMemoryMB<<20)
		}
		if v > maxMemoryMB {
			return malformed("requirement failed: memory %d MB exceeds allowed threshold of %d B", v, maxMemoryMB<<20)
		}
		l.Memory = v
	}
	if v, ok, err := num(p.Logs, "log"); err != nil {
		return err
	} else if ok {
		if v < 0 {
			return malformed("requirement failed: log size %d MB below allowed threshold of 0 B", v)
		}
		if v > maxLogsMB {
			return malformed("requirement failed: log size %d MB exceeds allowed threshold of %d B", v, maxLogsMB<<20)
		}
		l.Logs = v
	}
	if v, ok, err := num(p.Concurrency, "concurrency"); err != nil {
		return err
	} else if ok {
		if v < minConcurrency {
			return malformed("requirement failed: concurrency %d below allowed threshold of %d", v, minConcurrency)
		}
		if v > maxConcurrency {
			return malformed("requirement failed: concurrency %d exceeds allowed threshold of %d", v, maxConcurrency)
		}
		l.Concurrency = v
	}
	return nil
}

// amendAnnotations is what the controller does to annotations (Actions.scala
// amendAnnotations, execAnnotation): the given ones (or the old ones on an update
// without annotations) less those named in del, "provide-api-key": false added to a new
// action unless given (an update keeps the old value), and "exec": kind last.
func amendAnnotations(old *activation.WhiskAction, given *[]activation.KeyValue, del []string, kind string) []activation.KeyValue {
	var src []activation.KeyValue
	switch {
	case given != nil:
		src = *given
	case old != nil:
		src = old.Annotations
	}
	out := []activation.KeyValue{}
	hasKey := false
	deleted := map[string]bool{}
	for _, k := range del {
		deleted[k] = true
	}
	for _, kv := range src {
		if kv.Key == "exec" || deleted[kv.Key] {
			continue
		}
		if kv.Key == "provide-api-key" {
			hasKey = true
		}
		out = append(out, kv)
	}
	if !hasKey {
		v := json.RawMessage("false")
		if old != nil {
			for _, kv := range old.Annotations {
				if kv.Key == "provide-api-key" {
					v = kv.Value
				}
			}
		}
		out = append(out, activation.KeyValue{Key: "provide-api-key", Value: v})
	}
	kindJSON, _ := json.Marshal(kind)
	return append(out, activation.KeyValue{Key: "exec", Value: kindJSON})
}

// actionOut renders a for the API, with its code when withCode.
func (s *Server) actionOut(ctx context.Context, a *activation.WhiskAction, withCode bool) (*actionJSON, error) {
	out := &actionJSON{
		Namespace:   a.Namespace,
		Name:        a.Name,
		Version:     a.Version,
		Exec:        execJSON{Kind: a.Exec.Kind, Binary: a.Exec.Binary, Main: a.Exec.Main},
		Annotations: nonNilKV(a.Annotations),
		Parameters:  nonNilKV(a.Parameters),
		Limits:      a.Limits,
		Publish:     a.Publish,
		Updated:     a.Updated,
	}
	if withCode {
		b, err := s.codeBytes(ctx, a)
		if err != nil {
			return nil, err
		}
		text := string(b)
		if a.Exec.Binary {
			text = base64.StdEncoding.EncodeToString(b)
		}
		out.Exec.Code = &text
	}
	return out, nil
}

// codeBytes returns an action's code: a plain string, inline "mem:<base64url>", or an
// attachment read from the store (raw bytes for binary code).
func (s *Server) codeBytes(ctx context.Context, a *activation.WhiskAction) ([]byte, error) {
	raw := bytes.TrimSpace(a.Exec.Code)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	if raw[0] == '"' {
		var text string
		if err := json.Unmarshal(raw, &text); err != nil {
			return nil, fmt.Errorf("action %s: code: %w", a.Name, err)
		}
		if a.Exec.Binary {
			return base64.StdEncoding.DecodeString(text)
		}
		return []byte(text), nil
	}
	var att activation.Attachment
	if err := json.Unmarshal(raw, &att); err != nil {
		return nil, fmt.Errorf("action %s: code attachment: %w", a.Name, err)
	}
	if enc, ok := strings.CutPrefix(att.AttachmentName, "mem:"); ok {
		b, err := base64.URLEncoding.DecodeString(enc)
		if err != nil {
			b, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(enc, "="))
		}
		if err != nil {
			return nil, fmt.Errorf("action %s: inline code: %w", a.Name, err)
		}
		return b, nil
	}
	docID := a.Namespace + "/" + a.Name
	return s.cfg.Store.GetAttachment(ctx, docID, att.AttachmentName)
}

func nonNilKV(kv []activation.KeyValue) []activation.KeyValue {
	if kv == nil {
		return []activation.KeyValue{}
	}
	return kv
}

func upPatch(v string) string {
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return "0.0.1"
	}
	n, err := strconv.Atoi(parts[2])
	if err != nil {
		return "0.0.1"
	}
	return parts[0] + "." + parts[1] + "." + strconv.Itoa(n+1)
}
