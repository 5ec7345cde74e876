package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"text/tabwriter"
	"time"
)

// targetResult is one target's run of a workload.
type targetResult struct {
	Target  string
	Samples []*sample
	Start   time.Time // first send
	End     time.Time // last result ack
	Err     error

	Sent, Acked        int
	Duplicates         int // activations with more than one result or completion ack
	Missing            int // activations without both acks
	Failed             int // acked with a status other than success
	Strays             int
	ThroughputPerS     float64
	P50, P90, P99      float64 // ms, end to end (produce → result ack)
	Paths              map[string]int
	OverheadHP50       float64 // ms: H-path end to end minus the function's own time
	OverheadKafkaHP50  float64 // ms: the same from the message being in Kafka
	InvokerOverheadP50 float64 // ms: H-path executor time minus the function's own time (in-process)
	HasOverhead        bool
	// CaptureDrain is how long the executor's background snapshot captures still ran
	// after the run and its linger (0: none pending, or no such executor).
	CaptureDrain time.Duration
	// Prepare is how long the executor took to get ready before the run (the kind's
	// runtime snapshot, as a started invoker has it), outside the measured window; 0
	// when nothing was prepared (--cold-invoker, or an executor with nothing to prepare).
	Prepare time.Duration
	// CPU is the CPU time the run cost this process and its children (in-process
	// stacks only): from the first send until the stack was closed.
	CPU time.Duration
	// RecordWriteP50 is the invoker's record write (store.PutActivation) p50 in ms, in
	// process only; NaN when unknown.
	RecordWriteP50 float64
}

// CPUPerActivation is CPU ms per acked activation, NaN when unknown.
func (r *targetResult) CPUPerActivation() float64 {
	if r.CPU <= 0 || r.Acked == 0 {
		return math.NaN()
	}
	return ms(r.CPU) / float64(r.Acked)
}

func summarize(target string, samples []*sample, strays int, err error) *targetResult {
	r := &targetResult{Target: target, Samples: samples, Err: err, Strays: strays, RecordWriteP50: math.NaN(),
		Paths: map[string]int{"H": 0, "W": 0, "C": 0, "B": 0}}
	var lat, overH, overK, invH []float64
	for _, s := range samples {
		if s.ID == "" {
			continue
		}
		r.Sent++
		if r.Start.IsZero() || s.Sent.Before(r.Start) {
			r.Start = s.Sent
		}
		if s.Results > 1 || s.Completions > 1 {
			r.Duplicates++
		}
		if s.Results == 0 || s.Completions == 0 {
			r.Missing++
			continue
		}
		r.Acked++
		if s.Status != 0 {
			r.Failed++
		}
		if s.Result.After(r.End) {
			r.End = s.Result
		}
		e2e := ms(s.E2E())
		lat = append(lat, e2e)
		if s.Path != "" {
			r.Paths[s.Path]++
		}
		if s.Path == "H" && s.Status == 0 {
			overH = append(overH, e2e-s.FnUS/1000)
			overK = append(overK, ms(s.FromKafka())-s.FnUS/1000)
			if s.ExecTime > 0 {
				invH = append(invH, ms(s.ExecTime)-s.FnUS/1000)
			}
		}
	}
	if r.Acked > 0 && r.End.After(r.Start) {
		r.ThroughputPerS = float64(r.Acked) / r.End.Sub(r.Start).Seconds()
	}
	r.P50, r.P90, r.P99 = pct(lat, 50), pct(lat, 90), pct(lat, 99)
	if len(overH) > 0 {
		r.HasOverhead = true
		r.OverheadHP50 = pct(overH, 50)
		r.OverheadKafkaHP50 = pct(overK, 50)
		r.InvokerOverheadP50 = pct(invH, 50)
	}
	return r
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// pct is the p-th percentile (nearest rank) of xs; NaN when empty.
func pct(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	if rank < 1 {
		rank = 1
	}
	return s[rank-1]
}

// runReport is the JSON object of `run --json`, exactly the shape.
type runReport struct {
	Scenario string                 `json:"scenario"`
	Results  map[string]*jsonResult `json:"results"`
	Ratios   map[string]*float64    `json:"ratios"`
}

type jsonResult struct {
	ThroughputPerS float64        `json:"throughput_per_s"`
	P50            *float64       `json:"p50_ms"`
	P99            *float64       `json:"p99_ms"`
	Paths          map[string]int `json:"paths"`
}

func num(f float64) *float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil
	}
	f = math.Round(f*1000) / 1000
	return &f
}

func buildRunReport(scenario string, rs []*targetResult) *runReport {
	out := &runReport{Scenario: scenario, Results: map[string]*jsonResult{}, Ratios: map[string]*float64{}}
	by := map[string]*targetResult{}
	for _, r := range rs {
		by[r.Target] = r
		out.Results[r.Target] = &jsonResult{
			ThroughputPerS: *orZero(num(r.ThroughputPerS)),
			P50:            num(r.P50),
			P99:            num(r.P99),
			Paths:          r.Paths,
		}
	}
	for _, base := range []string{"boot", "process"} {
		var v *float64
		if s, b := by["seuss"], by[base]; s != nil && b != nil && b.ThroughputPerS > 0 {
			v = num(s.ThroughputPerS / b.ThroughputPerS)
		}
		out.Ratios["seuss_vs_"+base] = v
	}
	return out
}

