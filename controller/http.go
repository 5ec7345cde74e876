package controller

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"regexp"
)

// Messages, as OpenWhisk words them (common/scala/.../http/ErrorResponse.scala, Messages;
// akka-http's authentication rejections).
const (
	msgResourceDoesNotExist   = "The requested resource does not exist."
	msgConflict               = "Concurrent modification to resource detected."
	msgNotAuthorized          = "The supplied authentication is not authorized to access this resource."
	msgAuthInvalid            = "The supplied authentication is invalid"
	msgAuthMissing            = "The resource requires authentication, which was not supplied with the request"
	msgEntityNameIllegal      = "The name of the entity contains illegal characters."
	msgActivationIDIllegal    = "The activation id is not valid."
	msgMalformed              = "The request content was malformed:\n"
	msgExecUndefined          = "exec undefined"
	msgDocsNotAllowedWithCnt  = "The parameter 'docs' is not permitted with 'count'."
	msgInternalServerError    = "There was an internal server error."
	msgServiceUnavailable     = "The server is currently unavailable (because it is overloaded or down for maintenance)."
	msgRequestEntityTooLarge  = "The request content was too large."
	msgParametersNotAllowed   = "Request defines parameters that are not allowed (e.g., reserved properties)."
	msgActionRemovedWhileInvk = "Action could not be found or may have been deleted."
)

// tidKey carries the request's transaction id in its context.
type tidKey struct{}

// requestTID returns the request's transaction id: the one the auth wrapper assigned
// (the client's X-Request-ID when given, as OpenWhisk does), or a new one.
func requestTID(r *http.Request) string {
	if t, ok := r.Context().Value(tidKey{}).(string); ok {
		return t
	}
	return newTransactionID()
}

var requestIDRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func withTID(r *http.Request) *http.Request {
	tid := r.Header.Get("X-Request-ID")
	if !requestIDRe.MatchString(tid) {
		tid = newTransactionID()
	}
	return r.WithContext(context.WithValue(r.Context(), tidKey{}, tid))
}

// writeError writes OpenWhisk's error body {"error": msg, "code": <transaction id>}.
func writeError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg, "code": requestTID(r)})
}

// writeJSON writes v as the JSON body with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		w.Write([]byte(`{"error":"` + msgInternalServerError + `"}`))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// auth wraps h with basic authentication against the guest key.
func (s *Server) auth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r = withTID(r)
		user, pass, ok := r.BasicAuth()
		if !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="whisk rest service"`)
			writeError(w, r, http.StatusUnauthorized, msgAuthMissing)
			return
		}
		if subtle.ConstantTimeCompare([]byte(user), []byte(GuestUUID)) != 1 ||
			subtle.ConstantTimeCompare([]byte(pass), []byte(GuestKey)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="whisk rest service"`)
			writeError(w, r, http.StatusUnauthorized, msgAuthInvalid)
			return
		}
		h(w, r)
	}
}

// authNS is auth plus the namespace check: "_" is the caller's default namespace, and
// the guest may only reach its own.
func (s *Server) authNS(h http.HandlerFunc) http.HandlerFunc {
	return s.auth(func(w http.ResponseWriter, r *http.Request) {
		ns := r.PathValue("ns")
		if ns != "_" && ns != GuestNamespace {
			writeError(w, r, http.StatusForbidden, msgNotAuthorized)
			return
		}
		h(w, r)
	})
}

// entityNameRe is EntityName's REGEX (EntityPath.scala): word characters, and @ . - and
// space inside; at most 256 characters.
var entityNameRe = regexp.MustCompile(`^([\w]|[\w][\w@ .-]*[\w@.-]+)$`)

func validEntityName(n string) bool {
	return len(n) <= 256 && entityNameRe.MatchString(n)
}

var activationIDRe = regexp.MustCompile(`^[0-9a-f]{32}$`)

// semverRe is SemVer's form: major.minor.patch.
var semverRe = regexp.MustCompile(`^\d+\.\d+\.\d+$`)
