// Package controller is standalone mode's OpenWhisk controller: the subset of the REST API
// that wsk and openwhisk-client-go call (actions, invocations, activations), with
// OpenWhisk's guest namespace and key, on top of an artifact store and a Kafka bus.
//
// Invocations take the same wire path as in an OpenWhisk deployment: the controller
// publishes an ActivationMessage to invoker{N} and completes blocking requests from the
// acks that arrive on completed{C} (ResultMessage, CombinedCompletionAndResultMessage;
// a shrunk ack or a completion makes it read the record from the store). So standalone
// mode exercises the invoker exactly as production does.
//
// The package knows nothing of how the invoker runs actions, and nothing of the store's
// backend: it sees store.Store and a Bus.
package controller

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log"
	"net/http"
	"sync"
	"time"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/store"
)

// OpenWhisk's guest credentials and namespace (ansible/files/auth.guest).
const (
	GuestUUID      = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502"
	GuestKey       = "123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP"
	GuestAuth      = GuestUUID + ":" + GuestKey
	GuestNamespace = "guest"
)

// DefaultBlockingTimeout is how long a blocking invoke waits before answering 202
// (WhiskActionsApi.maxWaitForBlockingActivation).
const DefaultBlockingTimeout = 60 * time.Second

// Bus is the controller's side of Kafka: it publishes activation messages to an
// invoker's topic. Acks come back through Server.HandleAck, health pings through
// Server.HandlePing (KafkaBus.Run feeds both).
type Bus interface {
	Publish(ctx context.Context, topic string, value []byte) error
}

// Config configures a Server.
type Config struct {
	// Store holds actions and activation records.
	Store store.Store
	// Bus carries ActivationMessages to the invoker.
	Bus Bus
	// InvokerTopic is where activations go; default "invoker0".
	InvokerTopic string
	// ControllerID is this controller's instance (rootControllerIndex.asString, the
	// suffix of its ack topic completed{ID}); default "0".
	ControllerID string
	// BlockingTimeout caps how long a blocking invoke waits; default 60 s.
	BlockingTimeout time.Duration
	// PollInterval is how often a blocking invoke reads the store once an ack said the
	// record is there (a shrunk response or a completion); default 200 ms.
	PollInterval time.Duration
	// Logf logs; default log.Printf.
	Logf func(format string, args ...any)
}

// Server serves the REST API. It implements http.Handler.
type Server struct {
	cfg     Config
	mux     *http.ServeMux
	guest   activation.Identity
	started time.Time

	healthMu sync.Mutex
	// invokers maps invoker instances to their last ping.
	invokers map[int]*invokerHealth

	waitMu sync.Mutex
	// waiters maps activation ids of blocking invokes in flight to their waiter.
	waiters map[string]*waiter
}

// New returns a Server for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Bus == nil {
		return nil, fmt.Errorf("controller: Store and Bus are required")
	}
	if cfg.InvokerTopic == "" {
		cfg.InvokerTopic = "invoker0"
	}
	if cfg.ControllerID == "" {
		cfg.ControllerID = "0"
	}
	if cfg.BlockingTimeout <= 0 {
		cfg.BlockingTimeout = DefaultBlockingTimeout
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 200 * time.Millisecond
	}
	if cfg.Logf == nil {
		cfg.Logf = log.Printf
	}
	s := &Server{
		cfg:      cfg,
		mux:      http.NewServeMux(),
		started:  time.Now(),
		waiters:  make(map[string]*waiter),
		invokers: make(map[int]*invokerHealth),
		guest: activation.Identity{
			Subject:   GuestNamespace,
			Namespace: activation.Namespace{Name: GuestNamespace, UUID: GuestUUID},
			AuthKey:   activation.AuthKey{APIKey: GuestAuth},
			Rights:    []string{"READ", "PUT", "DELETE", "ACTIVATE"},
			Limits:    []byte("{}"),
		},
	}
	s.routes()
	return s, nil
}

// AckTopic is the topic this controller reads acks from, "completed{ControllerID}".
func (s *Server) AckTopic() string { return "completed" + s.cfg.ControllerID }

