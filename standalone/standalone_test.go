package standalone_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/apache/openwhisk-client-go/whisk"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/controller"
	"github.com/seuss-go/seuss/runtimes/process"
	"github.com/seuss-go/seuss/standalone"
)

// failing wraps an executor and fails every job of one action, as an executor that
// cannot provide an instance does: the lifecycle must turn it into a whisk error.
type failing struct {
	activation.Executor
	fqn string
}

func (f failing) Run(ctx context.Context, job *activation.Job) (*activation.Outcome, error) {
	if job.Key.FQN == f.fqn {
		return nil, errors.New("test: no instance for you")
	}
	return f.Executor.Run(ctx, job)
}

func startStack(t *testing.T) (*standalone.Stack, *whisk.Client) {
	t.Helper()
	exec, err := process.New(process.Config{TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exec.Close() })
	st, err := standalone.Start(context.Background(), standalone.Config{
		DataDir:     t.TempDir(),
		APIListen:   "127.0.0.1:0",
		KafkaListen: "127.0.0.1:0",
		Executor:    failing{exec, "guest/whiskerr"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return st, client(t, st.APIHost, controller.GuestAuth)
}

func client(t *testing.T, host, auth string) *whisk.Client {
	t.Helper()
	c, err := whisk.NewClient(&http.Client{Timeout: 90 * time.Second}, &whisk.Config{Host: host, AuthToken: auth, Namespace: "_"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ptr[T any](v T) *T { return &v }

func create(t *testing.T, c *whisk.Client, name, kind, code string, limits *whisk.Limits) *whisk.Action {
	t.Helper()
	a, _, err := c.Actions.Insert(&whisk.Action{Name: name, Exec: &whisk.Exec{Kind: kind, Code: &code}, Limits: limits}, false)
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	return a
}

func status(resp *http.Response) int {
	if resp == nil {
		return 0
	}
	return resp.StatusCode
}

// invokeRecord invokes blocking without result and returns the HTTP status and record.
func invokeRecord(t *testing.T, c *whisk.Client, name string, params any) (int, map[string]any) {
	t.Helper()
	res, resp, _ := c.Actions.Invoke(name, params, true, false)
	rec, _ := res.(map[string]any)
	if rec == nil {
		// The client puts an error body aside for 502/500; decode what we can.
		return status(resp), nil
	}
	return status(resp), rec
}

func TestEndToEnd(t *testing.T) {
	st, c := startStack(t)

	// Node and Python actions: create, get, list, update, delete.
	node := create(t, c, "hello", "nodejs:default",
		`function main(p) { console.log("hi from node"); return {greeting: "Hello, " + (p.name || "World")} }`, nil)
	if node.Exec.Kind != "nodejs:20" {
		t.Errorf("kind %q", node.Exec.Kind)
	}
	py := create(t, c, "pyhello", "python:3",
		"def main(args):\n    print('hi from python')\n    return {'greeting': 'Hello, ' + args.get('name', 'World')}\n", nil)
	if py.Exec.Kind != "python:3.11" {
		t.Errorf("kind %q", py.Exec.Kind)
	}
	got, _, err := c.Actions.Get("pyhello", true)
	if err != nil || !strings.Contains(*got.Exec.Code, "def main") {
		t.Fatalf("get: %v %v", got, err)
	}
	list, _, err := c.Actions.List("", &whisk.ActionListOptions{Limit: 30})
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %d %v", len(list), err)
	}

	// Blocking with result, node and python, with parameters.
	for _, name := range []string{"hello", "pyhello"} {
		res, resp, err := c.Actions.Invoke(name, map[string]any{"name": "seuss"}, true, true)
		if err != nil || status(resp) != 200 {
			t.Fatalf("invoke %s: %d %v", name, status(resp), err)
		}
		if m, _ := res.(map[string]any); m["greeting"] != "Hello, seuss" {
			t.Errorf("%s result %v", name, res)
		}
	}

	// Update, then blocking without result: the record, with the new version and code.
	_, _, err = c.Actions.Insert(&whisk.Action{Name: "hello", Exec: &whisk.Exec{Kind: "nodejs:20",
		Code: ptr(`function main(p) { console.log("v2"); return {v: 2} }`)}}, true)
	if err != nil {
		t.Fatal(err)
	}
	code, rec := invokeRecord(t, c, "hello", nil)
	if code != 200 || rec == nil {
		t.Fatalf("blocking record: %d %v", code, rec)
	}
	resp := rec["response"].(map[string]any)
	if resp["status"] != "success" || toJSON(resp["result"]) != `{"v":2}` || rec["version"] != "0.0.2" {
		t.Errorf("record after update: %v", rec)
	}
	id := rec["activationId"].(string)

	// Non-blocking, then poll the record; logs and result.
	res, hresp, err := c.Actions.Invoke("pyhello", map[string]any{"name": "poll"}, false, false)
	if err != nil || status(hresp) != 202 {
		t.Fatalf("non-blocking: %d %v", status(hresp), err)
	}
	pollID := res.(map[string]any)["activationId"].(string)
	var act *whisk.Activation
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if act, _, err = c.Activations.Get(pollID); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if act == nil || !act.Response.Success || act.Name != "pyhello" {
		t.Fatalf("polled record: %+v %v", act, err)
	}
	logs, _, err := c.Activations.Logs(pollID)
	if err != nil || len(logs.Logs) == 0 || !strings.Contains(strings.Join(logs.Logs, "\n"), "stdout: hi from python") {
		t.Errorf("logs: %+v %v", logs, err)
	}
	result, _, err := c.Activations.Result(pollID)
	if err != nil || result.Result.(map[string]any)["greeting"] != "Hello, poll" {
		t.Errorf("result: %+v %v", result, err)
	}
	// The blocking record's logs are written with the record.
	var full *whisk.Activation
	for time.Now().Before(deadline) {
		if full, _, err = c.Activations.Get(id); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if full == nil || !strings.Contains(strings.Join(full.Logs, "\n"), "stdout: v2") {
		t.Errorf("blocking record's logs: %+v %v", full, err)
	}

	acts, _, err := c.Activations.List(&whisk.ActivationListOptions{Limit: 30})
	if err != nil || len(acts) < 4 {
		t.Errorf("activations list: %d %v", len(acts), err)
	}
	acts, _, err = c.Activations.List(&whisk.ActivationListOptions{Name: "pyhello", Limit: 1, Docs: true})
	if err != nil || len(acts) != 1 || acts[0].ActivationID != pollID {
		t.Errorf("activations list by name: %+v %v", acts, err)
	}

	// Delete.
	if _, err := c.Actions.Delete("pyhello"); err != nil {
		t.Fatal(err)
	}
	if _, resp, err := c.Actions.Get("pyhello", false); err == nil || status(resp) != 404 {
		t.Errorf("get deleted: %d %v", status(resp), err)
	}

	// A blocking invoke that outlasts its wait answers 202 with the id; the record
	// comes later.
	create(t, c, "sleepy", "nodejs:20", `function main() { return new Promise(r => setTimeout(() => r({slept: true}), 1500)) }`, nil)
	req, _ := http.NewRequest("POST", st.APIHost+"/api/v1/namespaces/_/actions/sleepy?blocking=true&timeout=100", nil)
	req.SetBasicAuth(controller.GuestUUID, controller.GuestKey)
	hr, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var accepted map[string]string
	json.NewDecoder(hr.Body).Decode(&accepted)
	hr.Body.Close()
	if hr.StatusCode != 202 || accepted["activationId"] == "" || hr.Header.Get("x-openwhisk-activation-id") != accepted["activationId"] {
		t.Errorf("blocking timeout: %d %v", hr.StatusCode, accepted)
	}
	var late *whisk.Activation
	for time.Now().Before(deadline) {
		if late, _, err = c.Activations.Get(accepted["activationId"]); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if late == nil || !late.Response.Success {
		t.Errorf("record after the blocking timeout: %+v %v", late, err)
	}

	// The invoker pings health: the controller's view has it up.
	var states map[string]string
	for time.Now().Before(deadline) {
		resp, err := http.Get(st.APIHost + "/invokers")
		if err == nil {
			json.NewDecoder(resp.Body).Decode(&states)
			resp.Body.Close()
			if states["invoker0"] == "up" {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if states["invoker0"] != "up" {
		t.Errorf("GET /invokers = %v", states)
	}

	// Wrong auth.
	bad := client(t, st.APIHost, controller.GuestUUID+":nope")
	if _, resp, err := bad.Actions.List("", nil); err == nil || status(resp) != 401 {
		t.Errorf("wrong auth: %d %v", status(resp), err)
	}
}

func TestErrorKinds(t *testing.T) {
	_, c := startStack(t)
	create(t, c, "apperr", "nodejs:20", `function main() { return {error: "no way"} }`, nil)
	create(t, c, "rejects", "nodejs:20", `function main() { return Promise.reject({reason: "async no"}) }`, nil)
	create(t, c, "pyapperr", "python:3.11", "def main(args):\n    return {'error': 'py no'}\n", nil)
	create(t, c, "throws", "nodejs:20", `function main() { throw new Error("boom") }`, nil)
	create(t, c, "notobject", "nodejs:20", `function main() { return 42 }`, nil)
	create(t, c, "slow", "nodejs:20", `function main() { return new Promise(r => setTimeout(() => r({}), 30000)) }`,
		&whisk.Limits{Timeout: ptr(1000)})
	create(t, c, "initfails", "python:3.11", "def main(args):\n    return {}\nthis is not python\n", nil)
	create(t, c, "whiskerr", "nodejs:20", `function main() { return {} }`, nil)

	cases := []struct {
		name   string
		status int
		want   string // the record's response.status
		errHas string // in result.error
	}{
		{"apperr", 502, "application error", "no way"},
		{"rejects", 502, "application error", "async no"},
		{"pyapperr", 502, "application error", "py no"},
		{"throws", 502, "action developer error", "boom"},
		{"notobject", 502, "action developer error", ""},
		// during init or run: which one depends on the machine's speed
		{"slow", 502, "action developer error", "The action exceeded its time limits of 1000 milliseconds"},
		{"initfails", 502, "action developer error", ""},
		{"whiskerr", 500, "whisk internal error", ""},
	}
	for _, tc := range cases {
		code, rec := invokeRecord(t, c, tc.name, nil)
		if code != tc.status {
			t.Errorf("%s: status %d, want %d (%v)", tc.name, code, tc.status, rec)
		}
		// Read the record itself: the client keeps error bodies to itself.
		acts, _, err := c.Activations.List(&whisk.ActivationListOptions{Name: tc.name, Limit: 1, Docs: true})
		for i := 0; err == nil && len(acts) == 0 && i < 100; i++ {
			time.Sleep(50 * time.Millisecond)
			acts, _, err = c.Activations.List(&whisk.ActivationListOptions{Name: tc.name, Limit: 1, Docs: true})
		}
		if err != nil || len(acts) != 1 {
			t.Errorf("%s: record: %v %v", tc.name, acts, err)
			continue
		}
		r := acts[0].Response
		if r.Status != tc.want || r.Success {
			t.Errorf("%s: status %q success %v, want %q", tc.name, r.Status, r.Success, tc.want)
		}
		m, _ := r.Result.(map[string]any)
		if e, _ := m["error"].(string); m["error"] == nil || (tc.errHas != "" && !strings.Contains(e+toJSON(m["error"]), tc.errHas)) {
			t.Errorf("%s: result %v, want an error containing %q", tc.name, r.Result, tc.errHas)
		}
		// With result=true the client reports the failure as an error, as wsk does.
		if _, _, err := c.Actions.Invoke(tc.name, nil, true, true); err == nil {
			t.Errorf("%s: invoke --result saw no error", tc.name)
		}
	}
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestZipAction(t *testing.T) {
	_, c := startStack(t)
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.Create("__main__.py")
	w.Write([]byte("def main(args):\n    return {'zipped': True}\n"))
	zw.Close()
	code := base64.StdEncoding.EncodeToString(buf.Bytes())
	_, _, err := c.Actions.Insert(&whisk.Action{Name: "zipped", Exec: &whisk.Exec{Kind: "python:3.11", Code: &code, Binary: ptr(true)}}, false)
	if err != nil {
		t.Fatal(err)
	}
	res, resp, err := c.Actions.Invoke("zipped", nil, true, true)
	if err != nil || res.(map[string]any)["zipped"] != true {
		t.Errorf("zip action: %d %v %v", status(resp), res, err)
	}
}

// Init parameters (parameters flagged "init") reach the action's environment at init,
// not its run parameters: the controller names them in initArgs.
func TestInitParameters(t *testing.T) {
	st, c := startStack(t)
	body := `{"exec":{"kind":"nodejs:20","code":"function main(p) { return {env: process.env.SECRET || null, param: p.SECRET || null, other: p.other} }"},
		"parameters":[{"key":"SECRET","value":"s3cret","init":true},{"key":"other","value":"o"}]}`
	req, _ := http.NewRequest("PUT", st.APIHost+"/api/v1/namespaces/_/actions/initargs", strings.NewReader(body))
	req.SetBasicAuth(controller.GuestUUID, controller.GuestKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("create: %v %v", resp, err)
	}
	resp.Body.Close()
	res, _, err := c.Actions.Invoke("initargs", nil, true, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := toJSON(res); got != `{"env":"s3cret","other":"o","param":null}` {
		t.Errorf("result %s", got)
	}
}