func orZero(f *float64) *float64 {
	if f == nil {
		z := 0.0
		return &z
	}
	return f
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func fmtMS(f float64) string {
	if math.IsNaN(f) {
		return "-"
	}
	if f < 10 {
		return strconv.FormatFloat(f, 'f', 2, 64)
	}
	return strconv.FormatFloat(f, 'f', 1, 64)
}

// writeTable prints the human summary.
func writeTable(w io.Writer, scenario string, rs []*targetResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "scenario %s\n", scenario)
	fmt.Fprintln(tw, "target\tsent\tacked\tfailed\tdup\tmissing\tthroughput/s\tp50 ms\tp90 ms\tp99 ms\tH\tW\tC\tB\tH overhead p50 ms\tfrom in-Kafka\texecutor-only\tCPU ms/act\t")
	for _, r := range rs {
		over, overK, inv := "-", "-", "-"
		if r.HasOverhead {
			over, overK, inv = fmtMS(r.OverheadHP50), fmtMS(r.OverheadKafkaHP50), fmtMS(r.InvokerOverheadP50)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%.1f\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t\n",
			r.Target, r.Sent, r.Acked, r.Failed, r.Duplicates, r.Missing, r.ThroughputPerS,
			fmtMS(r.P50), fmtMS(r.P90), fmtMS(r.P99), r.Paths["H"], r.Paths["W"], r.Paths["C"], r.Paths["B"], over, overK, inv, fmtMS(r.CPUPerActivation()))
	}
	tw.Flush()
	by := map[string]*targetResult{}
	for _, r := range rs {
		by[r.Target] = r
		if r.Err != nil {
			fmt.Fprintf(w, "%s: %v\n", r.Target, r.Err)
		}
		if !math.IsNaN(r.RecordWriteP50) {
			fmt.Fprintf(w, "%s: the invoker's record write (between result and completion acks) p50 %s ms\n", r.Target, fmtMS(r.RecordWriteP50))
		}
		if r.Prepare > 0 {
			fmt.Fprintf(w, "%s: the runtime snapshot was prepared before the run in %v (not measured; --cold-invoker measures it)\n", r.Target, r.Prepare.Round(time.Millisecond))
		}
		if r.CaptureDrain > time.Millisecond {
			fmt.Fprintf(w, "%s: background snapshot captures ran %v past the end of the run\n", r.Target, r.CaptureDrain.Round(time.Millisecond))
		}
	}
	for _, base := range []string{"boot", "process"} {
		if s, b := by["seuss"], by[base]; s != nil && b != nil && b.ThroughputPerS > 0 {
			fmt.Fprintf(w, "throughput seuss/%s = %.2fx", base, s.ThroughputPerS/b.ThroughputPerS)
			if cs, cb := s.CPUPerActivation(), b.CPUPerActivation(); !math.IsNaN(cs) && !math.IsNaN(cb) && cs > 0 {
				fmt.Fprintf(w, "; CPU per activation %s/seuss = %.2fx", base, cb/cs)
			}
			fmt.Fprintln(w)
		}
	}
}

// csvHeader is the per-activation CSV's columns. Times are ms; sent_ms is relative to
// the target's first send; exec_ms and run_ms are the in-process invoker's own numbers.
var csvHeader = []string{"target", "seq", "activation_id", "action", "path", "status",
	"sent_ms", "e2e_ms", "from_kafka_ms", "completion_ms", "fn_ms", "overhead_ms", "exec_ms", "run_ms", "results", "completions"}

func writeCSV(path string, rs []*targetResult) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write(csvHeader)
	f3 := func(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }
	for _, r := range rs {
		for _, s := range r.Samples {
			if s.ID == "" {
				continue
			}
			e2e, fromK, comp, over := "", "", "", ""
			if !s.Result.IsZero() {
				e2e = f3(ms(s.E2E()))
				fromK = f3(ms(s.FromKafka()))
				over = f3(ms(s.E2E()) - s.FnUS/1000)
			}
			if !s.Completion.IsZero() {
				comp = f3(ms(s.Completion.Sub(s.Sent)))
			}
			execMS, runMS := "", ""
			if s.ExecTime > 0 {
				execMS, runMS = f3(ms(s.ExecTime)), f3(ms(s.RunTime))
			}
			w.Write([]string{r.Target, strconv.Itoa(s.Seq), s.ID, s.Action, s.Path, strconv.Itoa(s.Status),
				f3(ms(s.Sent.Sub(r.Start))), e2e, fromK, comp, f3(s.FnUS / 1000), over, execMS, runMS,
				strconv.Itoa(s.Results), strconv.Itoa(s.Completions)})
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
