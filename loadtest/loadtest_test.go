package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"errors"
	"image/png"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/runtimes/process"
)

// The load generator's tests run small workloads against the in-process stack with the
// process executor. They assert counts, exactly-once acks and output shapes, never
// timings.

func requirePython(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not installed: the process executor cannot run python:3.11")
	}
}

func runCmd(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	if err := dispatch(ctx, args, &out, &errb); err != nil {
		t.Fatalf("loadtest %s: %v\nstderr:\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), errb.String()
}

func keys(m map[string]json.RawMessage) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func TestRunScenarios(t *testing.T) {
	requirePython(t)
	cases := []struct {
		args      []string
		n         int
		wantPaths func(t *testing.T, paths map[string]int)
	}{
		{[]string{"--scenario", "new-functions", "--activations", "6", "--parallel", "2"}, 6,
			func(t *testing.T, p map[string]int) {
				if p["B"] != 6 {
					t.Errorf("new-functions on process: paths %v, want 6 B", p)
				}
			}},
		{[]string{"--scenario", "repeat", "--activations", "8", "--parallel", "1", "--spin", "1"}, 8,
			func(t *testing.T, p map[string]int) {
				if p["B"] != 1 || p["H"] != 7 {
					t.Errorf("repeat with one worker: paths %v, want 1 B and 7 H", p)
				}
			}},
		{[]string{"--scenario", "zipf", "--activations", "8", "--functions", "3", "--rate", "50/s"}, 8, nil},
		{[]string{"--scenario", "burst", "--activations", "5"}, 5,
			func(t *testing.T, p map[string]int) {
				if p["B"] != 5 {
					t.Errorf("burst: paths %v, want 5 B", p)
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.args[1], func(t *testing.T) {
			dir := t.TempDir()
			csvPath := filepath.Join(dir, "a.csv")
			args := append([]string{"run", "--target", "process", "--json", "--csv", csvPath}, c.args...)
			out, _ := runCmd(t, args...)

			// JSON: exactly the shape.
			var top map[string]json.RawMessage
			if err := json.Unmarshal([]byte(out), &top); err != nil {
				t.Fatalf("stdout is not one JSON object: %v\n%s", err, out)
			}
			if got := keys(top); !reflect.DeepEqual(got, []string{"ratios", "results", "scenario"}) {
				t.Fatalf("top-level keys %v", got)
			}
			var rep struct {
				Scenario string
				Results  map[string]map[string]json.RawMessage
				Ratios   map[string]*float64
			}
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatal(err)
			}
			if rep.Scenario != c.args[1] {
				t.Errorf("scenario %q", rep.Scenario)
			}
			res, ok := rep.Results["process"]
			if !ok || len(rep.Results) != 1 {
				t.Fatalf("results %v, want only process", rep.Results)
			}
			if got := keys(res); !reflect.DeepEqual(got, []string{"p50_ms", "p99_ms", "paths", "throughput_per_s"}) {
				t.Errorf("result keys %v", got)
			}
			var paths map[string]int
			if err := json.Unmarshal(res["paths"], &paths); err != nil {
				t.Fatal(err)
			}
			total := 0
			for _, p := range []string{"H", "W", "C", "B"} {
				if _, ok := paths[p]; !ok {
					t.Errorf("paths lacks %s: %v", p, paths)
				}
				total += paths[p]
			}
			if total != c.n {
				t.Errorf("paths %v sum to %d, want %d", paths, total, c.n)
			}
			if c.wantPaths != nil {
				c.wantPaths(t, paths)
			}
			if !reflect.DeepEqual(keysF(rep.Ratios), []string{"seuss_vs_boot", "seuss_vs_process"}) {
				t.Errorf("ratios %v", rep.Ratios)
			}

			// CSV: one row per activation, each acked exactly once, all successful.
			rows := readCSV(t, csvPath)
			if len(rows) != c.n+1 {
				t.Fatalf("csv has %d rows, want header + %d", len(rows), c.n)
			}
			if !reflect.DeepEqual(rows[0], csvHeader) {
				t.Errorf("csv header %v", rows[0])
			}
			col := map[string]int{}
			for i, h := range rows[0] {
				col[h] = i
			}
			ids := map[string]bool{}
			for _, r := range rows[1:] {
				if r[col["results"]] != "1" || r[col["completions"]] != "1" {
					t.Errorf("activation %s: %s result and %s completion acks, want exactly one each", r[col["activation_id"]], r[col["results"]], r[col["completions"]])
				}
				if r[col["status"]] != "0" {
					t.Errorf("activation %s: status %s", r[col["activation_id"]], r[col["status"]])
				}
				if ids[r[col["activation_id"]]] {
					t.Errorf("activation id %s twice", r[col["activation_id"]])
				}
				ids[r[col["activation_id"]]] = true
				if _, err := strconv.ParseFloat(r[col["e2e_ms"]], 64); err != nil {
					t.Errorf("e2e_ms %q", r[col["e2e_ms"]])
				}
			}
		})
	}
}

func keysF(m map[string]*float64) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func TestRunPlots(t *testing.T) {
	requirePython(t)
	dir := t.TempDir()
	pngPath, svgPath := filepath.Join(dir, "p.png"), filepath.Join(dir, "p.svg")
	out, _ := runCmd(t, "run", "--target", "process", "--scenario", "repeat", "--activations", "5", "--plot", pngPath)
	if !strings.Contains(out, "process") || !strings.Contains(out, "throughput/s") {
		t.Errorf("summary table:\n%s", out)
	}
	f, err := os.Open(pngPath)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(f)
	f.Close()
	if err != nil {
		t.Fatalf("plot is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 500 || b.Dy() < 200 {
		t.Errorf("PNG is %v", b)
	}
	runCmd(t, "run", "--target", "process", "--scenario", "new-functions", "--activations", "3", "--plot", svgPath)
	b, err := os.ReadFile(svgPath)
	if err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(b))
	var root string
	polylines := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("plot is not valid SVG (XML): %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
			}
			if se.Name.Local == "polyline" {
				polylines++
			}
		}
	}
	if root != "svg" || polylines < 2 {
		t.Errorf("SVG root %q with %d polylines; want svg with a CDF and a throughput line", root, polylines)
	}
}

func TestDeployJSON(t *testing.T) {
	requirePython(t)
	out, _ := runCmd(t, "deploy", "--target", "process", "--n", "3", "--json")
	var rep struct {
		Kind  string
		Paths map[string]struct {
			P50 *float64 `json:"p50_ms"`
			P90 *float64 `json:"p90_ms"`
			P99 *float64 `json:"p99_ms"`
			N   int      `json:"n"`
		}
		Memory map[string]*float64
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if rep.Kind != "python:3.11" {
		t.Errorf("kind %q", rep.Kind)
	}
	if rep.Paths["B"].N != 3 || rep.Paths["H"].N != 3 || rep.Paths["C"].N != 0 || rep.Paths["W"].N != 0 {
		t.Errorf("paths %+v: want 3 B and 3 H on process", rep.Paths)
	}
	if rep.Paths["B"].P50 == nil || rep.Paths["H"].P99 == nil || rep.Paths["W"].P50 != nil {
		t.Errorf("percentiles: %+v", rep.Paths)
	}
	if len(rep.Memory) != 2 {
		t.Errorf("memory %v", rep.Memory)
	}
}

func TestDensityJSON(t *testing.T) {
	requirePython(t)
	withPlanned(t) // the function-snapshot side: "unavailable" without seuss
	out, stderr := runCmd(t, "density", "--kind", "python:3.11", "--budget", "1MiB", "--json")
	var top map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &top); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got := keys(top); !reflect.DeepEqual(got, []string{"bytes_per_snapshot_p50", "function_snapshots_per_gib", "processes_per_gib"}) {
		t.Errorf("keys %v", got)
	}
	var per float64
	if err := json.Unmarshal(top["processes_per_gib"], &per); err != nil || per <= 0 {
		t.Errorf("processes_per_gib %s", top["processes_per_gib"])
	}
	if string(top["function_snapshots_per_gib"]) != "null" || !strings.Contains(stderr, "unavailable") {
		t.Errorf("function snapshots should be unavailable until package snapshots: %s / %s", top["function_snapshots_per_gib"], stderr)
	}
}

func TestUnavailableTargets(t *testing.T) {
	withPlanned(t)
	var out, errb bytes.Buffer
	err := dispatch(context.Background(), []string{"run", "--target", "seuss", "--activations", "1"}, &out, &errb)
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "not available yet") {
		t.Errorf("--target seuss: %v", err)
	}
	if name, note := resolveDefault(""); name != "process" || !strings.Contains(note, "not available yet") {
		t.Errorf("default target %q, note %q", name, note)
	}
	if _, err := lookupTarget("nope"); err == nil {
		t.Error("unknown target accepted")
	}
}

