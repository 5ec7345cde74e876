package main

import (
	"context"
	"errors"
	"os"
	"testing"
)

func TestParseSize(t *testing.T) {
	cases := map[string]uint64{"256MiB": 256 << 20, "1GiB": 1 << 30, "4096": 4096, "512M": 512 << 20, "2G": 2 << 30, "10KB": 10000}
	for in, want := range cases {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "-1", "MiB", "1TiBB", "99999999999GiB"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) accepted", bad)
		}
	}
}

func TestRunUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"--memory", "lots", "--", "/bin/true"}, {"--env", "novalue", "--", "/bin/true"}, {"--max-fds", "1", "--", "/bin/true"}} {
		code, err := runMain(context.Background(), args)
		if !errors.Is(err, errUsage) || code != 2 {
			t.Errorf("%v: %d %v", args, code, err)
		}
	}
}

// TestRunExitStatus: the command's exit status is the guest's.
func TestRunExitStatus(t *testing.T) {
	if _, err := os.Stat("/dev/kvm"); os.IsNotExist(err) {
		t.Skip("skipped: /dev/kvm does not exist on this machine")
	}
	code, err := runMain(context.Background(), []string{"--timeout", "1m", "--", "/usr/bin/python3.11", "-c", "import sys; sys.exit(3)"})
	if err != nil || code != 3 {
		t.Fatalf("%d %v", code, err)
	}
	code, err = runMain(context.Background(), []string{"--", "/no/such/program"})
	if err == nil || code != 127 {
		t.Fatalf("missing program: %d %v", code, err)
	}
}
