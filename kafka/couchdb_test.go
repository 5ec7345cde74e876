package kafka_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/activation/activationtest"
	"github.com/seuss-go/seuss/store/couchdb"
)

// startPouch starts pouchdb-server (installed into .peers by .ci/peers) in memory on a
// free port, with OpenWhisk devtools' admin whisk_admin / some_passw0rd.
func startPouch(t *testing.T) int {
	t.Helper()
	bin, err := filepath.Abs("../.peers/node_modules/.bin/pouchdb-server")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skip("pouchdb-server not installed (.ci/peers installs it)")
	}
	_, p, _ := net.SplitHostPort(freeAddr(t))
	port, _ := strconv.Atoi(p)
	cmd := exec.Command(bin, "--in-memory", "-p", p, "-o", "127.0.0.1")
	cmd.Dir = t.TempDir()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(wait)
	for {
		resp, err := http.Get(url + "/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pouchdb-server did not start: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	req, _ := http.NewRequest(http.MethodPut, url+"/_config/admins/whisk_admin", strings.NewReader(`"some_passw0rd"`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("pouchdb-server: set admin: %v %v", err, resp)
	}
	resp.Body.Close()
	return port
}

// TestServeDropInCouchDB starts bin/invoker serve exactly as the devtools compose file
// starts the stock invoker (`--id 0` and its environment: KAFKA_HOSTS, PORT,
// CONFIG_whisk_couchdb_*, DB_PREFIX, user memory) against a CouchDB-compatible server,
// and runs the controller's health test action and a user action through it.
func TestServeDropInCouchDB(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs bin/invoker")
	}
	port := startPouch(t)
	cfg := couchdb.Config{Provider: "CouchDB", Protocol: "http", Host: "127.0.0.1", Port: port,
		Username: "whisk_admin", Password: "some_passw0rd", WhisksDB: "local_whisks", ActivationsDB: "local_activations"}
	st, err := couchdb.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// The controller creates the health action with plain-string code; user actions
	// get inline mem: code or an attachment.
	health := &activation.WhiskAction{Namespace: "whisk.system", Name: "invokerHealthTestAction0", Version: "0.0.1",
		Exec:   activation.Exec{Kind: "nodejs:20", Code: []byte(`"function main(params) { return params; }"`)},
		Limits: activation.ActionLimits{Timeout: 60000, Memory: 128, Logs: 10, Concurrency: 1}, Parameters: []activation.KeyValue{}, Annotations: []activation.KeyValue{}}
	if _, err := st.PutAction(context.Background(), health, nil); err != nil {
		t.Fatal(err)
	}
	big := `function main(p) { return {payload: "Hello, " + p.name + "!"} }` + "\n//" + strings.Repeat("x", 20000)
	hello := &activation.WhiskAction{Namespace: "guest", Name: "hello", Version: "0.0.1", Exec: activation.Exec{Kind: "nodejs:20"},
		Limits: activation.DefaultActionLimits(), Parameters: []activation.KeyValue{},
		Annotations: []activation.KeyValue{{Key: "provide-api-key", Value: []byte("false")}}}
	rev, err := st.PutAction(context.Background(), hello, []byte(big)) // > 16 KiB: a couch: attachment
	if err != nil {
		t.Fatal(err)
	}
	if a, err := st.GetAction(context.Background(), "guest/hello", rev); err != nil || !strings.Contains(string(a.Exec.Code), `"couch:`) {
		t.Fatalf("action code %s (%v): want a couch: attachment", a.Exec.Code, err)
	}

	addr := freeAddr(t)
	b := startBroker(t, addr)
	t.Cleanup(b.Close)
	c := newController(t, addr)
	httpAddr := freeAddr(t)
	_, httpPort, _ := net.SplitHostPort(httpAddr)
	logPath := filepath.Join(t.TempDir(), "invoker.log")
	lf, _ := os.Create(logPath)
	cmd := exec.Command(invokerBinary(t), "serve", "--id", "0")
	cmd.Env = append(os.Environ(),
		"KAFKA_HOSTS="+addr, "PORT="+httpPort,
		"CONFIG_whisk_couchdb_provider=CouchDB", "CONFIG_whisk_couchdb_protocol=http",
		"CONFIG_whisk_couchdb_host=127.0.0.1", "CONFIG_whisk_couchdb_port="+strconv.Itoa(port),
		"CONFIG_whisk_couchdb_username=whisk_admin", "CONFIG_whisk_couchdb_password=some_passw0rd",
		"DB_PREFIX=local_", "CONFIG_whisk_couchdb_databases_WhiskEntity=local_whisks",
		"CONFIG_whisk_couchdb_databases_WhiskActivation=local_activations",
		"CONFIG_whisk_containerPool_userMemory=1024m", "CONFIG_whisk_userEvents_enabled=true",
		"SEUSS_SPOOL_DIR="+filepath.Join(t.TempDir(), "spool"))
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := <-exited; err != nil {
			t.Errorf("invoker exit: %v", err)
		}
		lf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("invoker log:\n%s", tail(string(b), 4000))
		}
	})

	c.until("a ping", func() bool { return len(c.pings) > 0 })
	c.mu.Lock()
	if um := c.pings[0].Name.UserMemory; um != "1073741824 B" {
		t.Errorf("userMemory %q, want 1073741824 B", um)
	}
	c.mu.Unlock()

	hm := activationtest.Message("whisk.system", "invokerHealthTestAction0", "", false, nil)
	hm.Revision, hm.Content = nil, nil
	hm.TransID = activation.NewTransactionID("sid_invokerHealth", time.Now().UnixMilli())
	m := activationtest.Message("guest", "hello", rev, true, map[string]any{"name": "CouchDB"})
	c.send(hm, m)
	if acks := c.completed(hm.ActivationID); kindsOf(acks) != "completion" || acks[0].IsSystemError {
		t.Fatalf("health action acks %s %s", kindsOf(acks), acks[0].Raw)
	}
	acks := c.completed(m.ActivationID)
	if kindsOf(acks) != "result,completion" || string(acks[0].Activation.Response.Result) != `{"payload":"Hello, CouchDB!"}` {
		t.Fatalf("acks %s %s", kindsOf(acks), acks[0].Raw)
	}
	rec, err := st.GetActivation(context.Background(), "guest", m.ActivationID)
	if err != nil || rec.Response.StatusCode != 0 || len(rec.Annotations) < 6 {
		t.Fatalf("record in local_activations: %v %+v", err, rec)
	}
	c.until("the user event", func() bool { _, ok := c.events[m.ActivationID]; return ok })
	if got := httpGet(t, "http://"+httpAddr+"/ping"); got != "pong" {
		t.Fatalf("/ping %q", got)
	}
}
