package conformance

import (
	"testing"
)

// TestLoad checks that every case file parses and builds its jobs; running them needs
// an executor (see runtimes/process).
func TestLoad(t *testing.T) {
	for _, lang := range []string{"nodejs", "python"} {
		cases, err := Load(Dir(lang))
		if err != nil {
			t.Fatal(err)
		}
		for i := range cases {
			c := &cases[i]
			if c.Source == "" {
				t.Errorf("%s/%s: no source", lang, c.Name)
			}
			for r := range c.Runs {
				if _, err := c.Job(lang, r, "rev"); err != nil {
					t.Errorf("%s/%s run %d: %v", lang, c.Name, r, err)
				}
			}
		}
	}
}
