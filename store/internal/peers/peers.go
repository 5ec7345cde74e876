// Package peers starts the store tests' real peers (pouchdb-server, gocaves) from the
// paths .ci/peers installs them to (relative to the repository root), on free loopback
// ports. A missing peer skips the test with the reason, except when CI is set: there
// absence is a failure.
package peers

import (
	"bufio"
	"bytes"
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
	"sync"
	"syscall"
	"testing"
	"time"
)

// Admin credentials configured on every pouchdb-server the tests start.
const (
	AdminUser     = "whisk_admin"
	AdminPassword = "some_passw0rd"
)

// RepoRoot is the directory holding go.mod, found upwards from the working directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("peers: go.mod not found above the working directory")
		}
		dir = parent
	}
}

// require returns the peer's path, or skips (fails under CI) when it is absent.
func require(t testing.TB, rel, what string) string {
	t.Helper()
	p := filepath.Join(RepoRoot(t), rel)
	if _, err := os.Stat(p); err != nil {
		msg := fmt.Sprintf("%s not installed at %s (run .ci/peers): %v", what, rel, err)
		if os.Getenv("CI") != "" {
			t.Fatal("CI: " + msg)
		}
		t.Skip(msg)
	}
	return p
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Pouch is a running pouchdb-server (CouchDB API, in memory).
type Pouch struct {
	t    testing.TB
	bin  string
	dir  string
	Port int

	mu  sync.Mutex
	cmd *exec.Cmd
	log *bytes.Buffer
}

// StartPouch starts pouchdb-server 4.2.0 --in-memory on a free loopback port in a fresh
// temporary directory, and configures the admin (AdminUser, AdminPassword). It is
// killed when the test ends.
func StartPouch(t testing.TB) *Pouch {
	t.Helper()
	p := &Pouch{t: t, bin: require(t, ".peers/node_modules/.bin/pouchdb-server", "pouchdb-server"), dir: t.TempDir(), Port: FreePort(t)}
	t.Cleanup(p.Kill)
	p.Start()
	// An admin party until the first admin is set: this is the one anonymous call.
	req, _ := http.NewRequest(http.MethodPut, p.URL()+"/_config/admins/"+AdminUser, strings.NewReader(`"`+AdminPassword+`"`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("pouchdb-server: set admin: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("pouchdb-server: set admin: %s", resp.Status)
	}
	return p
}

// URL is the server's base URL (without credentials).
func (p *Pouch) URL() string { return fmt.Sprintf("http://127.0.0.1:%d", p.Port) }

// Start (re)starts the server on its port, in its directory (which keeps its
// config.json, so the admin survives a restart; the data does not).
func (p *Pouch) Start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		p.t.Fatal("pouchdb-server: already running")
	}
	cmd := exec.Command(p.bin, "--in-memory", "-p", fmt.Sprint(p.Port), "-o", "127.0.0.1")
	cmd.Dir = p.dir
	p.log = new(bytes.Buffer)
	cmd.Stdout, cmd.Stderr = p.log, p.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("pouchdb-server: start: %v", err)
	}
	p.cmd = cmd
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.URL() + "/")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("pouchdb-server did not answer on port %d: %v\n%s", p.Port, err, p.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill stops the server at once (SIGKILL to its process group) and waits for it.
func (p *Pouch) Kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	p.cmd.Wait()
	p.cmd = nil
}

// Freeze stops (SIGSTOP) or resumes (SIGCONT) the server: connections are accepted by
// the kernel but never answered, which is what timeouts are for.
func (p *Pouch) Freeze(stop bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	sig := syscall.SIGCONT
	if stop {
		sig = syscall.SIGSTOP
	}
	if p.cmd != nil {
		syscall.Kill(-p.cmd.Process.Pid, sig)
		waitStopped(p.t, p.cmd.Process.Pid, stop)
	}
}

// waitStopped waits until every thread of pid is stopped (or none is): a signal takes
// effect asynchronously, and a thread running on another CPU may still answer a request.
func waitStopped(t testing.TB, pid int, stopped bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
		all := len(tasks) > 0
		for _, f := range tasks {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			// The state follows the parenthesised command name.
			i := bytes.LastIndexByte(b, ')')
			if i < 0 || i+2 >= len(b) {
				continue
			}
			if st := b[i+2]; (st == 'T' || st == 't') != stopped {
				all = false
				break
			}
		}
		if all {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("process %d did not become stopped=%v", pid, stopped)
}

// Caves is a running gocaves mock cluster.
type Caves struct {
	ConnStr string
	t       testing.TB
	cmd     *exec.Cmd
}

// Freeze stops (SIGSTOP) or resumes (SIGCONT) the mock: requests time out meanwhile.
// (A restarted gocaves would listen on new ports with no data, so outages are tested
// this way.)
func (c *Caves) Freeze(stop bool) {
	sig := syscall.SIGCONT
	if stop {
		sig = syscall.SIGSTOP
	}
	syscall.Kill(-c.cmd.Process.Pid, sig)
	waitStopped(c.t, c.cmd.Process.Pid, stop)
}

// StartCaves starts `gocaves -mock-only` and returns its connection string (printed as
// {"connstr":...} on stdout). It has buckets "default" and "memd". It is killed when
// the test ends.
func StartCaves(t testing.TB) *Caves {
	t.Helper()
	bin := require(t, ".peers/bin/gocaves", "gocaves")
	cmd := exec.Command(bin, "-mock-only")
	cmd.Dir = t.TempDir()
	// It logs on stderr and prints {"connstr":...} on either, depending on the version.
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("gocaves: start: %v", err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		pw.Close()
	})
	var mu sync.Mutex
	var log bytes.Buffer
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Bytes()
			var m struct {
				ConnStr string `json:"connstr"`
			}
			if json.Unmarshal(line, &m) == nil && m.ConnStr != "" {
				select {
				case found <- m.ConnStr:
				default:
				}
				continue
			}
			mu.Lock()
			if log.Len() < 64<<10 {
				log.Write(line)
				log.WriteByte('\n')
			}
			mu.Unlock()
		}
		io.Copy(io.Discard, pr)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	select {
	case cs := <-found:
		return &Caves{ConnStr: cs, t: t, cmd: cmd}
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("gocaves printed no connection string:\n%s", log.String())
		return nil
	}
}
