package unikernel

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// nodeScript uses timers, promises, async/await, Buffer, crypto, zlib, JSON of a 1 MB
// object, a file of the root and a worker thread. Its output does not depend on timing
// (no two callbacks race), so the UC's must equal the host's.
const nodeScript = `
const crypto = require('crypto'), zlib = require('zlib'), fs = require('fs');
setTimeout(() => {
  console.log('timer 300');
  const { Worker } = require('worker_threads');
  const w = new Worker('require("worker_threads").parentPort.postMessage(6 * 7)', { eval: true });
  w.on('message', m => console.log('worker says', m));
  w.on('exit', c => console.log('worker exit', c));
}, 300);
setTimeout(() => { console.log('timer 0'); setImmediate(() => console.log('immediate')); }, 0);
process.nextTick(() => console.log('tick'));
Promise.resolve(1).then(v => console.log('promise', v));
(async () => {
  await new Promise(r => setTimeout(r, 100));
  console.log('async after 100ms');
  const b = Buffer.from('hello world');
  console.log(b.toString('base64'), b.toString('hex'), b.length, Buffer.concat([b, b]).length);
  console.log(crypto.createHash('sha256').update('abc').digest('hex'));
  console.log(crypto.createHash('md5').update(b).digest('base64'));
  const z = zlib.gzipSync(Buffer.alloc(100000, 'x'));
  console.log('gzip', z.length, zlib.gunzipSync(z).length);
  console.log(zlib.inflateSync(zlib.deflateSync('round trip')).toString());
  const big = {}; for (let i = 0; i < 20000; i++) big['k' + i] = {i, s: 'v'.repeat(30)};
  const js = JSON.stringify(big);
  console.log('json', js.length, Object.keys(JSON.parse(js)).length);
  console.log(fs.readFileSync('/etc/os-release', 'utf8').split('\n')[0]);
  console.log(await Promise.all([1, 2, 3].map(async x => x * 2)));
})();
`

func requireHostNode(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/usr/bin/node"); err != nil {
		t.Skip("skipped: no /usr/bin/node on this machine")
	}
}

// TestNodeScript: /usr/bin/node, unmodified, prints in a UC exactly what it prints on the
// host, and reads the clock without a single clock_gettime exit (vDSO).
func TestNodeScript(t *testing.T) {
	requireKVM(t)
	requireHostNode(t)
	want, err := exec.Command("/usr/bin/node", "-e", nodeScript).Output()
	if err != nil {
		t.Fatalf("host node: %v", err)
	}
	res, out, errOut := runUC(t, Config{Root: "/", Timeout: 2 * time.Minute}, "/usr/bin/node", "-e", nodeScript)
	if res.Status != 0 || res.Err != nil {
		t.Fatalf("status %d err %v\nstdout:\n%s\nstderr:\n%s", res.Status, res.Err, out, errOut)
	}
	if out != string(want) {
		t.Fatalf("UC output differs from the host's\nUC:\n%s\nhost:\n%s", out, want)
	}
	for _, c := range res.Stats.Syscalls {
		if c.Name == "clock_gettime" || c.Name == "gettimeofday" {
			t.Errorf("%d %s exits: the vDSO should serve them", c.Count, c.Name)
		}
	}
	if len(res.Stats.Unknown) != 0 {
		t.Logf("unimplemented calls made: %v", res.Stats.Unknown)
	}
	t.Logf("%d exits, wall %v", res.Stats.Exits, res.Stats.Wall)
}

// TestNodeSignal: process.kill of itself reaches the JS handler (libuv's signal pipe), and
// SIGTERM without one ends the UC with 143, as on the host.
func TestNodeSignal(t *testing.T) {
	requireKVM(t)
	requireHostNode(t)
	script := "process.on('SIGUSR1', () => console.log('got SIGUSR1')); process.kill(process.pid, 'SIGUSR1'); setTimeout(() => console.log('after'), 50)"
	res, out, _ := runUC(t, Config{Root: "/", Timeout: time.Minute}, "/usr/bin/node", "-e", script)
	if res.Status != 0 || out != "got SIGUSR1\nafter\n" {
		t.Fatalf("status %d err %v output %q", res.Status, res.Err, out)
	}
	res, _, _ = runUC(t, Config{Root: "/", Timeout: time.Minute}, "/usr/bin/node", "-e", "process.kill(process.pid, 'SIGTERM')")
	if res.Status != 143 {
		t.Fatalf("SIGTERM: status %d err %v", res.Status, res.Err)
	}
}

