package standalone_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seuss-go/seuss/runtimes"
	"github.com/seuss-go/seuss/standalone"
)

// TestRuntimeSnapshotsProgress: with a progress writer, the first start builds every
// kind's runtime snapshot and draws the bar; a second start on the same data directory
// reuses the snapshot files instead of rewriting them.
func TestRuntimeSnapshotsProgress(t *testing.T) {
	if _, err := os.Stat("/dev/kvm"); os.IsNotExist(err) {
		t.Skip("skipped: /dev/kvm does not exist on this machine")
	}
	roots, _ := filepath.Abs(filepath.Join("..", ".seuss", "roots"))
	for _, k := range runtimes.Kinds() {
		if _, err := runtimes.LoadRoot(runtimes.RootDir(roots, k)); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%v: .ci/run builds the roots with make rootfs", err)
			}
			t.Skipf("skipped: %v (make rootfs)", err)
		}
	}
	data := t.TempDir()
	if err := os.Symlink(roots, filepath.Join(data, "roots")); err != nil {
		t.Fatal(err)
	}

	start := func() string {
		var out strings.Builder
		st, err := standalone.Start(context.Background(), standalone.Config{
			DataDir: data, APIListen: "127.0.0.1:0", KafkaListen: "127.0.0.1:0", Progress: &out,
		})
		if err != nil {
			t.Fatal(err)
		}
		if st.ExecutorKind != standalone.ExecutorUC {
			t.Fatalf("executor %q, want uc", st.ExecutorKind)
		}
		if err := st.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		return out.String()
	}
	snapFiles := func() map[string]os.FileInfo {
		m := map[string]os.FileInfo{}
		files, _ := filepath.Glob(filepath.Join(data, "snapshots", "runtimes", "*"))
		for _, f := range files {
			if fi, err := os.Stat(f); err == nil {
				m[f] = fi
			}
		}
		return m
	}

	first := start()
	n := len(runtimes.Kinds())
	for _, k := range runtimes.Kinds() {
		if want := k.Name + " ready in "; !strings.Contains(first, want) {
			t.Errorf("first start: no %q in\n%s", want, first)
		}
	}
	if full := fmt.Sprintf("[%s] %d/%d ", strings.Repeat("#", 24), n, n); !strings.Contains(first, full) {
		t.Errorf("first start: no full bar %q in\n%s", full, first)
	}
	built := snapFiles()
	if len(built) != 2*n { // a .snap and a .mem per kind
		t.Fatalf("after the first start: %d runtime snapshot files, want %d", len(built), 2*n)
	}

	second := start()
	if strings.Count(second, " ready in ") != n {
		t.Errorf("second start:\n%s", second)
	}
	again := snapFiles()
	for f, fi := range built {
		fi2, ok := again[f]
		if !ok {
			t.Errorf("%s gone after the second start", f)
			continue
		}
		if !fi2.ModTime().Equal(fi.ModTime()) || !os.SameFile(fi, fi2) {
			t.Errorf("%s rewritten by the second start: it should be reused", f)
		}
	}
}
