package activation

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Executor runs one activation of an action in an isolated runtime instance. It is
// implemented by the unikernel path (package snapshots: H, W, C or B) and by the
// host-process baseline (package runtimes/process). The lifecycle in this package is
// its only caller; it turns an Outcome into an activation record.
//
// Run blocks until the activation has finished, failed, or ctx is done. It enforces
// job.Limits itself (time, memory, log size). A non-nil error means the executor could
// not provide an instance at all (a whisk internal error); everything that the action
// itself caused is reported in the Outcome.
type Executor interface {
	Run(ctx context.Context, job *Job) (*Outcome, error)
}

// Job is one activation as an executor sees it: which action (for placement), the
// init message for a fresh instance, the run message, and the limits.
type Job struct {
	// Key identifies the action for placement. Instances and snapshots are never
	// shared between jobs whose keys differ.
	Key ActionKey
	// Kind is the resolved runtime kind, e.g. "nodejs:20" or "python:3.11".
	Kind string
	// Init is sent only to a fresh instance (cold start).
	Init InitMessage
	// Run is the message sent for this activation.
	Run RunMessage
	// Limits are the action's limits; Timeout applies to init and run separately, as
	// OpenWhisk does.
	Limits Limits
}

// ActionKey names an action revision as a placement key.
type ActionKey struct {
	// Namespace is the invoking user's namespace: a live instance is never reused
	// across namespaces.
	Namespace string
	// FQN is the action's fully qualified name without version, "ns/name" or "ns/pkg/name".
	FQN string
	// Revision is the action document's revision (CouchDB _rev).
	Revision string
	// CodeDigest is "sha256-<hex>" of the code as sent in InitMessage.Code.
	CodeDigest string
}

// InitMessage is the value of the actionloop init line: {"value": InitMessage}.
// Field names are the runtime contract's (openwhisk-protocol.md §6.1).
type InitMessage struct {
	Name   string            `json:"name"`
	Main   string            `json:"main"`
	Code   string            `json:"code"` // source text, or standard base64 when Binary
	Binary bool              `json:"binary"`
	Env    map[string]string `json:"env"` // init-time parameters and __OW_* values, all strings
}

// RunMessage is the actionloop run line (openwhisk-protocol.md §6.2): the parameters
// under "value" plus the activation's context. Deadline is a string, as OpenWhisk sends it.
type RunMessage struct {
	Value         json.RawMessage `json:"value"`
	Namespace     string          `json:"namespace"`
	ActionName    string          `json:"action_name"`
	ActionVersion string          `json:"action_version"`
	ActivationID  string          `json:"activation_id"`
	TransactionID string          `json:"transaction_id"`
	Deadline      string          `json:"deadline"`
	APIKey        string          `json:"api_key,omitempty"`
}

// Limits are the per-activation limits an executor enforces.
type Limits struct {
	Timeout  time.Duration
	MemoryMB int
	// LogBytes caps the collected log text; 0 means logs are not collected.
	LogBytes int
}

// Path is how an activation was deployed, as SEUSS names the paths.
type Path string

const (
	PathHot  Path = "H" // an idle live instance already initialised for this action revision
	PathWarm Path = "W" // restored from the action's function snapshot
	PathCold Path = "C" // restored from the runtime snapshot, then initialised
	PathBoot Path = "B" // runtime booted from scratch, then initialised
)

// Outcome is what happened to one job: facts only. The lifecycle maps them to status
// codes and messages.
type Outcome struct {
	Path Path

	// InitStart and InitEnd bound the init on a cold start; both zero when no init ran.
	InitStart, InitEnd time.Time
	// InitStatus is the HTTP-equivalent status of the init answer as the stock runtime
	// would give it (200 ok); InitResponse is its body (may be nil).
	InitStatus   int
	InitResponse json.RawMessage

	// RunStart and RunEnd bound the run; zero when the run never started.
	RunStart, RunEnd time.Time
	// RunStatus is the HTTP-equivalent status of the run answer as the stock runtime would
	// give it: 200, or e.g. 502 for a Node.js action that threw. RunResponse is the body
	// as the runtime wrote it (one JSON value, unparsed); nil if there was none.
	RunStatus   int
	RunResponse json.RawMessage

	// Logs are the lines the action wrote to stdout and stderr, sentinels removed,
	// at most Limits.LogBytes of text; LogsTruncated is set when more was dropped.
	Logs          []LogLine
	LogsTruncated bool

	// Err is nil, or wraps one of the errors below: why init or run did not complete.
	Err error
}

// LogLine is one line of action output.
type LogLine struct {
	Time   time.Time
	Stream string // "stdout" or "stderr"
	Text   string // without the line end
}

// Errors an Outcome's Err wraps.
var (
	// ErrInitTimeout: init did not answer within Limits.Timeout.
	ErrInitTimeout = errors.New("init exceeded the time limit")
	// ErrRunTimeout: run did not answer within Limits.Timeout.
	ErrRunTimeout = errors.New("run exceeded the time limit")
	// ErrInitExited: the runtime exited or crashed before answering init.
	ErrInitExited = errors.New("runtime exited during init")
	// ErrRunExited: the runtime exited or crashed before answering run.
	ErrRunExited = errors.New("runtime exited during run")
	// ErrMemoryLimit: the runtime needed more memory than Limits.MemoryMB.
	ErrMemoryLimit = errors.New("memory limit exceeded")
)
