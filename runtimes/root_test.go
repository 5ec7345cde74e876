package runtimes

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestBuildRoot(t *testing.T) {
	dir := t.TempDir()
	for _, k := range Kinds() {
		t.Run(k.Language(), func(t *testing.T) {
			res, err := BuildRoot(k, dir)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Built {
				t.Fatal("first build did not build")
			}
			r, err := LoadRoot(RootDir(dir, k))
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Verify(); err != nil {
				t.Fatal(err)
			}
			want := map[string]bool{strings.TrimPrefix(k.Interpreter, "/"): false, "lib64/ld-linux-x86-64.so.2": false, strings.TrimPrefix(k.Launcher, "/"): false}
			for _, f := range r.Manifest.Files {
				if _, ok := want[f.Path]; ok {
					want[f.Path] = true
				}
				for _, bad := range []string{"/test/", "/idlelib/", "/tkinter/", "/ensurepip/", "_testcapi"} {
					if strings.Contains("/"+f.Path, bad) {
						t.Errorf("root holds %s", f.Path)
					}
				}
			}
			for p, ok := range want {
				if !ok {
					t.Errorf("root lacks %s", p)
				}
			}
			again, err := BuildRoot(k, dir)
			if err != nil || again.Built || again.Root.Digest() != r.Digest() {
				t.Errorf("second build: %v %v", again, err)
			}
			if k.Language() == "python" {
				runInRoot(t, r, "import json, zipfile, hashlib\ndef main(args):\n    return {'ok': hashlib.sha256(b'x').hexdigest()[:8]}\n")
			} else {
				runInRoot(t, r, "function main() { return { ok: require('crypto').createHash('sha256').update('x').digest('hex').slice(0, 8) } }")
			}
		})
	}
}

func TestLoadRootRejects(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) {
		if err := os.WriteFile(filepath.Join(dir, "manifest.json"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range []string{
		`{"format":2,"kind":"nodejs:20","digest":"x"}`,
		`{"format":1,"kind":"java:8","digest":"x"}`,
		`{"format":1,"kind":"nodejs:20","digest":"sha256-00"}`,
		`not json`,
	} {
		write(m)
		if _, err := LoadRoot(dir); !errors.Is(err, ErrBadRoot) {
			t.Errorf("%s: %v", m, err)
		}
	}
}

// runInRoot starts the launcher chrooted in the root, as a unikernel context would see
// it, and runs one activation: it proves the root is complete.
func runInRoot(t *testing.T, r *Root, code string) {
	if os.Geteuid() != 0 {
		t.Log("not root: skipping the chroot run")
		return
	}
	argv := r.Kind.Argv()
	repR, repW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer repR.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: r.Dir}
	cmd.Dir = "/"
	cmd.ExtraFiles = []*os.File{repW}
	init := `{"value":{"name":"r","main":"main","code":` + quote(code) + `,"binary":false,"env":{}}}` + "\n"
	run := `{"value":{},"namespace":"guest","action_name":"/guest/r","action_version":"0.0.1","activation_id":"1","transaction_id":"t","deadline":"1"}` + "\n"
	cmd.Stdin = strings.NewReader(init + run)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	repW.Close()
	sc := bufio.NewScanner(repR)
	var answers []string
	for sc.Scan() {
		answers = append(answers, sc.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("launcher in root: %v (logs %q)", err, logs.String())
	}
	if len(answers) != 2 || answers[0] != r.Kind.InitOK || !strings.Contains(answers[1], `"2d711642"`) {
		t.Errorf("answers %q, logs %q", answers, logs.String())
	}
}

func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range s {
		switch c {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteRune(c)
		case '\n':
			b.WriteString(`\n`)
		default:
			b.WriteRune(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
