package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/seuss-go/seuss/kafka"
	"github.com/seuss-go/seuss/runtimes/process"
	"github.com/seuss-go/seuss/store/couchdb"
)

// External mode: the load generator reaches the invoker only through --kafka and
// --store couchdb, as in an OpenWhisk deployment. The "external" invoker is started
// here (broker, CouchDB API from pouchdb-server, kafka.NewInvoker with the process
// executor); the load generator is given only its addresses.
func TestExternalInvoker(t *testing.T) {
	requirePython(t)
	pouch := startPouch(t)
	env := map[string]string{
		"CONFIG_whisk_couchdb_protocol":                  "http",
		"CONFIG_whisk_couchdb_host":                      "127.0.0.1",
		"CONFIG_whisk_couchdb_port":                      fmt.Sprint(pouch),
		"CONFIG_whisk_couchdb_username":                  "whisk_admin",
		"CONFIG_whisk_couchdb_password":                  "some_passw0rd",
		"CONFIG_whisk_couchdb_databases_WhiskEntity":     "whisks",
		"CONFIG_whisk_couchdb_databases_WhiskActivation": "activations",
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	broker, err := kafka.StartBroker(ctx, "127.0.0.1:0", kafka.InvokerTopic(3), kafka.CompletedTopic("7"), kafka.HealthTopic)
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	cfg, err := couchdb.ConfigFromEnv(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	st, err := couchdb.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	exec, err := process.New(process.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer exec.Close()
	inv, err := kafka.NewInvoker(kafka.InvokerConfig{Brokers: []string{broker.Addr()}, ID: 3, Store: st, Executor: exec})
	if err != nil {
		t.Fatal(err)
	}
	ictx, icancel := context.WithCancel(ctx)
	var g errgroup.Group
	g.Go(func() error { return inv.Run(ictx) })
	defer func() { icancel(); g.Wait() }()

	csvPath := filepath.Join(t.TempDir(), "ext.csv")
	out, _ := runCmd(t, "run", "--kafka", broker.Addr(), "--store", "couchdb", "--invoker", "3", "--controller", "7",
		"--scenario", "repeat", "--activations", "6", "--parallel", "2", "--json", "--csv", csvPath)
	var rep struct {
		Results map[string]struct {
			Paths map[string]int `json:"paths"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	p := rep.Results["external"].Paths
	if p["H"]+p["B"] != 6 || p["B"] < 1 {
		t.Errorf("external run: results %+v", rep.Results)
	}
	rows := readCSV(t, csvPath)
	if len(rows) != 7 {
		t.Errorf("csv rows %d, want header + 6", len(rows))
	}
	for _, r := range rows[1:] {
		if r[len(r)-2] != "1" || r[len(r)-1] != "1" || r[5] != "0" {
			t.Errorf("row %v: want status 0 and exactly one result and one completion ack", r)
		}
	}
}

// startPouch starts pouchdb-server (installed by .ci/peers) in memory on a free port
// with the admin whisk_admin, and returns its port. Absent, the test skips (fails
// under CI), as the store tests do.
func startPouch(t *testing.T) int {
	t.Helper()
	root, _ := filepath.Abs("..")
	bin := filepath.Join(root, ".peers/node_modules/.bin/pouchdb-server")
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI: pouchdb-server not installed (run .ci/peers): %v", err)
		}
		t.Skipf("pouchdb-server not installed (run .ci/peers): %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, "--in-memory", "-p", fmt.Sprint(port), "-o", "127.0.0.1")
	cmd.Dir = t.TempDir()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := http.Get(base + "/")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pouchdb-server did not answer: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The one anonymous call: set the admin (then always authenticate).
	req, _ := http.NewRequest(http.MethodPut, base+"/_config/admins/whisk_admin", strings.NewReader(`"some_passw0rd"`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("pouchdb-server: set admin: %s", resp.Status)
	}
	return port
}
