package process

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/seuss-go/seuss/activation"
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