// withPlanned sets the registry as it was before package snapshots: process, and
// seuss and boot planned.
func withPlanned(t *testing.T) {
	t.Helper()
	saveTargets(t)
	register(target{Name: "process", New: newProcess})
	register(target{Name: "seuss", Snapshots: true, Unavailable: notYet})
	register(target{Name: "boot", Unavailable: notYet})
}

func saveTargets(t *testing.T) {
	saved := targets
	t.Cleanup(func() { targets = saved })
	targets = map[string]*target{}
}

// Acks are matched to activations and counted: a duplicate is seen, not hidden.
func TestAckMatching(t *testing.T) {
	d := &driver{byID: map[string]*sample{}}
	s := &sample{ID: "a1", Status: -1, done: make(chan struct{}), Sent: time.Now()}
	d.byID["a1"] = s
	result := []byte(`{"transid":["t",1],"response":{"namespace":"guest","name":"f","subject":"guest","activationId":"a1","start":1,"end":2,"response":{"statusCode":0,"result":{"fn_us":1500}},"logs":[],"version":"0.0.1","publish":false,"annotations":[{"key":"seuss.path","value":"H"}]}}`)
	completion := []byte(`{"transid":["t",1],"activationId":"a1","isSystemError":false,"instance":{"instance":0,"userMemory":"1 B","instanceType":"invoker","tags":[],"dedicatedNamespaces":[]}}`)
	d.handleAck(time.Now(), result)
	d.handleAck(time.Now(), completion)
	if s.done != nil || s.Path != "H" || s.Status != 0 || s.FnUS != 1500 {
		t.Errorf("sample %+v", s)
	}
	d.handleAck(time.Now(), completion)
	d.handleAck(time.Now(), []byte(`{"transid":["t",1],"response":"zz","isSystemError":false,"instance":{}}`))
	if d.strays != 1 {
		t.Errorf("strays %d, want 1", d.strays)
	}
	r := summarize("x", []*sample{s}, d.strays, nil)
	if r.Duplicates != 1 || r.Acked != 1 || r.Paths["H"] != 1 {
		t.Errorf("summary %+v", r)
	}
	// A combined ack is both a result and a completion; the shrunk form carries the id.
	s2 := &sample{ID: "a2", Status: -1, done: make(chan struct{})}
	d.byID["a2"] = s2
	d.handleAck(time.Now(), []byte(`{"transid":["t",1],"response":"a2","isSystemError":false,"instance":{}}`))
	if s2.Results != 1 || s2.Completions != 1 || s2.done != nil {
		t.Errorf("combined ack: %+v", s2)
	}
}

