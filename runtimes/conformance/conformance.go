// Package conformance runs the OpenWhisk action-contract cases of runtimes/*/testdata
// through any activation.Executor: the host-process baseline today, unikernel contexts
// later, so that both are held to the same answers.
//
// A case is one JSON file: the action (inline code, a code file, or a zip built from
// listed files), the expected init answer, and one or more runs with their expected
// status, result and log lines. All runs of a case share an ActionKey, so the second
// run of a healthy action exercises the executor's hot path.
//
// It knows nothing of how executors create instances.
package conformance

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/seuss-go/seuss/activation"
)

// Case is one conformance case, as stored in testdata/<name>.json.
type Case struct {
	Name string `json:"-"`
	// Source says where the behaviour comes from (the stock runtime's test or doc).
	Source string `json:"source"`
	Action Action `json:"action"`
	// InitStatus is the expected init status (default 200); InitError, when set, the
	// exact "error" of the init answer; InitErrorPrefix a prefix of it.
	InitStatus      int    `json:"init_status"`
	InitError       string `json:"init_error"`
	InitErrorPrefix string `json:"init_error_prefix"`
	// InitLogsContain are substrings that must each appear in some log line of a failed
	// init.
	InitLogsContain []string `json:"init_logs_contain"`
	Runs            []Run    `json:"runs"`
}

// Action is the action under test.
type Action struct {
	Main     string            `json:"main"`
	Code     string            `json:"code"`
	CodeFile string            `json:"code_file"` // relative to the case's directory
	Zip      map[string]string `json:"zip"`       // file name → content; the zip is built by the harness
	Tgz      map[string]string `json:"tgz"`       // the same, as a gzipped tar
	Binary   bool              `json:"binary"`    // send Code as is with binary set
	Env      map[string]string `json:"env"`
}

// Run is one activation of the case's action and what it must give.
type Run struct {
	Value json.RawMessage `json:"value"`
	// BigParam, when set, adds a parameter of that name holding a string of BigBytes
	// 'x' characters to Value (1 MB arguments).
	BigParam string `json:"big_param"`
	BigBytes int    `json:"big_bytes"`
	// Context overrides the run message's context fields (namespace, action_name, …).
	Context map[string]string `json:"context"`

	Status int `json:"status"` // expected run status (default 200)
	// Result is compared as JSON (exact, key order ignored), unless nil.
	Result json.RawMessage `json:"result"`
	// ResultSubset: every key given must be in the result with an equal value (objects
	// compared recursively the same way).
	ResultSubset json.RawMessage `json:"result_subset"`
	// ErrorPrefix: result.error is a string starting with it.
	ErrorPrefix string `json:"error_prefix"`
	// ResultLen: result fields that are strings of exactly these lengths.
	ResultLen map[string]int `json:"result_len"`
	// Logs are the exact log lines ("stdout: text"), sentinels removed, unless nil;
	// order matters within each stream only.
	Logs []string `json:"logs"`
	// LogsContain are substrings that must each appear in some log line.
	LogsContain []string `json:"logs_contain"`
	// Err names the Outcome.Err expected: "" (none), "run_exited", "run_timeout",
	// "memory".
	Err string `json:"err"`
	// TimeoutMS, when set, is the run's time limit (default 60 s).
	TimeoutMS int `json:"timeout_ms"`
}

// Dir returns runtimes/<lang>/testdata in this source tree.
func Dir(lang string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(filepath.Dir(file)), lang, "testdata")
}

// Load reads every *.json case of a directory, sorted by name.
func Load(dir string) ([]Case, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var cases []Case
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var c Case
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			return nil, fmt.Errorf("conformance: %s: %w", f, err)
		}
		c.Name = strings.TrimSuffix(filepath.Base(f), ".json")
		if c.Action.CodeFile != "" {
			code, err := os.ReadFile(filepath.Join(dir, c.Action.CodeFile))
			if err != nil {
				return nil, fmt.Errorf("conformance: %s: %w", f, err)
			}
			c.Action.Code = string(code)
		}
		if len(c.Runs) == 0 && c.InitStatus == 0 {
			return nil, fmt.Errorf("conformance: %s: no runs", f)
		}
		cases = append(cases, c)
	}
	if len(cases) == 0 {
		return nil, fmt.Errorf("conformance: no cases in %s", dir)
	}
	return cases, nil
}

