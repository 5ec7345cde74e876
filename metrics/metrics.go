// Package metrics is the invoker's Prometheus instrumentation: activations by SEUSS
// path (H, W, C, B) and outcome, latency histograms per path, malformed and redelivered
// messages, and the queue depth of the Kafka consumer. It implements
// activation.Observer; it knows nothing of how activations run.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/seuss-go/seuss/activation"
)

// Metrics holds the invoker's collectors in its own registry (so that several
// invokers can live in one test process).
type Metrics struct {
	reg         *prometheus.Registry
	activations *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	malformed   prometheus.Counter
	redelivered prometheus.Counter
	inFlight    prometheus.Gauge
}

var _ activation.Observer = (*Metrics)(nil)

// New registers the collectors (plus Go and process collectors) in a new registry.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		activations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "seuss_activations_total",
			Help: "Activations acked, by SEUSS path (H hot, W warm, C cold, B boot; none when never run) and status (OpenWhisk statusForCode).",
		}, []string{"path", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "seuss_activation_latency_seconds",
			Help:    "Time from receiving the activation message to its last ack, by SEUSS path.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18), // 0.5 ms .. ~65 s
		}, []string{"path"}),
		malformed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "seuss_malformed_messages_total",
			Help: "Messages on invoker{N} dropped because they are not ActivationMessages.",
		}),
		redelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "seuss_redelivered_activations_total",
			Help: "Redelivered messages whose activation already had a record: acked again, not rerun.",
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "seuss_queue_depth",
			Help: "Activation messages fetched from Kafka and not yet acked (running or waiting for memory).",
		}),
	}
	m.reg.MustRegister(m.activations, m.latency, m.malformed, m.redelivered, m.inFlight,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is where other parts (snapshots, sharing) register their own collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text format (mount at /metrics).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Malformed implements activation.Observer.
func (m *Metrics) Malformed(error) { m.malformed.Inc() }

// Redelivered implements activation.Observer.
func (m *Metrics) Redelivered() { m.redelivered.Inc() }

// Completed implements activation.Observer.
func (m *Metrics) Completed(path activation.Path, status int, latency time.Duration) {
	p := string(path)
	if p == "" {
		p = "none"
	}
	m.activations.WithLabelValues(p, StatusName(status)).Inc()
	m.latency.WithLabelValues(p).Observe(latency.Seconds())
}

// QueueDepth sets the queue depth gauge (kafka.ServiceConfig.Observer).
func (m *Metrics) QueueDepth(n int) { m.inFlight.Set(float64(n)) }

// StatusName is OpenWhisk's statusForCode (ActivationResult.scala).
func StatusName(code int) string {
	switch code {
	case activation.StatusSuccess:
		return "success"
	case activation.StatusApplicationError:
		return "application_error"
	case activation.StatusDeveloperError:
		return "action_developer_error"
	case activation.StatusWhiskError:
		return "whisk_internal_error"
	}
	return "unknown"
}

// PoolGauges registers gauges read from an executor's pool at scrape time: live and
// idle instances and the memory reserved for them.
func (m *Metrics) PoolGauges(live, idle, reservedMB func() int) {
	g := func(name, help string, f func() int) prometheus.GaugeFunc {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return float64(f()) })
	}
	m.reg.MustRegister(
		g("seuss_instances_live", "Runtime instances alive (running or idle).", live),
		g("seuss_instances_idle", "Idle runtime instances kept for their action (hot path H).", idle),
		g("seuss_instances_reserved_megabytes", "Memory reserved by live runtime instances, MB.", reservedMB),
	)
}
