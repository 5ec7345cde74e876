package process

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/runtimes"
)

var benchCode = map[string]string{
	"nodejs:20":   "function main(params) { return { payload: 'Hello, ' + params.name } }",
	"python:3.11": "def main(args):\n    return {'payload': 'Hello, ' + args['name']}\n",
}

var benchKinds = []struct{ name, kind string }{{"nodejs", "nodejs:20"}, {"python", "python:3.11"}}

// BenchmarkCold is a cold start (Path B) per iteration: a fresh process, init, run.
func BenchmarkCold(b *testing.B) {
	for _, k := range benchKinds {
		b.Run(k.name, func(b *testing.B) {
			e := newExec(b, Config{})
			var init, run time.Duration
			for i := 0; b.Loop(); i++ {
				j := job(k.kind, "cold", benchCode[k.kind], `{"name":"bench"}`)
				j.Key.Revision = fmt.Sprint(i)
				out, err := e.Run(context.Background(), j)
				if err != nil || out.Err != nil || out.Path != activation.PathBoot || out.RunStatus != 200 {
					b.Fatalf("%+v %v", out, err)
				}
				init += out.InitEnd.Sub(out.InitStart)
				run += out.RunEnd.Sub(out.RunStart)
				b.StopTimer()
				e.DropIdle()
				b.StartTimer()
			}
			b.ReportMetric(float64(init.Microseconds())/float64(b.N), "init-µs/op")
			b.ReportMetric(float64(run.Microseconds())/float64(b.N), "run-µs/op")
		})
	}
}

// BenchmarkHot is an activation in a live instance of the same action (Path H).
func BenchmarkHot(b *testing.B) {
	for _, k := range benchKinds {
		for _, size := range []int{0, 1 << 20} {
			name := k.name
			if size > 0 {
				name += "/1MB"
			}
			b.Run(name, func(b *testing.B) {
				e := newExec(b, Config{})
				value := `{"name":"bench"}`
				if size > 0 {
					value = `{"name":"` + strings.Repeat("x", size) + `"}`
				}
				j := job(k.kind, "hot", benchCode[k.kind], value)
				if _, err := e.Run(context.Background(), j); err != nil {
					b.Fatal(err)
				}
				for b.Loop() {
					out, err := e.Run(context.Background(), j)
					if err != nil || out.Err != nil || out.Path != activation.PathHot || out.RunStatus != 200 {
						b.Fatalf("%+v %v", out, err)
					}
				}
			})
		}
	}
}

// BenchmarkBareStart is the floor under a cold start, measured in the same run: the
// interpreter starting and exiting with nothing to do, with the launchers' flags and
// environment.
func BenchmarkBareStart(b *testing.B) {
	for _, k := range benchKinds {
		b.Run(k.name, func(b *testing.B) {
			kind, _ := runtimes.Resolve(k.kind)
			args := append(append([]string{}, kind.Flags...), "-e", "0")
			if k.name == "python" {
				args = append(append([]string{}, kind.Flags...), "-c", "0")
			}
			for b.Loop() {
				cmd := exec.Command(kind.Interpreter, args...)
				cmd.Env = runtimes.Env
				if err := cmd.Run(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
