package controller

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/store"
)

// extendedActivation is WhiskActivation.toExtendedJson: the record with its response as
// {"result", "size", "status", "success"}, and "end" dropped when zero.
type extendedActivation struct {
	Namespace    string                `json:"namespace"`
	Name         string                `json:"name"`
	Subject      string                `json:"subject"`
	ActivationID string                `json:"activationId"`
	Start        int64                 `json:"start"`
	End          int64                 `json:"end,omitempty"`
	Cause        string                `json:"cause,omitempty"`
	Response     extendedResponse      `json:"response"`
	Logs         []string              `json:"logs"`
	Version      string                `json:"version"`
	Publish      bool                  `json:"publish"`
	Annotations  []activation.KeyValue `json:"annotations"`
	Duration     *int64                `json:"duration,omitempty"`
}

// extendedResponse is ActivationResponse.toExtendedJson.
type extendedResponse struct {
	Result  json.RawMessage `json:"result,omitempty"`
	Size    *int            `json:"size,omitempty"`
	Status  string          `json:"status"`
	Success bool            `json:"success"`
}

// statusMessage is ActivationResponse.messageForCode.
func statusMessage(code int) string {
	switch code {
	case activation.StatusSuccess:
		return "success"
	case activation.StatusApplicationError:
		return "application error"
	case activation.StatusDeveloperError:
		return "action developer error"
	default:
		return "whisk internal error"
	}
}

func extendedResponseOf(a *activation.WhiskActivation) extendedResponse {
	return extendedResponse{
		Result:  a.Response.Result,
		Size:    a.Response.Size,
		Status:  statusMessage(a.Response.StatusCode),
		Success: a.Response.StatusCode == activation.StatusSuccess,
	}
}

func extendedJSON(a *activation.WhiskActivation) *extendedActivation {
	out := &extendedActivation{
		Namespace:    a.Namespace,
		Name:         a.Name,
		Subject:      a.Subject,
		ActivationID: a.ActivationID,
		Start:        a.Start,
		End:          a.End,
		Cause:        a.Cause,
		Response:     extendedResponseOf(a),
		Logs:         a.Logs,
		Version:      a.Version,
		Publish:      a.Publish,
		Annotations:  nonNilKV(a.Annotations),
		Duration:     a.Duration,
	}
	if out.Logs == nil {
		out.Logs = []string{}
	}
	if a.End > 0 && a.Start > 0 {
		d := a.End - a.Start
		out.Duration = &d
	}
	return out
}

// resultJSON is WhiskActivation.resultAsJson: the result, {} when there is none.
func resultJSON(a *activation.WhiskActivation) json.RawMessage {
	if len(a.Response.Result) == 0 {
		return json.RawMessage("{}")
	}
	return a.Response.Result
}

// activationSummary is a row of the activations list without docs (the
// whisks-filters.v2.1.0/activations view's value).
type activationSummary struct {
	Namespace    string                `json:"namespace"`
	Name         string                `json:"name"`
	Version      string                `json:"version"`
	Subject      string                `json:"subject"`
	ActivationID string                `json:"activationId"`
	Start        int64                 `json:"start"`
	End          int64                 `json:"end,omitempty"`
	Duration     *int64                `json:"duration,omitempty"`
	Cause        string                `json:"cause,omitempty"`
	StatusCode   int                   `json:"statusCode"`
	Publish      bool                  `json:"publish"`
	Annotations  []activation.KeyValue `json:"annotations"`
}

func (s *Server) listActivations(w http.ResponseWriter, r *http.Request) {
	skip, limit, err := listBounds(r, "activations")
	if err != nil {
		s.fail(w, r, "list activations", err)
		return
	}
	qv := r.URL.Query()
	q := store.ActivationQuery{Namespace: GuestNamespace, Skip: skip, Limit: limit}
	if name := qv.Get("name"); name != "" {
		parts := strings.Split(strings.Trim(name, "/"), "/")
		ok := len(parts) <= 2
		for _, p := range parts {
			ok = ok && validEntityName(p)
		}
		if !ok {
			writeError(w, r, http.StatusBadRequest, "Parameter may be a 'simple' name or 'package-name/simple' name: "+name)
			return
		}
		q.Name = strings.Join(parts, "/")
	}
	for key, dst := range map[string]*time.Time{"since": &q.Since, "upto": &q.Upto} {
		if v := qv.Get(key); v != "" {
			ms, err := strconv.ParseInt(v, 10, 64)
			if err != nil || ms < 0 {
				writeError(w, r, http.StatusBadRequest, "Parameter is not a valid value for epoch seconds: "+v)
				return
			}
			*dst = time.UnixMilli(ms)
		}
	}
	docs := qv.Get("docs") == "true"
	if qv.Get("count") == "true" {
		if docs {
			writeError(w, r, http.StatusBadRequest, msgDocsNotAllowedWithCnt)
			return
		}
		q.Limit = 0
		list, err := s.cfg.Store.ListActivations(r.Context(), q)
		if err != nil {
			s.fail(w, r, "count activations", err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{"activations": len(list)})
		return
	}
	list, err := s.cfg.Store.ListActivations(r.Context(), q)
	if err != nil {
		s.fail(w, r, "list activations", err)
		return
	}
	if docs {
		out := make([]*extendedActivation, 0, len(list))
		for _, a := range list {
			out = append(out, extendedJSON(a))
		}
		writeJSON(w, http.StatusOK, out)
		return
	}
	out := make([]activationSummary, 0, len(list))
	for _, a := range list {
		sm := activationSummary{
			Namespace: a.Namespace, Name: a.Name, Version: a.Version, Subject: a.Subject,
			ActivationID: a.ActivationID, Start: a.Start, End: a.End, Duration: a.Duration, Cause: a.Cause,
			StatusCode: a.Response.StatusCode, Publish: a.Publish, Annotations: nonNilKV(a.Annotations),
		}
		out = append(out, sm)
	}
	writeJSON(w, http.StatusOK, out)
}

// activationFor reads the record named by the {id} path segment, answering the errors.
func (s *Server) activationFor(w http.ResponseWriter, r *http.Request) *activation.WhiskActivation {
	id := r.PathValue("id")
	if !activationIDRe.MatchString(id) {
		writeError(w, r, http.StatusBadRequest, msgActivationIDIllegal)
		return nil
	}
	a, err := s.cfg.Store.GetActivation(r.Context(), GuestNamespace, id)
	if err != nil {
		s.fail(w, r, "get activation", err)
		return nil
	}
	return a
}

func (s *Server) getActivation(w http.ResponseWriter, r *http.Request) {
	if a := s.activationFor(w, r); a != nil {
		writeJSON(w, http.StatusOK, extendedJSON(a))
	}
}

func (s *Server) getActivationLogs(w http.ResponseWriter, r *http.Request) {
	if a := s.activationFor(w, r); a != nil {
		logs := a.Logs
		if logs == nil {
			logs = []string{}
		}
		writeJSON(w, http.StatusOK, map[string][]string{"logs": logs})
	}
}

func (s *Server) getActivationResult(w http.ResponseWriter, r *http.Request) {
	if a := s.activationFor(w, r); a != nil {
		writeJSON(w, http.StatusOK, extendedResponseOf(a))
	}
}