// InitMessage builds the init message of a case's action.
func (c *Case) InitMessage() (activation.InitMessage, error) {
	a := c.Action
	m := activation.InitMessage{Name: c.Name, Main: a.Main, Code: a.Code, Binary: a.Binary, Env: a.Env}
	if a.Zip != nil {
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		names := make([]string, 0, len(a.Zip))
		for n := range a.Zip {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			w, err := zw.Create(n)
			if err != nil {
				return m, err
			}
			if _, err := w.Write([]byte(a.Zip[n])); err != nil {
				return m, err
			}
		}
		if err := zw.Close(); err != nil {
			return m, err
		}
		m.Code = base64.StdEncoding.EncodeToString(buf.Bytes())
		m.Binary = true
	}
	if a.Tgz != nil {
		var buf bytes.Buffer
		gz := gzip.NewWriter(&buf)
		tw := tar.NewWriter(gz)
		names := make([]string, 0, len(a.Tgz))
		for n := range a.Tgz {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			body := []byte(a.Tgz[n])
			if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
				return m, err
			}
			if _, err := tw.Write(body); err != nil {
				return m, err
			}
		}
		if err := tw.Close(); err != nil {
			return m, err
		}
		if err := gz.Close(); err != nil {
			return m, err
		}
		m.Code = base64.StdEncoding.EncodeToString(buf.Bytes())
		m.Binary = true
	}
	if m.Env == nil {
		m.Env = map[string]string{}
	}
	return m, nil
}

// Job builds the job of a case's i-th run. The run message's context defaults to
// fixed values a case can override.
func (c *Case) Job(kind string, i int, revision string) (*activation.Job, error) {
	init, err := c.InitMessage()
	if err != nil {
		return nil, err
	}
	r := c.Runs[i]
	value := r.Value
	if len(value) == 0 {
		value = json.RawMessage("{}")
	}
	if r.BigParam != "" {
		var m map[string]any
		if err := json.Unmarshal(value, &m); err != nil {
			return nil, err
		}
		m[r.BigParam] = strings.Repeat("x", r.BigBytes)
		if value, err = json.Marshal(m); err != nil {
			return nil, err
		}
	}
	ctx := map[string]string{
		"namespace":      "guest",
		"action_name":    "/guest/" + c.Name,
		"action_version": "0.0.1",
		"activation_id":  fmt.Sprintf("%032x", i+1),
		"transaction_id": "conformance",
		"deadline":       "1716200060702",
	}
	for k, v := range r.Context {
		ctx[k] = v
	}
	sum := sha256.Sum256([]byte(init.Code))
	timeout := 60 * time.Second
	if r.TimeoutMS > 0 {
		timeout = time.Duration(r.TimeoutMS) * time.Millisecond
	}
	return &activation.Job{
		Key: activation.ActionKey{
			Namespace: ctx["namespace"], FQN: "guest/" + c.Name, Revision: revision,
			CodeDigest: "sha256-" + hex.EncodeToString(sum[:]),
		},
		Kind: kind,
		Init: init,
		Run: activation.RunMessage{
			Value: value, Namespace: ctx["namespace"], ActionName: ctx["action_name"],
			ActionVersion: ctx["action_version"], ActivationID: ctx["activation_id"],
			TransactionID: ctx["transaction_id"], Deadline: ctx["deadline"], APIKey: ctx["api_key"],
		},
		Limits: activation.Limits{Timeout: timeout, MemoryMB: 256, LogBytes: 10 << 20},
	}, nil
}

// RunAll runs every case through x as subtests of t.
func RunAll(t *testing.T, x activation.Executor, kind string, cases []Case) {
	revision := fmt.Sprintf("conformance-%d", time.Now().UnixNano())
	for i := range cases {
		c := &cases[i]
		t.Run(c.Name, func(t *testing.T) {
			if err := Check(context.Background(), x, kind, c, revision); err != nil {
				t.Error(err)
			}
		})
	}
}

// Check runs one case and returns every mismatch found, joined.
func Check(ctx context.Context, x activation.Executor, kind string, c *Case, revision string) error {
	var errs []error
	runs := len(c.Runs)
	if runs == 0 {
		runs = 1 // an init-only case still needs an activation to carry the init
		c.Runs = []Run{{}}
	}
	for i := 0; i < runs; i++ {
		job, err := c.Job(kind, i, revision)
		if err != nil {
			return err
		}
		out, err := x.Run(ctx, job)
		if err != nil {
			return fmt.Errorf("run %d: executor: %w", i, err)
		}
		if out.InitStatus != 0 || !out.InitStart.IsZero() {
			if e := c.checkInit(out); e != nil {
				errs = append(errs, fmt.Errorf("run %d: %w", i, e))
			}
			if out.InitStatus != 200 {
				break
			}
		} else if i == 0 {
			errs = append(errs, errors.New("run 0: no init happened"))
		}
		if e := c.Runs[i].check(out); e != nil {
			errs = append(errs, fmt.Errorf("run %d: %w", i, e))
		}
	}
	return errors.Join(errs...)
}

