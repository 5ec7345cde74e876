package main

import (
	"context"
	"errors"
	"testing"

	"github.com/seuss-go/seuss/snapshots"
)

func TestSnapshotCommand(t *testing.T) {
	dir := t.TempDir()
	st, err := snapshots.OpenStore(dir, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	// While an invoker owns the directory, rm and gc are refused; ls works.
	if code, err := snapshotMain(context.Background(), []string{"gc", "--snapshot-dir", dir}); !errors.Is(err, snapshots.ErrInUse) || code != 1 {
		t.Errorf("gc on a directory in use: %d %v", code, err)
	}
	if code, err := snapshotMain(context.Background(), []string{"ls", "--snapshot-dir", dir, "--json"}); err != nil || code != 0 {
		t.Errorf("ls: %d %v", code, err)
	}
	st.Close()
	for _, args := range [][]string{{"gc", "--snapshot-dir", dir}, {"ls", "--snapshot-dir", dir}} {
		if code, err := snapshotMain(context.Background(), args); err != nil || code != 0 {
			t.Errorf("%v: %d %v", args, code, err)
		}
	}
	if code, _ := snapshotMain(context.Background(), []string{"rm", "--snapshot-dir", dir, "fn-none"}); code != 1 {
		t.Errorf("rm of a missing snapshot: status %d", code)
	}
	if _, err := snapshotMain(context.Background(), []string{"inspect", "--snapshot-dir", dir, "fn-none"}); err == nil {
		t.Error("inspect of a missing snapshot succeeded")
	}
	for _, args := range [][]string{{}, {"frobnicate"}, {"inspect", "--snapshot-dir", dir}, {"rm", "--snapshot-dir", dir}, {"gc", "--snapshot-dir", dir, "--budget", "lots"}} {
		if code, err := snapshotMain(context.Background(), args); !errors.Is(err, errUsage) || code != 2 {
			t.Errorf("%v: %d %v", args, code, err)
		}
	}
	if _, err := snapshotMain(context.Background(), []string{"ls", "--snapshot-dir", t.TempDir()}); err == nil {
		t.Error("ls of a directory that is no snapshot directory succeeded")
	}
}