// InvokerTopic is the topic activations are published to.
func (s *Server) InvokerTopic() string { return s.cfg.InvokerTopic }

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /ping", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
		w.Write([]byte("pong"))
	})
	// The controller's invoker views (Controller.scala), unauthenticated as there.
	m.HandleFunc("GET /invokers", s.getInvokers)
	m.HandleFunc("GET /invokers/healthy/count", s.getHealthyCount)
	m.HandleFunc("GET /api/v1", s.apiInfo)
	m.HandleFunc("GET /api/v1/{$}", s.apiInfo)
	m.HandleFunc("GET /api/v1/namespaces", s.auth(s.listNamespaces))
	m.HandleFunc("GET /api/v1/namespaces/{$}", s.auth(s.listNamespaces))

	m.HandleFunc("GET /api/v1/namespaces/{ns}/actions", s.authNS(s.listActions))
	m.HandleFunc("GET /api/v1/namespaces/{ns}/actions/{$}", s.authNS(s.listActions))
	m.HandleFunc("GET /api/v1/namespaces/{ns}/actions/{name}", s.authNS(s.getAction))
	m.HandleFunc("PUT /api/v1/namespaces/{ns}/actions/{name}", s.authNS(s.putAction))
	m.HandleFunc("DELETE /api/v1/namespaces/{ns}/actions/{name}", s.authNS(s.deleteAction))
	m.HandleFunc("POST /api/v1/namespaces/{ns}/actions/{name}", s.authNS(s.invoke))
	// Packages are not part of standalone's subset: a packaged action does not exist.
	m.HandleFunc("/api/v1/namespaces/{ns}/actions/{pkg}/{rest...}", s.authNS(s.notFound))

	m.HandleFunc("GET /api/v1/namespaces/{ns}/activations", s.authNS(s.listActivations))
	m.HandleFunc("GET /api/v1/namespaces/{ns}/activations/{$}", s.authNS(s.listActivations))
	m.HandleFunc("GET /api/v1/namespaces/{ns}/activations/{id}", s.authNS(s.getActivation))
	m.HandleFunc("GET /api/v1/namespaces/{ns}/activations/{id}/logs", s.authNS(s.getActivationLogs))
	m.HandleFunc("GET /api/v1/namespaces/{ns}/activations/{id}/result", s.authNS(s.getActivationResult))

	// Collections standalone does not have are empty, so that `wsk list` works.
	for _, c := range []string{"packages", "triggers", "rules"} {
		m.HandleFunc("GET /api/v1/namespaces/{ns}/"+c, s.authNS(s.emptyList))
		m.HandleFunc("GET /api/v1/namespaces/{ns}/"+c+"/{$}", s.authNS(s.emptyList))
	}
	m.HandleFunc("/api/v1/namespaces/{ns}/{collection}/{rest...}", s.authNS(s.unsupported))
	m.HandleFunc("/", s.notFound)
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mux.ServeHTTP(w, r)
}

func (s *Server) apiInfo(w http.ResponseWriter, r *http.Request) {
	// The fields of OpenWhisk's GET /api/v1 (RestAPIs.scala, "info" route), with the
	// limits this controller enforces.
	info := map[string]any{
		"description":      "OpenWhisk API (seuss standalone)",
		"api_version":      "1.0.0",
		"api_version_path": "v1",
		"build":            s.started.UTC().Format(time.RFC3339),
		"buildno":          "seuss",
		"swagger_paths":    map[string]string{"ui": "/docs", "api-docs": "/api/v1/api-docs"},
		"limits": map[string]any{
			"actions_per_minute":  60000,
			"concurrent_actions":  5000,
			"max_action_duration": maxTimeoutMs,
			"max_action_memory":   int64(maxMemoryMB) << 20,
			"min_action_duration": minTimeoutMs,
			"min_action_memory":   int64(minMemoryMB) << 20,
			"max_action_logs":     int64(maxLogsMB) << 20,
			"min_action_logs":     0,
		},
		"runtimes": map[string]any{
			"nodejs": []map[string]any{{"kind": "nodejs:20", "default": true, "deprecated": false, "attached": true}},
			"python": []map[string]any{{"kind": "python:3.11", "default": true, "deprecated": false, "attached": true}},
		},
	}
	writeJSON(w, http.StatusOK, info)
}

func (s *Server) listNamespaces(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, []string{GuestNamespace})
}

func (s *Server) emptyList(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, []any{})
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, r, http.StatusNotFound, msgResourceDoesNotExist)
}

func (s *Server) unsupported(w http.ResponseWriter, r *http.Request) {
	writeError(w, r, http.StatusNotFound, fmt.Sprintf(
		"The collection '%s' is not supported by seuss standalone (actions and activations are).", r.PathValue("collection")))
}

// newActivationID returns 32 lowercase hex characters (ActivationId.generate).
func newActivationID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

const tidAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// newTransactionID returns a 32-character alphanumeric id (TransactionId.generateTid).
func newTransactionID() string {
	var b [32]byte
	rand.Read(b[:])
	for i := range b {
		b[i] = tidAlphabet[int(b[i])%len(tidAlphabet)]
	}
	return string(b[:])
}