// TestNodeProcessInfo: process.memoryUsage, cpuUsage, resourceUsage and the os module's
// figures work from the UC's /proc files and calls (one CPU, the memory limit).
func TestNodeProcessInfo(t *testing.T) {
	requireKVM(t)
	requireHostNode(t)
	script := "const os = require('os'); console.log(process.memoryUsage().rss > 0, process.cpuUsage().user >= 0, process.resourceUsage().maxRSS > 0, os.loadavg().length, os.uptime() >= 0, os.freemem() > 0, os.cpus().length, os.totalmem())"
	res, out, errOut := runUC(t, Config{Root: "/", Timeout: time.Minute, Memory: 256 << 20}, "/usr/bin/node", "-e", script)
	if res.Status != 0 || out != "true true true 3 true true 1 268435456\n" {
		t.Fatalf("status %d err %v output %q\n%s", res.Status, res.Err, out, errOut)
	}
}

// TestNodeAbort: abort() (raise SIGABRT with threads around) ends the UC with 128+6.
func TestNodeAbort(t *testing.T) {
	requireKVM(t)
	requireHostNode(t)
	res, _, _ := runUC(t, Config{Root: "/", Timeout: time.Minute}, "/usr/bin/node", "-e", "process.abort()")
	if res.Status != 134 {
		t.Fatalf("status %d err %v, want 134 (SIGABRT)", res.Status, res.Err)
	}
}

// nodeLauncher returns the root and guest path of the nodejs launcher: the nodejs:20 root
// built by `make rootfs` when there is one, else the host's / with the launcher from this
// checkout (so that CI runs it without building roots).
func nodeLauncher(t testing.TB) (root, launcher string) {
	t.Helper()
	dir, _ := filepath.Abs(filepath.Join("..", ".seuss", "roots", "nodejs:20"))
	if _, err := os.Stat(filepath.Join(dir, "seuss", "launcher.js")); err == nil {
		return dir, "/seuss/launcher.js"
	}
	src, _ := filepath.Abs(filepath.Join("..", "runtimes", "nodejs", "launcher.js"))
	if _, err := os.Stat(src); err != nil {
		t.Skipf("skipped: no nodejs launcher at %s", src)
	}
	if _, err := os.Stat("/usr/bin/node"); err != nil {
		t.Skip("skipped: no nodejs:20 root (make rootfs) and no /usr/bin/node")
	}
	return "/", src
}

// TestNodeLauncher runs the nodejs launcher in a UC over the actionloop protocol: one
// init, two runs, with the answers on fd 3.
func TestNodeLauncher(t *testing.T) {
	requireKVM(t)
	root, launcher := nodeLauncher(t)
	cfg, s := sessionConfig(root)
	cfg.Timeout = 2 * time.Minute
	uc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	if err := uc.Load([]string{"/usr/bin/node", launcher}); err != nil {
		t.Fatal(err)
	}
	if err := uc.Start(); err != nil {
		t.Fatal(err)
	}
	code := "let n = 0; function main(params) { n++; console.log('log line', n); return { payload: 'Hello, ' + params.name, n } }"
	if ans := s.request(t, initLine(code)); ans != `{"OK":true}` {
		t.Fatalf("init answer %q", ans)
	}
	for i, name := range []string{"World", "again"} {
		ans := s.request(t, runLine(`{"name":"`+name+`"}`))
		var got map[string]any
		if err := json.Unmarshal([]byte(ans), &got); err != nil {
			t.Fatalf("run answer %q: %v", ans, err)
		}
		if got["payload"] != "Hello, "+name || got["n"] != float64(i+1) {
			t.Fatalf("run %d answer %q", i, ans)
		}
	}
	s.mu.Lock()
	logs := s.stdout.String()
	s.mu.Unlock()
	if !strings.Contains(logs, "log line 2") || !strings.Contains(logs, "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX") {
		t.Errorf("logs %q", logs)
	}
	s.in.Close()
	if err := uc.Kill(); err != nil {
		t.Log(err)
	}
}
