package runtimes

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// ManifestFormat is the version of manifest.json this package writes and reads.
const ManifestFormat = 1

// maxManifest caps the size of a manifest read from disk.
const maxManifest = 64 << 20

// ErrBadRoot is wrapped by LoadRoot for a directory that is not a usable root.
var ErrBadRoot = errors.New("runtimes: bad root")

// Manifest describes a root: it is the root's manifest.json.
type Manifest struct {
	Format int    `json:"format"`
	Kind   string `json:"kind"`
	// Digest is "sha256-<hex>" over the kind, the argv and every file's path, mode and
	// content digest: snapshots of the kind are keyed by it.
	Digest string   `json:"digest"`
	Argv   []string `json:"argv"`
	Files  []File   `json:"files"`
	// Skipped lists library modules left out because a shared library they need is
	// missing on the build machine.
	Skipped []string `json:"skipped,omitempty"`
}

// File is one regular file of a root; Path is relative to the root, slash-separated.
type File struct {
	Path   string      `json:"path"`
	Mode   fs.FileMode `json:"mode"`
	Size   int64       `json:"size"`
	SHA256 string      `json:"sha256"`
}

// Root is a built root directory.
type Root struct {
	Dir      string
	Kind     Kind
	Manifest Manifest
}

// Digest is the root digest, the key for the kind's snapshots.
func (r *Root) Digest() string { return r.Manifest.Digest }

// RootDir is where a kind's root lives under a roots directory.
func RootDir(rootsDir string, k Kind) string { return filepath.Join(rootsDir, k.Name) }

// LoadRoot reads a root's manifest. It checks the manifest, not the files (Verify does).
func LoadRoot(dir string) (*Root, error) {
	f, err := os.Open(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadRoot, dir, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxManifest+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: read manifest: %w", ErrBadRoot, dir, err)
	}
	if len(b) > maxManifest {
		return nil, fmt.Errorf("%w: %s: manifest larger than %d bytes", ErrBadRoot, dir, maxManifest)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: %s: manifest: %w", ErrBadRoot, dir, err)
	}
	if m.Format != ManifestFormat {
		return nil, fmt.Errorf("%w: %s: manifest format %d, want %d", ErrBadRoot, dir, m.Format, ManifestFormat)
	}
	k, err := Resolve(m.Kind)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadRoot, dir, err)
	}
	if got := m.digest(); got != m.Digest {
		return nil, fmt.Errorf("%w: %s: manifest digest %s does not match its contents (%s)", ErrBadRoot, dir, m.Digest, got)
	}
	return &Root{Dir: dir, Kind: k, Manifest: m}, nil
}

// Verify re-hashes every file of the root against its manifest.
func (r *Root) Verify() error {
	for _, f := range r.Manifest.Files {
		sum, size, err := hashFile(filepath.Join(r.Dir, filepath.FromSlash(f.Path)))
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrBadRoot, r.Dir, err)
		}
		if sum != f.SHA256 || size != f.Size {
			return fmt.Errorf("%w: %s: %s differs from the manifest", ErrBadRoot, r.Dir, f.Path)
		}
	}
	return nil
}

func (m *Manifest) digest() string {
	h := sha256.New()
	fmt.Fprintf(h, "seuss-root %d\x00%s\x00%s\n", m.Format, m.Kind, strings.Join(m.Argv, "\x00"))
	for _, f := range m.Files {
		fmt.Fprintf(h, "%s\x00%o\x00%s\n", f.Path, f.Mode, f.SHA256)
	}
	return "sha256-" + hex.EncodeToString(h.Sum(nil))
}

