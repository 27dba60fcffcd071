package serve

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the service's Prometheus metrics, in a registry of its own
// (GET /metrics).
type metrics struct {
	reg *prometheus.Registry

	invocations    *prometheus.CounterVec   // function, outcome
	starts         *prometheus.CounterVec   // function, start (cold|warm)
	restoreSeconds *prometheus.HistogramVec // function
	e2eSeconds     *prometheus.HistogramVec // function, start
	queueSeconds   *prometheus.HistogramVec // function
	prefetchBytes  *prometheus.CounterVec   // function
	prefetchSecs   *prometheus.HistogramVec // function
	wsetMisses     *prometheus.CounterVec   // function
	rerecords      *prometheus.CounterVec   // function, outcome
	createSeconds  *prometheus.HistogramVec // step
	instanceEnds   *prometheus.CounterVec   // why
	evictions      prometheus.Counter
	budgetWaits    prometheus.Counter
	budgetUsed     *prometheus.GaugeVec // kind
}

// latencyBuckets span a warm TCG invocation (tens of ms) to a slow cold
// one (tens of seconds).
var latencyBuckets = prometheus.ExponentialBuckets(0.005, 2, 14)

func newMetrics(s *Server) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	f := func(c prometheus.Collector) { m.reg.MustRegister(c) }
	m.invocations = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "snapbpf_invocations_total", Help: "Invocations by function and outcome (ok, error, timeout, rejected, bad_input, unavailable; forwarded: run by another node, which counts it too)."}, []string{"function", "outcome"})
	m.starts = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "snapbpf_starts_total", Help: "Invocations served by a cold restore or a warm instance."}, []string{"function", "start"})
	m.restoreSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "snapbpf_restore_seconds", Help: "Cold restores: the restore call until the guest is resumed and reseeded.", Buckets: latencyBuckets}, []string{"function"})
	m.e2eSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "snapbpf_invocation_seconds", Help: "Invocations end to end in the service: request read to result, queueing included.", Buckets: latencyBuckets}, []string{"function", "start"})
	m.queueSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "snapbpf_queue_seconds", Help: "Time invocations waited for an instance.", Buckets: latencyBuckets}, []string{"function"})
	m.prefetchBytes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "snapbpf_prefetch_bytes_total", Help: "Bytes of working set prefetched by cold restores (read and zero-filled)."}, []string{"function"})
	m.prefetchSecs = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "snapbpf_prefetch_seconds", Help: "Cold restores' prefetch, start to completion.", Buckets: latencyBuckets}, []string{"function"})
	m.wsetMisses = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "snapbpf_wset_miss_faults_total", Help: "Major faults of cold restores' VMMs on the memory file: pages the working set did not bring in."}, []string{"function"})
	m.rerecords = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "snapbpf_rerecords_total", Help: "Working-set re-recordings by outcome."}, []string{"function", "outcome"})
	m.createSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "snapbpf_create_seconds", Help: "Function creation steps (snapshot, record).", Buckets: prometheus.ExponentialBuckets(1, 2, 10)}, []string{"step"})
	m.instanceEnds = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "snapbpf_instance_ends_total", Help: "Instances ended, by why."}, []string{"why"})
	m.evictions = prometheus.NewCounter(prometheus.CounterOpts{Name: "snapbpf_evictions_total", Help: "Idle instances evicted for the memory budget."})
	m.budgetWaits = prometheus.NewCounter(prometheus.CounterOpts{Name: "snapbpf_budget_waits_total", Help: "Times an invocation queued because the memory budget was reached with nothing idle to evict."})
	m.budgetUsed = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "snapbpf_memory_used_bytes", Help: "Host memory the functions use, measured at each scrape and each cold start's admission under a budget: page cache of their memory files, private memory of their instances."}, []string{"kind"})
	for _, c := range []prometheus.Collector{m.invocations, m.starts, m.restoreSeconds, m.e2eSeconds, m.queueSeconds, m.prefetchBytes, m.prefetchSecs, m.wsetMisses, m.rerecords, m.createSeconds, m.instanceEnds, m.evictions, m.budgetWaits, m.budgetUsed} {
		f(c)
	}
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "snapbpf_memory_budget_bytes", Help: "The memory budget (0: none)."}, func() float64 { return float64(s.cfg.MemoryBudget) }))
	f(&instancesCollector{s: s, desc: prometheus.NewDesc("snapbpf_instances", "Instances by function and state (warm, busy).", []string{"function", "state"}, nil)})
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// instancesCollector reports the pools' instances as they are at scrape
// time.
type instancesCollector struct {
	s    *Server
	desc *prometheus.Desc
}

func (c *instancesCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *instancesCollector) Collect(ch chan<- prometheus.Metric) {
	for _, e := range c.s.reg.all() {
		n := e.pool.counts()
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n.Warm), e.name, "warm")
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n.Busy), e.name, "busy")
	}
}