func TestPlan(t *testing.T) {
	for _, c := range []struct {
		scenario string
		k        int
		actions  int
	}{{"new-functions", 0, 10}, {"burst", 0, 10}, {"repeat", 0, 1}, {"zipf", 4, 4}} {
		idx, n, err := plan(c.scenario, 10, c.k, 1)
		if err != nil || n != c.actions || len(idx) != 10 {
			t.Errorf("%s: %d actions, %d activations, %v", c.scenario, n, len(idx), err)
		}
		for _, i := range idx {
			if i < 0 || i >= n {
				t.Errorf("%s: index %d out of %d", c.scenario, i, n)
			}
		}
	}
	if _, _, err := plan("nope", 1, 1, 1); err == nil {
		t.Error("unknown scenario accepted")
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1GiB": 1 << 30, "512MiB": 512 << 20, "256M": 256 << 20, "4096": 4096, "1.5G": 3 << 29} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "-1G"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) accepted", bad)
		}
	}
}

func TestPercentile(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3}
	if pct(xs, 50) != 3 || pct(xs, 99) != 5 || pct(xs, 1) != 1 {
		t.Errorf("pct: %v %v %v", pct(xs, 50), pct(xs, 99), pct(xs, 1))
	}
}

// withTargets replaces the registry for one test: the planned seuss and boot targets
// become stand-ins built on the process executor, so that the plumbing they will use
// (comparison, ratios, the W pattern of deploy, the snapshot-density hook) is tested
// before package snapshots exists.
func withTargets(t *testing.T) {
	t.Helper()
	saveTargets(t)
	register(target{Name: "process", New: newProcess})
	register(target{Name: "seuss", New: newProcess, Snapshots: true,
		SnapshotBytes: func(e activation.Executor) ([]int64, int64, error) {
			n := e.(*process.Executor).Stats().Idle
			out := make([]int64, n)
			for i := range out {
				out[i] = 300 << 10
			}
			return out, int64(n) * 400 << 10, nil
		}})
	register(target{Name: "boot", New: newProcess})
}

