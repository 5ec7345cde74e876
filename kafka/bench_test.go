package kafka_test

import (
	"testing"
	"time"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/activation/activationtest"
)

// BenchmarkBlockingRoundTrip: one blocking activation at a time of a warm (H) nodejs
// action, controller → invoker0 → invoker → completed0, over the embedded broker, the
// bbolt store and the process executor. ns/op is the end-to-end latency.
func BenchmarkBlockingRoundTrip(b *testing.B) {
	e := newEnv(b)
	rev := putAction(b, e.store, "noop", "nodejs:20", `function main(p) { return p }`, nil)
	warm := activationtest.Message("guest", "noop", rev, true, nil)
	e.ctrl.send(warm)
	e.ctrl.completed(warm.ActivationID)
	b.ResetTimer()
	var toResult time.Duration
	for i := 0; i < b.N; i++ {
		m := activationtest.Message("guest", "noop", rev, true, map[string]any{"i": i})
		start := time.Now()
		e.ctrl.send(m)
		e.ctrl.until("the result", func() bool { return len(e.ctrl.acks[m.ActivationID]) > 0 })
		toResult += time.Since(start)
		e.ctrl.completed(m.ActivationID)
	}
	// What a blocking caller waits for: the result ack, sent before the record is written.
	b.ReportMetric(float64(toResult.Microseconds())/1000/float64(b.N), "ms-to-result/op")
}

// BenchmarkThroughput: batches of 64 non-blocking activations in flight at once.
func BenchmarkThroughput(b *testing.B) {
	e := newEnv(b)
	rev := putAction(b, e.store, "noop", "nodejs:20", `function main(p) { return p }`, nil)
	batch := func(n int) {
		msgs := make([]*activation.ActivationMessage, n)
		for i := range msgs {
			msgs[i] = activationtest.Message("guest", "noop", rev, false, nil)
		}
		e.ctrl.send(msgs...)
		for _, m := range msgs {
			e.ctrl.completed(m.ActivationID)
		}
	}
	batch(64) // start the instances: what follows runs hot
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(64, b.N-done)
		batch(n)
		done += n
	}
}
