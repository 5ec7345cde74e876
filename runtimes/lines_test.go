package runtimes

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/seuss-go/seuss/activation"
)

func TestEncodeRun(t *testing.T) {
	for _, tc := range []struct{ value, want string }{
		{``, `{"value":{},"namespace":"n","action_name":"/n/a","action_version":"","activation_id":"id","transaction_id":"","deadline":"9"}` + "\n"},
		{`{"a": 1}`, `{"value":{"a": 1},"namespace":"n","action_name":"/n/a","action_version":"","activation_id":"id","transaction_id":"","deadline":"9"}` + "\n"},
		{"{\n \"a\": [1,\n 2]\n}\n", `{"value":{"a":[1,2]},"namespace":"n","action_name":"/n/a","action_version":"","activation_id":"id","transaction_id":"","deadline":"9"}` + "\n"},
	} {
		got, err := EncodeRun(&activation.RunMessage{Value: []byte(tc.value), Namespace: "n", ActionName: "/n/a", ActivationID: "id", Deadline: "9"})
		if err != nil || string(got) != tc.want {
			t.Errorf("%q: %s %v", tc.value, got, err)
		}
	}
	got, _ := EncodeRun(&activation.RunMessage{Value: []byte(`[]`), APIKey: "k<&>"})
	if !strings.HasSuffix(string(got), `"api_key":"k<&>"}`+"\n") {
		t.Errorf("api_key: %s", got)
	}
	if _, err := EncodeRun(&activation.RunMessage{Value: []byte("{\n\"a\": }")}); err == nil {
		t.Error("a malformed multi-line value was accepted")
	}
}

func TestEncodeInit(t *testing.T) {
	line, err := EncodeInit(&activation.InitMessage{Name: "a", Main: "main", Code: "x < y && z > w"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(line), "\n") != 1 || !strings.HasSuffix(string(line), "\n") || !strings.Contains(string(line), `"x < y && z > w"`) {
		t.Errorf("not one unescaped line: %q", line)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(line, &m); err != nil || len(m) != 1 || m["value"] == nil {
		t.Errorf("not {\"value\":…}: %q %v", line, err)
	}
}
