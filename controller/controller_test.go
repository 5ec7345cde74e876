package controller_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/openwhisk-client-go/whisk"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/controller"
	"github.com/seuss-go/seuss/controller/controllertest"
	"github.com/seuss-go/seuss/store/bbolt"
)

// stack is a controller on an in-memory Kafka broker and a real bbolt store, with the
// invoker double behind it (it produces every ack form on demand, whisk errors and lost
// acks included, which a real invoker gives only by failing).
type stack struct {
	srv      *controller.Server
	http     *httptest.Server
	store    *bbolt.Store
	client   *whisk.Client
	messages chan *activation.ActivationMessage
}

// respondByName decides outcomes from the action's name, so one stack serves all cases.
func respondByName(msg *activation.ActivationMessage) controllertest.Reply {
	ok := func(result string) controllertest.Reply {
		n := len(result)
		return controllertest.Reply{Response: activation.ActivationResponse{StatusCode: 0, Result: json.RawMessage(result), Size: &n},
			Logs: []string{"2026-01-01T00:00:00.000000000Z stdout: hello"}}
	}
	switch {
	case strings.HasPrefix(msg.Action.Name, "apperr"):
		r := ok(`{"error":"application says no"}`)
		r.Response.StatusCode = activation.StatusApplicationError
		return r
	case strings.HasPrefix(msg.Action.Name, "deverr"):
		r := ok(`{"error":"The action did not produce a valid response and exited unexpectedly."}`)
		r.Response.StatusCode = activation.StatusDeveloperError
		return r
	case strings.HasPrefix(msg.Action.Name, "whiskerr"):
		r := ok(`{"error":"Failed to provision resources to run the action."}`)
		r.Response.StatusCode = activation.StatusWhiskError
		return r
	case strings.HasPrefix(msg.Action.Name, "shrunk"):
		r := ok(`{"big":true}`)
		r.Shrink = true
		return r
	case strings.HasPrefix(msg.Action.Name, "combined"):
		r := ok(`{"combined":true}`)
		r.Combined = true
		return r
	case strings.HasPrefix(msg.Action.Name, "never"):
		return controllertest.Reply{Drop: true}
	}
	return ok(string(msg.Content)) // echo the parameters
}

