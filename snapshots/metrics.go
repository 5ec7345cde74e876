package snapshots

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/seuss-go/seuss/activation"
)

// The executor's own metrics, read at scrape time (Executor implements
// prometheus.Collector; `invoker serve` registers an executor that does).
var (
	descPaths = prometheus.NewDesc("seuss_deployments_total",
		"Activations by deployment path (H hot UC, W function snapshot, C runtime snapshot, B boot).", []string{"path"}, nil)
	descLive = prometheus.NewDesc("seuss_instances_live", "UCs alive (running or idle).", nil, nil)
	descIdle = prometheus.NewDesc("seuss_instances_idle", "Idle UCs kept for their action (path H).", nil, nil)
	descRes  = prometheus.NewDesc("seuss_instances_reserved_megabytes", "Memory limits of live UCs, MB.", nil, nil)
	descRec  = prometheus.NewDesc("seuss_recycled_vms_megabytes",
		"Memory held by recycled VMs waiting for a restore (their residue), charged to the memory budget with the UCs' limits, MB.", nil, nil)
	descSnap = prometheus.NewDesc("seuss_snapshots", "Snapshots cached, by type (runtime, function).", []string{"type"}, nil)
	descFoot = prometheus.NewDesc("seuss_function_snapshot_cache_bytes",
		"Function snapshot cache footprint: state files and page-store pages, each page once.", nil, nil)
	descFunc = prometheus.NewDesc("seuss_function_snapshot_bytes",
		"Function snapshots' bytes held by one snapshot alone (private) or by several (shared).", []string{"sharing"}, nil)
	descUC = prometheus.NewDesc("seuss_live_uc_bytes",
		"Live UCs' resident guest memory from smaps: private (anonymous, written since restore) or shared (the runtime snapshot's page cache).", []string{"sharing"}, nil)
)

// Describe implements prometheus.Collector.
func (e *Executor) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPaths, descLive, descIdle, descRes, descRec, descSnap, descFoot, descFunc, descUC} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (e *Executor) Collect(ch chan<- prometheus.Metric) {
	st := e.Stats()
	for _, p := range []activation.Path{activation.PathHot, activation.PathWarm, activation.PathCold, activation.PathBoot} {
		ch <- prometheus.MustNewConstMetric(descPaths, prometheus.CounterValue, float64(st.Paths[p]), string(p))
	}
	ch <- prometheus.MustNewConstMetric(descLive, prometheus.GaugeValue, float64(st.Live))
	ch <- prometheus.MustNewConstMetric(descIdle, prometheus.GaugeValue, float64(st.Idle))
	ch <- prometheus.MustNewConstMetric(descRes, prometheus.GaugeValue, float64(st.ReservedMB))
	ch <- prometheus.MustNewConstMetric(descRec, prometheus.GaugeValue, float64(st.RecycledMB))
	m := e.Memory()
	ch <- prometheus.MustNewConstMetric(descSnap, prometheus.GaugeValue, float64(m.RuntimeSnapshots), TypeRuntime)
	ch <- prometheus.MustNewConstMetric(descSnap, prometheus.GaugeValue, float64(m.FunctionSnapshots), TypeFunction)
	ch <- prometheus.MustNewConstMetric(descFoot, prometheus.GaugeValue, float64(m.FunctionSnapshotBytes))
	ch <- prometheus.MustNewConstMetric(descFunc, prometheus.GaugeValue, float64(m.FunctionPrivateBytes), "private")
	ch <- prometheus.MustNewConstMetric(descFunc, prometheus.GaugeValue, float64(m.FunctionSharedBytes), "shared")
	ch <- prometheus.MustNewConstMetric(descUC, prometheus.GaugeValue, float64(m.LivePrivateBytes), "private")
	ch <- prometheus.MustNewConstMetric(descUC, prometheus.GaugeValue, float64(m.LiveSharedBytes), "shared")
}

var _ prometheus.Collector = (*Executor)(nil)
