package unikernel

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// requireKVM skips the test only when the machine has no /dev/kvm at all. Any other
// problem (permissions, a broken KVM) fails the test.
func requireKVM(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/dev/kvm"); os.IsNotExist(err) {
		t.Skip("skipped: /dev/kvm does not exist on this machine, so no unikernel context can run")
	}
	if _, err := getHost(); err != nil {
		t.Fatalf("/dev/kvm exists but cannot be used: %v", err)
	}
}

var (
	buildMu  sync.Mutex
	buildDir string
	built    = map[string]string{}
)

// buildC compiles testdata/NAME.c with musl-gcc -static once per test binary and returns
// the executable's host path.
func buildC(t testing.TB, name string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[name]; ok {
		return p
	}
	if buildDir == "" {
		d, err := os.MkdirTemp("", "unikernel-test-bin-")
		if err != nil {
			t.Fatal(err)
		}
		buildDir = d
	}
	out := filepath.Join(buildDir, name)
	cmd := exec.Command("musl-gcc", "-static", "-O1", "-o", out, filepath.Join("testdata", name+".c"))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("musl-gcc %s (install musl-tools): %v\n%s", name, err, b)
	}
	built[name] = out
	return out
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// testRoot makes a root directory with the files the test programs expect and copies the
// named programs into it at /NAME.
func testRoot(t testing.TB, progs ...string) string {
	t.Helper()
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(root, "data.txt"), []byte("hello root\n"), 0o644))
	must(os.Mkdir(filepath.Join(root, "dir"), 0o755))
	must(os.WriteFile(filepath.Join(root, "dir", "a"), []byte("A"), 0o644))
	must(os.WriteFile(filepath.Join(root, "dir", "b"), []byte("B"), 0o644))
	must(os.Symlink("data.txt", filepath.Join(root, "link")))
	must(os.Symlink("/etc/passwd", filepath.Join(root, "abslink")))
	must(os.Symlink("../../../../../../etc/passwd", filepath.Join(root, "rellink")))
	for _, p := range progs {
		b, err := os.ReadFile(buildC(t, p))
		must(err)
		must(os.WriteFile(filepath.Join(root, p), b, 0o755))
	}
	return root
}

// runUC runs argv in a new UC and returns its result and output.
func runUC(t testing.TB, cfg Config, argv ...string) (Result, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	if cfg.Stdout == nil {
		cfg.Stdout = &out
	}
	if cfg.Stderr == nil {
		cfg.Stderr = &errb
	}
	uc, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer func() {
		if err := uc.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	if err := uc.Load(argv); err != nil {
		t.Fatalf("Load %v: %v", argv, err)
	}
	res, err := uc.Run(context.Background())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res, out.String(), errb.String()
}