func hashFile(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// entry is one file to put in a root: from a host file, or from bytes.
type entry struct {
	dest string // relative, slash-separated
	src  string // host path (symlinks resolved); "" when data is used
	data []byte
	mode fs.FileMode
}

// BuildResult says what BuildRoot did.
type BuildResult struct {
	Root  *Root
	Built bool // false: the existing root was up to date
	Bytes int64
}

// BuildRoot builds (or confirms up to date) the root of kind k under rootsDir, from
// the host's interpreter, its shared libraries (as ldd resolves them), the dynamic
// loader, the standard library and the launcher. Files are hard-linked from the host
// when on the same file system, copied otherwise. The root is replaced atomically, and
// only when its digest changed.
func BuildRoot(k Kind, rootsDir string) (*BuildResult, error) {
	entries, skipped, err := plan(k)
	if err != nil {
		return nil, fmt.Errorf("runtimes: plan root %s: %w", k.Name, err)
	}
	m := Manifest{Format: ManifestFormat, Kind: k.Name, Argv: k.Argv(), Skipped: skipped}
	var total int64
	for _, e := range entries {
		var sum string
		var size int64
		if e.src != "" {
			if sum, size, err = hashFile(e.src); err != nil {
				return nil, fmt.Errorf("runtimes: build root %s: %w", k.Name, err)
			}
		} else {
			s := sha256.Sum256(e.data)
			sum, size = hex.EncodeToString(s[:]), int64(len(e.data))
		}
		total += size
		m.Files = append(m.Files, File{Path: e.dest, Mode: e.mode, Size: size, SHA256: sum})
	}
	m.Digest = m.digest()
	dir := RootDir(rootsDir, k)
	if old, err := LoadRoot(dir); err == nil && old.Manifest.Digest == m.Digest && present(old) {
		return &BuildResult{Root: old, Bytes: total}, nil
	}
	if err := os.MkdirAll(rootsDir, 0o755); err != nil {
		return nil, fmt.Errorf("runtimes: build root %s: %w", k.Name, err)
	}
	tmp, err := os.MkdirTemp(rootsDir, "."+strings.ReplaceAll(k.Name, ":", "-")+".building-")
	if err != nil {
		return nil, fmt.Errorf("runtimes: build root %s: %w", k.Name, err)
	}
	defer os.RemoveAll(tmp)
	for _, e := range entries {
		if err := place(tmp, e); err != nil {
			return nil, fmt.Errorf("runtimes: build root %s: %s: %w", k.Name, e.dest, err)
		}
	}
	// The in-memory /tmp of a unikernel context is mounted here.
	if err := os.Mkdir(filepath.Join(tmp, "tmp"), 0o755); err != nil {
		return nil, err
	}
	if err := os.Chmod(filepath.Join(tmp, "tmp"), 0o1777); err != nil {
		return nil, err
	}
	mb, err := json.MarshalIndent(&m, "", " ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, "manifest.json"), append(mb, '\n'), 0o444); err != nil {
		return nil, fmt.Errorf("runtimes: build root %s: %w", k.Name, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	old := tmp + ".old"
	if err := os.Rename(dir, old); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("runtimes: build root %s: %w", k.Name, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, fmt.Errorf("runtimes: build root %s: %w", k.Name, err)
	}
	os.RemoveAll(old)
	r, err := LoadRoot(dir)
	if err != nil {
		return nil, err
	}
	return &BuildResult{Root: r, Built: true, Bytes: total}, nil
}

// present checks that every file of a root exists with its size (not its content).
func present(r *Root) bool {
	for _, f := range r.Manifest.Files {
		st, err := os.Stat(filepath.Join(r.Dir, filepath.FromSlash(f.Path)))
		if err != nil || st.Size() != f.Size {
			return false
		}
	}
	return true
}

func place(root string, e entry) error {
	dst := filepath.Join(root, filepath.FromSlash(e.dest))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if e.src == "" {
		return os.WriteFile(dst, e.data, e.mode)
	}
	if err := os.Link(e.src, dst); err == nil {
		return nil
	}
	in, err := os.Open(e.src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, e.mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// plan lists a kind's files.
func plan(k Kind) ([]entry, []string, error) {
	byDest := map[string]entry{}
	add := func(dest, src string) error {
		real, err := filepath.EvalSymlinks(src)
		if err != nil {
			return err
		}
		st, err := os.Stat(real)
		if err != nil {
			return err
		}
		if !st.Mode().IsRegular() {
			return nil
		}
		byDest[strings.TrimPrefix(path.Clean(dest), "/")] = entry{dest: strings.TrimPrefix(path.Clean(dest), "/"), src: real, mode: st.Mode().Perm()}
		return nil
	}
	if err := add(k.Interpreter, k.Interpreter); err != nil {
		return nil, nil, err
	}
	elfs := []string{k.Interpreter}
	var libModules []string
	for _, lib := range k.Libraries {
		err := filepath.WalkDir(lib, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(lib, p)
			for _, x := range k.Excluded {
				if rel == x || strings.HasPrefix(rel, x+"/") || (strings.HasSuffix(x, "*") && strings.HasPrefix(rel, x[:len(x)-1])) {
					if d.IsDir() {
						return filepath.SkipDir
					}
					return nil
				}
			}
			if d.IsDir() {
				return nil
			}
			if strings.HasSuffix(p, ".so") {
				libModules = append(libModules, p)
				return nil // added below once its libraries are known to exist
			}
			if err := add(p, p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
	}
	deps, missing, err := sharedLibraries(append(elfs, libModules...))
	if err != nil {
		return nil, nil, err
	}
	if len(missing[k.Interpreter]) > 0 {
		return nil, nil, fmt.Errorf("%s needs %v, not found", k.Interpreter, missing[k.Interpreter])
	}
	var skipped []string
	for _, p := range libModules {
		if len(missing[p]) > 0 {
			skipped = append(skipped, p)
			continue
		}
		if err := add(p, p); err != nil {
			return nil, nil, err
		}
	}
	for _, d := range deps {
		if err := add(d, d); err != nil {
			return nil, nil, err
		}
	}
	byDest[strings.TrimPrefix(k.Launcher, "/")] = entry{dest: strings.TrimPrefix(k.Launcher, "/"), data: k.source, mode: 0o444}
	out := make([]entry, 0, len(byDest))
	for _, e := range byDest {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].dest < out[j].dest })
	return out, skipped, nil
}

// sharedLibraries runs ldd once over files and returns every library path they need
// (the dynamic loader included, as ldd names it) and, per file, the libraries not found.
func sharedLibraries(files []string) ([]string, map[string][]string, error) {
	cmd := exec.Command("ldd", files...)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = io.Discard
	// ldd exits non-zero when any file is not dynamic; the output still says it all.
	if err := cmd.Run(); err != nil && stdout.Len() == 0 {
		return nil, nil, fmt.Errorf("ldd: %w", err)
	}
	seen := map[string]bool{}
	missing := map[string][]string{}
	cur := ""
	if len(files) == 1 {
		cur = files[0]
	}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "\t") {
			cur = strings.TrimSuffix(line, ":")
			continue
		}
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[1] == "=>" && f[2] == "not":
			missing[cur] = append(missing[cur], f[0])
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			seen[f[2]] = true
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			seen[f[0]] = true // the loader: /lib64/ld-linux-x86-64.so.2
		}
	}
	libs := make([]string, 0, len(seen))
	for l := range seen {
		libs = append(libs, l)
	}
	sort.Strings(libs)
	return libs, missing, nil
}

// sizeString is a human size for command output.
func sizeString(n int64) string {
	return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
}

// String summarises a build for the mkroot command.
func (b *BuildResult) String() string {
	what := "up to date"
	if b.Built {
		what = "built"
	}
	return fmt.Sprintf("%s: %s in %s (%d files, %s) %s", b.Root.Kind.Name, what, b.Root.Dir, len(b.Root.Manifest.Files), sizeString(b.Bytes), b.Root.Manifest.Digest)
}
