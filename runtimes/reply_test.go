package runtimes

import (
	"errors"
	"testing"
)

func TestDecodeReply(t *testing.T) {
	for _, tc := range []struct {
		line   string
		status int
		body   string
		bad    bool
	}{
		{`{"payload":"hi"}` + "\n", 200, `{"payload":"hi"}`, false},
		{`{"ok": true}`, 200, `{"ok": true}`, false},
		{`[1,2]`, 200, `[1,2]`, false},
		{`42`, 200, `42`, false},
		{`"!not a status"`, 200, `"!not a status"`, false},
		{`!502 {"error":"The action did not return a dictionary."}` + "\n", 502, `{"error":"The action did not return a dictionary."}`, false},
		{`!403 {"error":"Cannot initialize the action more than once."}`, 403, `{"error":"Cannot initialize the action more than once."}`, false},
		{`!50 {}`, 0, ``, true},
		{`!5x2 {}`, 0, ``, true},
		{`!502{}`, 0, ``, true},
		{`!042 {}`, 0, ``, true},
	} {
		st, body, err := DecodeReply([]byte(tc.line))
		if tc.bad {
			if !errors.Is(err, ErrBadReply) {
				t.Errorf("%q: err %v, want ErrBadReply", tc.line, err)
			}
			continue
		}
		if err != nil || st != tc.status || string(body) != tc.body {
			t.Errorf("%q: %d %s %v, want %d %s", tc.line, st, body, err, tc.status, tc.body)
		}
		if enc := EncodeReply(st, body); string(enc) != tc.body+"\n" && st == 200 {
			t.Errorf("%q: encode %q", tc.line, enc)
		}
		if st != 200 {
			if st2, b2, _ := DecodeReply(EncodeReply(st, body)); st2 != st || string(b2) != string(body) {
				t.Errorf("%q: round trip %d %s", tc.line, st2, b2)
			}
		}
	}
}

func TestResolve(t *testing.T) {
	for in, want := range map[string]string{
		"nodejs:20": "nodejs:20", "nodejs:default": "nodejs:20",
		"python:3.11": "python:3.11", "python:3": "python:3.11", "python:default": "python:3.11",
		// Other versions of a family, as a stock controller's manifest may name them.
		"nodejs:14": "nodejs:20", "nodejs:18": "nodejs:20", "python:3.7": "python:3.11", "python:3.12": "python:3.11",
	} {
		k, err := Resolve(in)
		if err != nil || k.Name != want {
			t.Errorf("Resolve(%q) = %q, %v", in, k.Name, err)
		}
	}
	for _, bad := range []string{"java:8", "python:2.7", "python:3.x", "nodejs:20.1", "nodejs:", "blackbox", "go:1.22"} {
		if _, err := Resolve(bad); !errors.Is(err, ErrUnknownKind) {
			t.Errorf("Resolve(%q): %v", bad, err)
		}
	}
	k, _ := Resolve("python:3")
	if got := k.Argv(); len(got) != 5 || got[0] != "/usr/bin/python3.11" || got[4] != "/seuss/launcher.py" {
		t.Errorf("argv %q", got)
	}
}

// FuzzDecodeReply: answers come from the guest; decoding never panics and a decoded
// non-200 answer re-encodes to the same line.
func FuzzDecodeReply(f *testing.F) {
	for _, s := range []string{`{"ok":true}`, `!502 {"error":"x"}`, `!`, `!999 `, "!200 []\n", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		st, body, err := DecodeReply(line)
		if err != nil || st == 200 {
			return
		}
		if st < 100 || st > 999 {
			t.Fatalf("status %d", st)
		}
		if st2, b2, err := DecodeReply(EncodeReply(st, body)); err != nil || st2 != st || string(b2) != string(body) {
			t.Fatalf("round trip %q: %d %q %v", line, st2, b2, err)
		}
	})
}