func TestCompareWithStandIns(t *testing.T) {
	requirePython(t)
	withTargets(t)
	if name, note := resolveDefault(""); name != "seuss" || note != "" {
		t.Fatalf("default target %q (%q), want seuss once registered", name, note)
	}
	out, _ := runCmd(t, "run", "--scenario", "new-functions", "--activations", "4", "--compare", "boot,process", "--json")
	var rep struct {
		Results map[string]json.RawMessage
		Ratios  map[string]*float64
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(rep.Results) != 3 || rep.Results["seuss"] == nil || rep.Results["boot"] == nil || rep.Results["process"] == nil {
		t.Errorf("results %s", out)
	}
	if rep.Ratios["seuss_vs_boot"] == nil || rep.Ratios["seuss_vs_process"] == nil {
		t.Errorf("ratios %v", rep.Ratios)
	}
}

func TestDeployAndDensityWithStandIns(t *testing.T) {
	requirePython(t)
	withTargets(t)
	out, _ := runCmd(t, "deploy", "--n", "2", "--json")
	var rep struct {
		Paths map[string]struct {
			N int `json:"n"`
		}
		Memory map[string]*float64
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// The stand-in has no snapshots: its "W" activation (after dropping idle
	// instances) boots again. Seuss: 2 cold + 2 after the drop; boot adds its 2 B only.
	if rep.Paths["B"].N != 6 || rep.Paths["H"].N != 2 {
		t.Errorf("paths %+v", rep.Paths)
	}
	if rep.Memory["function_snapshot_private_kib_p50"] == nil || *rep.Memory["function_snapshot_private_kib_p50"] != 300 {
		t.Errorf("memory %v", rep.Memory)
	}
	out, _ = runCmd(t, "density", "--budget", "2MiB", "--json")
	var d map[string]*float64
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatal(err)
	}
	if d["function_snapshots_per_gib"] == nil || d["bytes_per_snapshot_p50"] == nil || *d["bytes_per_snapshot_p50"] != 300<<10 || d["processes_per_gib"] == nil {
		t.Errorf("density %v", d)
	}
}

// requireUC skips only when the machine has no /dev/kvm or the kind's root is not
// built (make rootfs), as package snapshots' tests do; it returns the roots directory.
func requireUC(t *testing.T, kind string) string {
	t.Helper()
	if _, err := os.Stat("/dev/kvm"); os.IsNotExist(err) {
		t.Skip("skipped: /dev/kvm does not exist on this machine")
	}
	roots, _ := filepath.Abs(filepath.Join("..", ".seuss", "roots"))
	if _, err := os.Stat(filepath.Join(roots, kind)); err != nil {
		t.Skipf("skipped: %v (make rootfs)", err)
	}
	return roots
}

// The real seuss and boot targets, on a tiny workload: every activation acked once,
// seuss deploys new functions by C after the first boot, boot by B.
func TestSeussTargets(t *testing.T) {
	roots := requireUC(t, "python:3.11")
	out, _ := runCmd(t, "run", "--roots", roots, "--kind", "python:3.11", "--scenario", "new-functions",
		"--activations", "3", "--parallel", "1", "--compare", "boot", "--json")
	var rep struct {
		Results map[string]struct {
			Paths map[string]int `json:"paths"`
		}
		Ratios map[string]*float64
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if p := rep.Results["seuss"].Paths; p["C"]+p["B"] != 3 || p["C"] < 2 {
		t.Errorf("seuss paths %v: want the first by B (runtime snapshot), the rest by C", p)
	}
	if p := rep.Results["boot"].Paths; p["B"] != 3 {
		t.Errorf("boot paths %v: want 3 B", p)
	}
	if rep.Ratios["seuss_vs_boot"] == nil {
		t.Errorf("ratios %v", rep.Ratios)
	}
}
