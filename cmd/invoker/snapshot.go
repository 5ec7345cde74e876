package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/seuss-go/seuss/runtimes"
	"github.com/seuss-go/seuss/snapshots"
	"github.com/seuss-go/seuss/unikernel"
)

func init() {
	register("snapshot", "list, inspect, remove and garbage-collect snapshots: snapshot ls|inspect|rm|gc", snapshotMain)
}

func snapshotUsage() {
	fmt.Fprintln(os.Stderr, `usage: invoker snapshot ls      [--snapshot-dir DIR] [--json]
       invoker snapshot inspect [--snapshot-dir DIR] ID
       invoker snapshot rm      [--snapshot-dir DIR] ID...
       invoker snapshot gc      [--snapshot-dir DIR] [--budget 1GiB] [--roots .seuss/roots]
ls and inspect read a directory an invoker may be using; rm and gc need it to be stopped.`)
}

func snapshotMain(_ context.Context, args []string) (int, error) {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		snapshotUsage()
		if len(args) == 0 {
			return 2, fmt.Errorf("%w: no subcommand", errUsage)
		}
		return 0, nil
	}
	sub := args[0]
	fs := flag.NewFlagSet("snapshot "+sub, flag.ContinueOnError)
	dir := fs.String("snapshot-dir", filepath.Join(".seuss", "snapshots"), "snapshot directory (standalone keeps it under its --data-dir)")
	asJSON := fs.Bool("json", false, "ls: one JSON array")
	budget := fs.String("budget", "", "gc: evict function snapshots beyond this many bytes (default: 1GiB)")
	roots := fs.String("roots", "", "gc: also delete runtime snapshots (and their function snapshots) of roots no longer current in this roots directory")
	fs.Usage = snapshotUsage
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, nil
		}
		return 2, fmt.Errorf("%w: %v", errUsage, err)
	}
	switch sub {
	case "ls":
		st, err := snapshots.OpenStoreReadOnly(*dir)
		if err != nil {
			return 1, err
		}
		defer st.Close()
		return 0, snapshotList(st, *asJSON)
	case "inspect":
		if fs.NArg() != 1 {
			return 2, fmt.Errorf("%w: inspect takes one snapshot id", errUsage)
		}
		st, err := snapshots.OpenStoreReadOnly(*dir)
		if err != nil {
			return 1, err
		}
		defer st.Close()
		return 0, snapshotInspect(st, fs.Arg(0))
	case "rm":
		if fs.NArg() == 0 {
			return 2, fmt.Errorf("%w: rm takes snapshot ids", errUsage)
		}
		st, err := snapshots.OpenStore(*dir, 1<<62, nil)
		if err != nil {
			return 1, err
		}
		defer st.Close()
		code := 0
		for _, id := range fs.Args() {
			switch {
			case st.RemoveFunction(id):
			case st.HasRuntime(id):
				st.RemoveRuntime(id)
			default:
				fmt.Fprintf(os.Stderr, "invoker snapshot rm: no snapshot %s\n", id)
				code = 1
			}
		}
		return code, nil
	case "gc":
		var b int64 = 1 << 30
		if *budget != "" {
			n, err := parseSize(*budget)
			if err != nil {
				return 2, fmt.Errorf("%w: --budget: %v", errUsage, err)
			}
			b = int64(n)
		}
		st, err := snapshots.OpenStore(*dir, 1<<62, nil)
		if err != nil {
			return 1, err
		}
		defer st.Close()
		stale := 0
		if *roots != "" {
			for _, en := range st.List() {
				if en.Type != snapshots.TypeRuntime {
					continue
				}
				f, err := st.Inspect(en.ID)
				if err != nil {
					continue
				}
				k, err := runtimes.Resolve(f.Header.Kind)
				if err != nil {
					continue
				}
				r, err := runtimes.LoadRoot(runtimes.RootDir(*roots, k))
				if err != nil || r.Digest() != f.Header.RootDigest {
					st.RemoveRuntime(en.ID)
					stale++
				}
			}
		}
		evicted, freed, err := st.GC(b)
		if err != nil {
			return 1, err
		}
		if *roots != "" {
			fmt.Printf("deleted %d runtime snapshots of roots no longer in %s\n", stale, *roots)
		}
		used, _, n := st.Usage()
		fmt.Printf("evicted %d function snapshots, page file shrank by %d KiB; %d function snapshots, %d KiB, budget %d KiB\n", evicted, freed>>10, n, used>>10, b>>10)
		return 0, nil
	}
	snapshotUsage()
	return 2, fmt.Errorf("%w: unknown subcommand %q", errUsage, sub)
}

