package process

import (
	"os"
	"testing"

	"github.com/seuss-go/seuss/runtimes/conformance"
)

func TestConformance(t *testing.T) {
	cfg := Config{}
	if os.Geteuid() == 0 {
		cfg.UID, cfg.GID = 65534, 65534 // as nobody: the launchers need nothing of root
	}
	e := newExec(t, cfg)
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
