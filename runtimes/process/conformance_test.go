package process

import (
	"testing"

	"github.com/seuss-go/seuss/runtimes/conformance"
)

func TestConformance(t *testing.T) {
	e := newExec(t, Config{})
	for _, tc := range []struct{ kind, lang string }{{"nodejs:20", "nodejs"}, {"python:3.11", "python"}} {
		t.Run(tc.lang, func(t *testing.T) {
			cases, err := conformance.Load(conformance.Dir(tc.lang))
			if err != nil {
				t.Fatal(err)
			}
			conformance.RunAll(t, e, tc.kind, cases)
		})
	}
}