func snapshotList(st *snapshots.Store, asJSON bool) error {
	ents := st.List()
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", " ")
		if ents == nil {
			ents = []snapshots.Entry{}
		}
		return enc.Encode(ents)
	}
	w := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tTYPE\tKIND\tACTION\tREV\tSTATE\tPAGES\tPRIVATE\tSHARED\tHITS\tAGE")
	for _, e := range ents {
		action := e.FQN
		if action == "" {
			action = "-"
		}
		rev := e.Revision
		if rev == "" {
			rev = "-"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", e.ID, e.Type, e.Kind, action, rev,
			kib(e.StateBytes), kib(e.MemoryBytes), kib(e.PrivateBytes), kib(e.SharedBytes), e.Hits, time.Since(e.Created).Round(time.Second))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	used, _, n := st.Usage()
	ps := st.Pages().Stats()
	fmt.Printf("%d function snapshots, %s; page store: %d live pages (%s), %d free, file %s\n", n, kib(used), ps.Live, kib(ps.LiveBytes), ps.Free, kib(ps.FileBytes))
	fmt.Println("PAGES: runtime: its memory file's data pages; function: its diff's data pages. PRIVATE: pages no other function snapshot holds, plus the state file. Hits count since this listing's open (the invoker's own counts are in its metrics).")
	return nil
}

func kib(n int64) string {
	if n < 10<<20 {
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

func snapshotInspect(st *snapshots.Store, id string) error {
	f, err := st.Inspect(id)
	if err != nil {
		return err
	}
	h, _ := json.MarshalIndent(f.Header, "", " ")
	fmt.Printf("%s\ndigest %s, %d bytes\n", h, f.Digest, f.Size)
	s := f.State
	fmt.Printf("guest %d MiB, mode %s, %d threads\n", s.AddressSpace>>20, s.Mode, len(s.VCPU))
	for _, t := range s.VCPU {
		g := t.GPRs
		fmt.Printf("  thread %d: rip %#x rsp %#x rax %#x in call %v, fs %#x\n", t.TID, g[16], g[6], g[0], t.InCall, t.FSBase)
	}
	var committed uint64 = s.Memory.Committed
	fmt.Printf("memory map: %d mappings, %d MiB committed, brk %#x..%#x\n", len(s.Memory.VMAs), committed>>20, s.Memory.BrkStart, s.Memory.Brk)
	for _, v := range s.Memory.VMAs {
		if v.File != "" {
			fmt.Printf("  %#x-%#x %s+%#x\n", v.Start, v.End, v.File, v.Off)
		}
	}
	fmt.Printf("library OS: pid %d, cwd %s, %d descriptors, %d open files, %d pipes, %d /tmp nodes\n", s.LibOS.PID, s.LibOS.Cwd, len(s.LibOS.FDs), len(s.LibOS.Files), len(s.LibOS.Pipes), len(s.LibOS.Tmp.Nodes))
	for _, d := range s.LibOS.FDs {
		fl := s.LibOS.Files[d.File]
		fmt.Printf("  fd %d: %s %s\n", d.FD, fl.Kind, fl.Path)
	}
	data, zero := snapshots.Pages(f.Runs)
	fmt.Printf("%d runs: %d data pages (%d KiB), %d zero pages\n", len(f.Runs), data, data*unikernel.PageSize>>10, zero)
	return nil
}
