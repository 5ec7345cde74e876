package metrics

import (
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/seuss-go/seuss/activation"
)

func TestMetricsExposition(t *testing.T) {
	m := New()
	m.Completed(activation.PathHot, activation.StatusSuccess, 3*time.Millisecond)
	m.Completed("", activation.StatusWhiskError, time.Millisecond)
	m.Malformed(errors.New("x"))
	m.Redelivered()
	m.QueueDepth(5)
	m.PoolGauges(func() int { return 2 }, func() int { return 1 }, func() int { return 256 })
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`seuss_activations_total{path="H",status="success"} 1`,
		`seuss_activations_total{path="none",status="whisk_internal_error"} 1`,
		`seuss_activation_latency_seconds_count{path="H"} 1`,
		`seuss_malformed_messages_total 1`,
		`seuss_redelivered_activations_total 1`,
		`seuss_queue_depth 5`,
		`seuss_instances_reserved_megabytes 256`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("missing %q", want)
		}
	}
}