func (c *Case) checkInit(out *activation.Outcome) error {
	want := c.InitStatus
	if want == 0 {
		want = 200
	}
	if out.InitStatus != want {
		return fmt.Errorf("init status %d, want %d (answer %s, err %v, logs %q)", out.InitStatus, want, out.InitResponse, out.Err, logText(out.Logs))
	}
	if want == 200 {
		return nil
	}
	var body struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(out.InitResponse, &body); err != nil {
		return fmt.Errorf("init answer %s: %w", out.InitResponse, err)
	}
	if c.InitError != "" && body.Error != c.InitError {
		return fmt.Errorf("init error %q, want %q", body.Error, c.InitError)
	}
	if c.InitErrorPrefix != "" && !strings.HasPrefix(body.Error, c.InitErrorPrefix) {
		return fmt.Errorf("init error %q, want prefix %q", body.Error, c.InitErrorPrefix)
	}
	return containsAll(out.Logs, c.InitLogsContain)
}

func (r *Run) check(out *activation.Outcome) error {
	switch r.Err {
	case "":
		if out.Err != nil {
			return fmt.Errorf("outcome error %v (logs %q)", out.Err, logText(out.Logs))
		}
	case "run_exited":
		if !errors.Is(out.Err, activation.ErrRunExited) {
			return fmt.Errorf("outcome error %v, want ErrRunExited", out.Err)
		}
		return containsAll(out.Logs, r.LogsContain)
	case "run_timeout":
		// The lines printed before the time limit are kept, as the stock runtimes'
		// write-through logs keep them (runtimes/doc.go: the flush request).
		if !errors.Is(out.Err, activation.ErrRunTimeout) {
			return fmt.Errorf("outcome error %v, want ErrRunTimeout (logs %q)", out.Err, logText(out.Logs))
		}
		return containsAll(out.Logs, r.LogsContain)
	case "memory":
		if !errors.Is(out.Err, activation.ErrMemoryLimit) {
			return fmt.Errorf("outcome error %v, want ErrMemoryLimit", out.Err)
		}
		return nil
	default:
		return fmt.Errorf("case names unknown err %q", r.Err)
	}
	want := r.Status
	if want == 0 {
		want = 200
	}
	if out.RunStatus != want {
		return fmt.Errorf("run status %d, want %d (answer %.300s)", out.RunStatus, want, out.RunResponse)
	}
	var got any
	if err := json.Unmarshal(out.RunResponse, &got); err != nil {
		return fmt.Errorf("run answer %.300q: %w", out.RunResponse, err)
	}
	if r.Result != nil {
		var exp any
		if err := json.Unmarshal(r.Result, &exp); err != nil {
			return fmt.Errorf("case result: %w", err)
		}
		if !jsonEqual(got, exp) {
			return fmt.Errorf("result %.500s, want %s", out.RunResponse, r.Result)
		}
	}
	if r.ResultSubset != nil {
		var exp any
		if err := json.Unmarshal(r.ResultSubset, &exp); err != nil {
			return fmt.Errorf("case result_subset: %w", err)
		}
		if !subset(exp, got) {
			return fmt.Errorf("result %.500s, want a superset of %s", out.RunResponse, r.ResultSubset)
		}
	}
	obj, _ := got.(map[string]any)
	if r.ErrorPrefix != "" {
		s, _ := obj["error"].(string)
		if !strings.HasPrefix(s, r.ErrorPrefix) {
			return fmt.Errorf("result error %q, want prefix %q", s, r.ErrorPrefix)
		}
	}
	for k, n := range r.ResultLen {
		s, ok := obj[k].(string)
		if !ok || len(s) != n {
			return fmt.Errorf("result field %q has length %d, want %d", k, len(s), n)
		}
	}
	if r.Logs != nil {
		// Order is compared within each stream: across streams it is not defined (the
		// stock runtimes' docker logs interleave them by arrival, the launchers buffer
		// each stream and write it once per activation).
		got := logText(out.Logs)
		for _, s := range []string{"stdout: ", "stderr: "} {
			if g, w := stream(got, s), stream(r.Logs, s); g != w {
				return fmt.Errorf("logs %q, want %q", got, r.Logs)
			}
		}
	}
	return containsAll(out.Logs, r.LogsContain)
}

func stream(lines []string, prefix string) string {
	var b strings.Builder
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func containsAll(lines []activation.LogLine, subs []string) error {
	text := strings.Join(logText(lines), "\n")
	for _, s := range subs {
		if !strings.Contains(text, s) {
			return fmt.Errorf("logs %q lack %q", text, s)
		}
	}
	return nil
}

func logText(lines []activation.LogLine) []string {
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		out = append(out, l.Stream+": "+l.Text)
	}
	return out
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// subset reports whether every key of the object want is in got with a matching value.
func subset(want, got any) bool {
	w, ok := want.(map[string]any)
	if !ok {
		return jsonEqual(want, got)
	}
	g, ok := got.(map[string]any)
	if !ok {
		return false
	}
	for k, v := range w {
		gv, ok := g[k]
		if !ok || !subset(v, gv) {
			return false
		}
	}
	return true
}