func newStack(t *testing.T) *stack {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	brokers := cluster.ListenAddrs()
	bus, err := controller.DialKafka(ctx, brokers, "0", "invoker0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bus.Close)
	st, err := bbolt.Open(filepath.Join(t.TempDir(), "seuss.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv, err := controller.New(controller.Config{Store: st, Bus: bus, PollInterval: 20 * time.Millisecond, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	go bus.Run(ctx, srv, t.Logf)
	msgs := make(chan *activation.ActivationMessage, 100)
	inv := &controllertest.Invoker{Store: st, Respond: respondByName, Messages: msgs}
	go func() {
		if err := inv.Run(ctx, brokers, "invoker0"); err != nil {
			t.Errorf("invoker double: %v", err)
		}
	}()
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return &stack{srv: srv, http: hs, store: st, client: newClient(t, hs.URL, controller.GuestAuth), messages: msgs}
}

func newClient(t *testing.T, host, auth string) *whisk.Client {
	t.Helper()
	c, err := whisk.NewClient(http.DefaultClient, &whisk.Config{Host: host, AuthToken: auth, Namespace: "_"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ptr[T any](v T) *T { return &v }

func annotation(kv whisk.KeyValueArr, key string) any { return kv.GetValue(key) }

func mustCreate(t *testing.T, c *whisk.Client, name, kind, code string) *whisk.Action {
	t.Helper()
	a, _, err := c.Actions.Insert(&whisk.Action{Name: name, Exec: &whisk.Exec{Kind: kind, Code: ptr(code)}}, false)
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	return a
}

func statusOf(resp *http.Response) int {
	if resp == nil {
		return 0
	}
	return resp.StatusCode
}

func TestActionsCRUD(t *testing.T) {
	s := newStack(t)
	c := s.client
	code := "function main(params) { return params }"

	a := mustCreate(t, c, "hello", "nodejs:default", code)
	if a.Exec.Kind != "nodejs:20" || a.Namespace != "guest" || a.Version != "0.0.1" {
		t.Errorf("created: kind %q namespace %q version %q", a.Exec.Kind, a.Namespace, a.Version)
	}
	if v := annotation(a.Annotations, "provide-api-key"); v != false {
		t.Errorf("provide-api-key = %v, want false", v)
	}
	if v := annotation(a.Annotations, "exec"); v != "nodejs:20" {
		t.Errorf("exec annotation = %v", v)
	}
	if a.Limits == nil || *a.Limits.Timeout != 60000 || *a.Limits.Memory != 256 || *a.Limits.Logsize != 10 {
		t.Errorf("default limits: %+v", a.Limits)
	}

	// A second create without overwrite is a conflict.
	_, resp, err := c.Actions.Insert(&whisk.Action{Name: "hello", Exec: &whisk.Exec{Kind: "nodejs:20", Code: ptr(code)}}, false)
	if err == nil || statusOf(resp) != http.StatusConflict {
		t.Errorf("duplicate create: status %d err %v", statusOf(resp), err)
	}

	got, _, err := c.Actions.Get("hello", true)
	if err != nil {
		t.Fatal(err)
	}
	if got.Exec.Code == nil || *got.Exec.Code != code {
		t.Errorf("get code = %v", got.Exec.Code)
	}

	mustCreate(t, c, "pyhello", "python:3", "def main(args):\n    return args\n")
	list, _, err := c.Actions.List("", &whisk.ActionListOptions{Limit: 30})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, a := range list {
		names[a.Name] = true
	}
	if !names["hello"] || !names["pyhello"] || len(list) != 2 {
		t.Errorf("list = %v", names)
	}

	// Update: new code and limits; version goes up by a patch.
	upd, _, err := c.Actions.Insert(&whisk.Action{Name: "hello",
		Exec:   &whisk.Exec{Kind: "nodejs:20", Code: ptr("function main() { return {v: 2} }")},
		Limits: &whisk.Limits{Memory: ptr(128)}}, true)
	if err != nil {
		t.Fatal(err)
	}
	if upd.Version != "0.0.2" || *upd.Limits.Memory != 128 || *upd.Limits.Timeout != 60000 {
		t.Errorf("updated: version %s limits %+v", upd.Version, upd.Limits)
	}
	// Update without exec keeps the code.
	upd, _, err = c.Actions.Insert(&whisk.Action{Name: "hello", Parameters: whisk.KeyValueArr{{Key: "p", Value: 1}}}, true)
	if err != nil {
		t.Fatal(err)
	}
	if *upd.Exec.Code != "function main() { return {v: 2} }" || upd.Version != "0.0.3" || len(upd.Parameters) != 1 {
		t.Errorf("update without exec: %+v", upd)
	}

	// Annotations: replaced when given, removed by delAnnotations; exec and
	// provide-api-key stay.
	upd, _, err = c.Actions.Insert(&whisk.Action{Name: "hello", Annotations: whisk.KeyValueArr{
		{Key: "web-export", Value: true}, {Key: "description", Value: "d"}}}, true)
	if err != nil || upd.Annotations.GetValue("web-export") != true || upd.Annotations.GetValue("provide-api-key") != false {
		t.Errorf("annotations update: %+v %v", upd, err)
	}
	upd, _, err = c.Actions.Insert(&whisk.Action{Name: "hello", DelAnnotations: []string{"web-export"}}, true)
	if err != nil || upd.Annotations.GetValue("web-export") != nil || upd.Annotations.GetValue("description") != "d" ||
		upd.Annotations.GetValue("exec") != "nodejs:20" {
		t.Errorf("delAnnotations: %+v %v", upd.Annotations, err)
	}

	if _, err := c.Actions.Delete("hello"); err != nil {
		t.Fatal(err)
	}
	_, resp, err = c.Actions.Get("hello", true)
	if err == nil || statusOf(resp) != http.StatusNotFound {
		t.Errorf("get after delete: status %d err %v", statusOf(resp), err)
	}
	resp, err = c.Actions.Delete("hello")
	if err == nil || statusOf(resp) != http.StatusNotFound {
		t.Errorf("delete again: status %d err %v", statusOf(resp), err)
	}
}

func TestBinaryAction(t *testing.T) {
	s := newStack(t)
	zip := []byte("PK\x03\x04 not really a zip, bytes all the same \x00\xff")
	b64 := base64.StdEncoding.EncodeToString(zip)
	a, _, err := s.client.Actions.Insert(&whisk.Action{Name: "zipped",
		Exec: &whisk.Exec{Kind: "nodejs:20", Code: &b64, Binary: ptr(true), Main: "handler"}}, false)
	if err != nil {
		t.Fatal(err)
	}
	if a.Exec.Binary == nil || !*a.Exec.Binary || *a.Exec.Code != b64 || a.Exec.Main != "handler" {
		t.Errorf("binary action: %+v", a.Exec)
	}
	stored, err := s.store.GetAction(context.Background(), "guest/zipped", "")
	if err != nil {
		t.Fatal(err)
	}
	var att activation.Attachment
	json.Unmarshal(stored.Exec.Code, &att)
	raw, _ := base64.URLEncoding.DecodeString(strings.TrimPrefix(att.AttachmentName, "mem:"))
	if string(raw) != string(zip) {
		t.Errorf("stored bytes %q, want the raw zip", raw)
	}
}

// rawRequest sends a request with the guest's credentials and returns status and the
// decoded JSON body.
func rawRequest(t *testing.T, method, url, body string, auth bool) (int, map[string]any, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if auth {
		req.SetBasicAuth(controller.GuestUUID, controller.GuestKey)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	json.Unmarshal(b, &m)
	return resp.StatusCode, m, resp.Header
}

func TestPutValidation(t *testing.T) {
	s := newStack(t)
	url := s.http.URL + "/api/v1/namespaces/_/actions/"
	cases := []struct {
		name, path, body string
		status           int
		want             string
	}{
		{"bad kind", "a", `{"exec":{"kind":"java:8","code":"x"}}`, 400, "The action kind 'java:8' is not supported"},
		{"sequence", "a", `{"exec":{"kind":"sequence","components":["/guest/x"]}}`, 400, "not supported"},
		{"no exec", "a", `{}`, 400, "exec undefined"},
		{"no code", "a", `{"exec":{"kind":"nodejs:20"}}`, 400, "'code' must be a string"},
		{"memory low", "a", `{"exec":{"kind":"nodejs:20","code":"x"},"limits":{"memory":64}}`, 400,
			"The request content was malformed:\nrequirement failed: memory 64 MB below allowed threshold of 134217728 B"},
		{"memory high", "a", `{"exec":{"kind":"nodejs:20","code":"x"},"limits":{"memory":1024}}`, 400,
			"memory 1024 MB exceeds allowed threshold of 536870912 B"},
		{"timeout low", "a", `{"exec":{"kind":"nodejs:20","code":"x"},"limits":{"timeout":50}}`, 400,
			"duration 50 milliseconds below allowed threshold of 100 milliseconds"},
		{"timeout high", "a", `{"exec":{"kind":"nodejs:20","code":"x"},"limits":{"timeout":300001}}`, 400,
			"duration 300001 milliseconds exceeds allowed threshold of 300000 milliseconds"},
		{"logs high", "a", `{"exec":{"kind":"nodejs:20","code":"x"},"limits":{"logs":11}}`, 400,
			"log size 11 MB exceeds allowed threshold of 10485760 B"},
		{"bad json", "a", `{"exec":`, 400, "The request content was malformed:"},
		{"bad name", "a%21b", `{"exec":{"kind":"nodejs:20","code":"x"}}`, 400, "The name of the entity contains illegal characters."},
		{"package", "pkg/a", `{"exec":{"kind":"nodejs:20","code":"x"}}`, 404, "The requested resource does not exist."},
	}
	for _, tc := range cases {
		status, body, _ := rawRequest(t, "PUT", url+tc.path, tc.body, true)
		msg, _ := body["error"].(string)
		if status != tc.status || !strings.Contains(msg, tc.want) {
			t.Errorf("%s: %d %q, want %d %q", tc.name, status, msg, tc.status, tc.want)
		}
		if code, _ := body["code"].(string); code == "" {
			t.Errorf("%s: error body without code: %v", tc.name, body)
		}
	}
}

func TestAuth(t *testing.T) {
	s := newStack(t)
	bad := newClient(t, s.http.URL, controller.GuestUUID+":wrong")
	_, resp, err := bad.Actions.List("", nil)
	if err == nil || statusOf(resp) != http.StatusUnauthorized {
		t.Errorf("wrong key: status %d err %v", statusOf(resp), err)
	}
	status, body, hdr := rawRequest(t, "GET", s.http.URL+"/api/v1/namespaces/_/actions", "", false)
	if status != 401 || body["error"] != "The resource requires authentication, which was not supplied with the request" ||
		hdr.Get("WWW-Authenticate") == "" {
		t.Errorf("no auth: %d %v", status, body)
	}
	status, body, _ = rawRequest(t, "GET", s.http.URL+"/api/v1/namespaces/whisk.system/actions", "", true)
	if status != 403 {
		t.Errorf("other namespace: %d %v", status, body)
	}
	status, body, _ = rawRequest(t, "GET", s.http.URL+"/api/v1/namespaces/guest/actions", "", true)
	if status != 200 {
		t.Errorf("explicit guest namespace: %d %v", status, body)
	}
	ns, _, err := s.client.Namespaces.List()
	if err != nil || len(ns) != 1 || ns[0].Name != "guest" {
		t.Errorf("namespaces: %v %v", ns, err)
	}
	s.client.Config.Namespace = "_" // Namespaces.List cleared it
	if pk, _, err := s.client.Packages.List(nil); err != nil || len(pk) != 0 {
		t.Errorf("packages: %v %v", pk, err)
	}
	if tr, _, err := s.client.Triggers.List(nil); err != nil || len(tr) != 0 {
		t.Errorf("triggers: %v %v", tr, err)
	}
	status, body, _ = rawRequest(t, "PUT", s.http.URL+"/api/v1/namespaces/_/triggers/t", "{}", true)
	if status != 404 || !strings.Contains(body["error"].(string), "not supported") {
		t.Errorf("trigger create: %d %v", status, body)
	}
	status, body, _ = rawRequest(t, "GET", s.http.URL+"/api/v1", "", false)
	if status != 200 || body["api_version_path"] != "v1" {
		t.Errorf("api info: %d %v", status, body)
	}
}

func TestInvoke(t *testing.T) {
	s := newStack(t)
	c := s.client
	for _, n := range []string{"echo", "apperr", "deverr", "whiskerr", "shrunk", "combined", "never"} {
		mustCreate(t, c, n, "nodejs:20", "function main(p) { return p }")
	}
	// Action parameters, one of them an init parameter, merged under the payload.
	_, _, err := c.Actions.Insert(&whisk.Action{Name: "echo", Parameters: whisk.KeyValueArr{
		{Key: "greeting", Value: "hi"}, {Key: "name", Value: "default"}}}, true)
	if err != nil {
		t.Fatal(err)
	}

	// Blocking with result: the result itself.
	res, resp, err := c.Actions.Invoke("echo", map[string]any{"name": "World"}, true, true)
	if err != nil || statusOf(resp) != 200 {
		t.Fatalf("invoke echo: %d %v", statusOf(resp), err)
	}
	if m, _ := res.(map[string]any); m["name"] != "World" || m["greeting"] != "hi" {
		t.Errorf("result = %v", res)
	}
	if resp.Header.Get("x-openwhisk-activation-id") == "" {
		t.Error("no x-openwhisk-activation-id header")
	}
	msg := <-s.messages
	if !msg.Blocking || msg.Revision == nil || *msg.Revision == "" || msg.Action.Path != "guest" ||
		msg.Action.Version != "0.0.2" || msg.User.Namespace.UUID != controller.GuestUUID ||
		msg.User.AuthKey.APIKey != controller.GuestAuth || msg.RootControllerIndex.AsString != "0" ||
		len(msg.TransID.ID()) != 32 || msg.InitArgs == nil || msg.LockedArgs == nil {
		t.Errorf("activation message: %+v", msg)
	}

	// Blocking without result: the extended record.
	res, resp, err = c.Actions.Invoke("echo", map[string]any{}, true, false)
	if err != nil || statusOf(resp) != 200 {
		t.Fatalf("invoke echo: %d %v", statusOf(resp), err)
	}
	rec, _ := res.(map[string]any)
	r, _ := rec["response"].(map[string]any)
	if r["status"] != "success" || r["success"] != true || rec["activationId"] != resp.Header.Get("x-openwhisk-activation-id") {
		t.Errorf("blocking record = %v", rec)
	}
	<-s.messages

	// Error kinds: 502 for application and developer errors, 500 for whisk errors.
	for _, tc := range []struct {
		name   string
		status int
		want   string
	}{{"apperr", 502, "application error"}, {"deverr", 502, "action developer error"}, {"whiskerr", 500, "whisk internal error"}} {
		st, body, hdr := rawRequest(t, "POST", s.http.URL+"/api/v1/namespaces/_/actions/"+tc.name+"?blocking=true", "{}", true)
		r, _ := body["response"].(map[string]any)
		if st != tc.status || r["status"] != tc.want || r["success"] != false || hdr.Get("x-openwhisk-activation-id") == "" {
			t.Errorf("%s: %d %v", tc.name, st, body)
		}
		st, body, _ = rawRequest(t, "POST", s.http.URL+"/api/v1/namespaces/_/actions/"+tc.name+"?blocking=true&result=true", "{}", true)
		if st != tc.status || body["error"] == nil {
			t.Errorf("%s result: %d %v", tc.name, st, body)
		}
		// The client reports them as errors, as wsk does.
		if _, _, err := c.Actions.Invoke(tc.name, nil, true, true); err == nil {
			t.Errorf("%s: client saw no error", tc.name)
		}
	}

	// A shrunk result and a combined ack both complete the request.
	for _, n := range []string{"shrunk", "combined"} {
		res, resp, err = c.Actions.Invoke(n, map[string]any{}, true, true)
		if err != nil || statusOf(resp) != 200 {
			t.Errorf("%s: %d %v %v", n, statusOf(resp), res, err)
		}
	}

	// Non-blocking: 202 and the id, then the record appears.
	res, resp, err = c.Actions.Invoke("echo", map[string]any{"x": 1}, false, false)
	if err != nil || statusOf(resp) != 202 {
		t.Fatalf("non-blocking: %d %v", statusOf(resp), err)
	}
	id, _ := res.(map[string]any)["activationId"].(string)
	if len(id) != 32 {
		t.Fatalf("activation id %q", id)
	}
	var act *whisk.Activation
	for range 100 {
		if act, _, err = c.Activations.Get(id); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if act == nil || act.Response.Status != "success" || act.Name != "echo" {
		t.Fatalf("poll: %+v %v", act, err)
	}

	// The blocking timeout becomes 202 with the id.
	st, body, hdr := rawRequest(t, "POST", s.http.URL+"/api/v1/namespaces/_/actions/never?blocking=true&timeout=100", "", true)
	if st != 202 || body["activationId"] == nil || body["activationId"] != hdr.Get("x-openwhisk-activation-id") {
		t.Errorf("timeout: %d %v", st, body)
	}
	st, body, _ = rawRequest(t, "POST", s.http.URL+"/api/v1/namespaces/_/actions/never?blocking=true&timeout=70000", "", true)
	if st != 400 {
		t.Errorf("timeout over the max: %d %v", st, body)
	}
	st, body, _ = rawRequest(t, "POST", s.http.URL+"/api/v1/namespaces/_/actions/echo", "[1,2]", true)
	if st != 400 {
		t.Errorf("array payload: %d %v", st, body)
	}
	st, body, _ = rawRequest(t, "POST", s.http.URL+"/api/v1/namespaces/_/actions/missing", "{}", true)
	if st != 404 {
		t.Errorf("missing action: %d %v", st, body)
	}
}

func TestActivations(t *testing.T) {
	s := newStack(t)
	c := s.client
	mustCreate(t, c, "echo", "nodejs:20", "function main(p) { return p }")
	mustCreate(t, c, "apperr", "nodejs:20", "function main(p) { return p }")
	var ids []string
	for i := range 3 {
		_, resp, err := c.Actions.Invoke("echo", map[string]any{"i": i}, true, true)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, resp.Header.Get("x-openwhisk-activation-id"))
		time.Sleep(5 * time.Millisecond) // distinct start times for the order
	}
	_, resp, _ := c.Actions.Invoke("apperr", nil, true, true)
	errID := resp.Header.Get("x-openwhisk-activation-id")

	// Records are written after the acks: wait for all four.
	for _, id := range append(ids, errID) {
		for range 100 {
			if _, err := s.store.GetActivation(context.Background(), "guest", id); err == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	list, _, err := c.Activations.List(&whisk.ActivationListOptions{Limit: 30})
	if err != nil || len(list) != 4 {
		t.Fatalf("list: %d %v", len(list), err)
	}
	list, _, err = c.Activations.List(&whisk.ActivationListOptions{Name: "echo", Limit: 2})
	if err != nil || len(list) != 2 || list[0].ActivationID != ids[2] {
		t.Errorf("list by name with limit: %+v %v", list, err)
	}
	list, _, err = c.Activations.List(&whisk.ActivationListOptions{Name: "echo", Skip: 2, Docs: true})
	if err != nil || len(list) != 1 || list[0].ActivationID != ids[0] || list[0].Response.Status != "success" {
		t.Errorf("list skip+docs: %+v %v", list, err)
	}
	list, _, err = c.Activations.List(&whisk.ActivationListOptions{Since: time.Now().Add(time.Hour).UnixMilli()})
	if err != nil || len(list) != 0 {
		t.Errorf("list since the future: %+v %v", list, err)
	}

	act, _, err := c.Activations.Get(ids[1])
	if err != nil || act.ActivationID != ids[1] || act.Response.Status != "success" || len(act.Logs) != 1 {
		t.Errorf("get: %+v %v", act, err)
	}
	logs, _, err := c.Activations.Logs(ids[1])
	if err != nil || len(logs.Logs) != 1 || !strings.Contains(logs.Logs[0], "stdout: hello") {
		t.Errorf("logs: %+v %v", logs, err)
	}
	result, _, err := c.Activations.Result(ids[1])
	if err != nil || !result.Success || result.Status != "success" {
		t.Errorf("result: %+v %v", result, err)
	}
	if m, _ := result.Result.(map[string]any); m["i"] == nil {
		t.Errorf("result value: %v", result.Result)
	}
	result, _, err = c.Activations.Result(errID)
	if err != nil || result.Success || result.Status != "application error" {
		t.Errorf("error result: %+v %v", result, err)
	}

	st, body, _ := rawRequest(t, "GET", s.http.URL+"/api/v1/namespaces/_/activations/nothex", "", true)
	if st != 400 || body["error"] != "The activation id is not valid." {
		t.Errorf("bad id: %d %v", st, body)
	}
	st, body, _ = rawRequest(t, "GET", s.http.URL+"/api/v1/namespaces/_/activations/"+strings.Repeat("0", 32), "", true)
	if st != 404 || body["error"] != "The requested resource does not exist." {
		t.Errorf("missing id: %d %v", st, body)
	}
	st, body, _ = rawRequest(t, "GET", s.http.URL+"/api/v1/namespaces/_/activations?limit=201", "", true)
	if st != 400 {
		t.Errorf("limit out of range: %d %v", st, body)
	}
}

func TestInvokerHealth(t *testing.T) {
	s := newStack(t)
	get := func() map[string]any {
		_, body, _ := rawRequest(t, "GET", s.http.URL+"/invokers", "", false)
		return body
	}
	if m := get(); len(m) != 0 {
		t.Errorf("invokers before any ping: %v", m)
	}
	ping, _ := json.Marshal(activation.PingMessage{Name: activation.NewInvokerInstanceID(0, 2048)})
	if err := s.srv.HandlePing(ping); err != nil {
		t.Fatal(err)
	}
	if m := get(); m["invoker0"] != "up" {
		t.Errorf("invokers after a ping: %v", m)
	}
	off := false
	ping, _ = json.Marshal(activation.PingMessage{Name: activation.NewInvokerInstanceID(0, 2048), IsEnabled: &off})
	s.srv.HandlePing(ping)
	if m := get(); m["invoker0"] != "down" {
		t.Errorf("invokers after a disabling ping: %v", m)
	}
	if err := s.srv.HandlePing([]byte(`{"name":{"instance":1,"instanceType":"controller"}}`)); err == nil {
		t.Error("a ping from a controller was accepted")
	}
}
