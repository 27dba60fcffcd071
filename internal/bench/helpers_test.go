package bench

import (
	"fmt"
	"time"

	"github.com/snapbpf/snapbpf/internal/funcvm"
)

// fakeMachine is a machine description for pure-logic tests.
var fakeMachine = Machine{CPU: "Test CPU", NProc: 2, MemMiB: 24000, Kernel: "6.18.0", VMM: "qemu-microvm 7.2.19", Accel: "tcg",
	Disk: Disk{Device: "vda", MaxSectorsKB: 4096}}

// fakeMetrics gives a cell plausible, distinct numbers: snapbpf faster
// than lazy faster than nora, memory growing with N, fio slower than the
// prefetch, and a spread across runs.
func fakeMetrics(k Key) map[string]float64 {
	fn := map[string]float64{"json": 1, "bert": 2, "alloc": 1.5}[k.Function]
	if fn == 0 {
		fn = 1
	}
	jitter := 1 + 0.05*float64(k.Run-2)
	switch k.Experiment {
	case ExpPrefetch:
		bytes := 20e6 * fn
		ms := 20 * fn * jitter
		if k.Policy == SeriesFio {
			ms *= 1.3
		}
		return map[string]float64{MetricBytes: bytes, MetricMs: ms, MetricMBps: bytes / 1e6 / (ms / 1000), MetricRequests: 500}
	case ExpTrace:
		return map[string]float64{MetricTracePages: 5000 * fn, MetricTraceHoles: 1000, MetricTraceSlowdown: 20,
			MetricGuestFnMs: 500 * fn, MetricHostFnMs: 25 * fn, MetricTraceRecordMs: 2500, MetricTraceWritten: 1000 * fn}
	}
	pol := map[string]float64{"lazy": 1, "nora": 1.8, "snapbpf": 0.7, "snapbpf-other": 1.1, "warm": 0.5, "faasnap": 0.75, "reap": 0.8}[k.Policy]
	if k.Experiment == ExpBreakdown {
		pol = 1.2
	}
	n := float64(k.N)
	e2e := 1000 * fn * pol * (1 + 0.3*(n-1)) * jitter
	if sourceOf(k.Experiment) == SourceReplay {
		// Native-speed compute: a fifth of the time, and scattered pages cost.
		e2e = e2e / 5 * (1 + k.Scatter)
	}
	cache := 100e6 * fn * pol
	private := 10e6 * n
	m := map[string]float64{
		MetricE2EMs: e2e, MetricE2EMaxMs: e2e * 1.1, MetricCacheBytes: cache, MetricPrivateBytes: private,
		MetricTotalBytes: cache + private, MetricReadBytes: cache, MetricMajorFaults: 100 * n,
	}
	if k.Experiment == ExpLatency {
		m[MetricGuestFnMs] = 400 * fn
		if k.N == 1 {
			m[MetricTouchedPages] = 4000 * fn
			m[MetricUntouchedPages] = 4000 * fn * map[string]float64{"warm": 0.5, "lazy": 0.3, "snapbpf": 0.02, "snapbpf-other": 0.05}[k.Policy]
			if k.Policy == "snapbpf" || k.Policy == "snapbpf-other" {
				m[MetricWSPages], m[MetricWSUntouched] = 3000*fn, 3000*fn*map[string]float64{"snapbpf": 0.02, "snapbpf-other": 0.08}[k.Policy]
			}
		}
	}
	return m
}

// fakeResults are the finished results of cfg with fakeMetrics.
func fakeResults(cfg Config) *Results {
	res := &Results{Format: resultsFormat, Config: cfg}
	t := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	res.Sessions = []Session{{Start: t, End: t.Add(7 * time.Minute), Cells: len(Plan(cfg))}}
	for _, fn := range cfg.Functions {
		res.Snapshots = append(res.Snapshots, Preparation{Function: fn, FreePages: "report", ID: fmt.Sprintf("%032x", len(fn)),
			CreateMs: 11000, Recordings: []Recording{{File: "wset/default.ws", Input: 1, Ms: 3000, Pages: 2560}}, MemMiB: 160, DataBytes: 64 << 20})
	}
	// One snapshot without free page reporting, of twice the data.
	res.Snapshots = append(res.Snapshots, Preparation{Function: "json", FreePages: "none", ID: fmt.Sprintf("%032x", 99), CreateMs: 9000,
		MemMiB: 160, DataBytes: 128 << 20})
	for i, k := range Plan(cfg) {
		run := Run{Key: k, Machine: fakeMachine, Input: cfg.Input, DataMiB: cfg.dataMiB(k.Function), FreePages: "report",
			Cache: "cold", Start: t.Add(time.Duration(i) * time.Second), WallMs: 1500 * float64(k.N), LoadAvg: 2, Metrics: fakeMetrics(k),
			Source: sourceOf(k.Experiment)}
		if k.Experiment == ExpLatency || k.Experiment == ExpBreakdown {
			for v := range k.N {
				run.VMs = append(run.VMs, funcvm.VMResult{Index: v, E2EMs: run.Metrics[MetricE2EMs], ResultOK: true})
			}
		}
		res.Runs = append(res.Runs, run)
	}
	return res
}
