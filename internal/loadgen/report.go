package loadgen

import (
	"fmt"
	"io"
	"math"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/snapbpf/snapbpf/api"
)

// Report is what a load run measured: the configuration, the summary,
// the per-second timeline, the memory samples and every request.
type Report struct {
	// Policy is the service's restore policy, when the load started the
	// service (the side-by-side mode).
	Policy string `json:"policy,omitempty"`
	// MemoryBudgetMiB is the --memory-budget the load gave the service it
	// started (0: none, or not started by the load).
	MemoryBudgetMiB int64       `json:"memory_budget_mib,omitempty"`
	Config          TraceConfig `json:"config"`
	Start           time.Time   `json:"start"`
	// ElapsedS is the first arrival's start to the last request's end.
	ElapsedS float64 `json:"elapsed_s"`
	Summary  Summary `json:"summary"`
	// PerFunction summarises each function's requests.
	PerFunction map[string]Summary `json:"per_function"`
	// Seconds is the timeline by arrival second.
	Seconds []Second `json:"seconds"`
	// Samples are host memory and service metrics, about one a second.
	Samples  []Sample  `json:"samples"`
	Requests []Request `json:"requests"`
	// Soak is the soak verdict, when the run was one (Soak.Check).
	Soak *Soak `json:"soak,omitempty"`
}

// Summary summarises a set of requests.
type Summary struct {
	Arrivals int `json:"arrivals"`
	OK       int `json:"ok"`
	// Rejected were answered 429 (queue deadline passed).
	Rejected int `json:"rejected"`
	Errors   int `json:"errors"`
	// Wrong answered with a result RunOptions.Verify refused; Verified
	// were checked and right.
	Wrong    int `json:"wrong"`
	Verified int `json:"verified"`
	// OfferedRPS is arrivals per second of the configured duration;
	// ThroughputRPS successful requests per second of the elapsed time.
	OfferedRPS    float64 `json:"offered_rps"`
	ThroughputRPS float64 `json:"throughput_rps"`
	// Latency is of successful requests as the client saw them, ms.
	Latency     Dist `json:"latency_ms"`
	ColdLatency Dist `json:"cold_latency_ms"`
	WarmLatency Dist `json:"warm_latency_ms"`
	// ColdFraction is the share of successful requests served cold.
	ColdFraction float64 `json:"cold_fraction"`
	// ColdWarm weighs cold starts against warm ones, net of compute.
	ColdWarm ColdWarm `json:"cold_vs_warm"`
	Queue    Dist     `json:"queue_ms"`
	Restore  Dist     `json:"restore_ms"`
	// MaxLagMs is how late the latest request was sent against its
	// arrival time: large values mean the client, not the service, was
	// the bottleneck.
	MaxLagMs float64 `json:"max_lag_ms"`
	// ErrorMessages counts the distinct error messages.
	ErrorMessages map[string]int `json:"error_messages,omitempty"`
	// PeakMemUsedMiB is the highest host memory in use sampled.
	PeakMemUsedMiB float64 `json:"peak_mem_used_mib,omitempty"`
	// PeakServiceMemMiB is the most memory the service measured its
	// functions to use (snapbpf_memory_used_bytes: page cache of their
	// memory files plus their instances' private memory), what
	// --memory-budget bounds.
	PeakServiceMemMiB float64 `json:"peak_service_mem_mib,omitempty"`
	// Evictions are the service's evictions for its memory budget over
	// the run (snapbpf_evictions_total, last sample less first).
	Evictions int `json:"evictions"`
	// BudgetWaits are the times a cold start queued because the budget
	// was reached with nothing idle to evict (snapbpf_budget_waits_total,
	// likewise): a 429 of a run without them was not for lack of memory.
	BudgetWaits int `json:"budget_waits"`
	// ByNode counts the successful requests by the node that ran them
	// (a cluster of snapbpf serve nodes).
	ByNode map[string]int `json:"by_node,omitempty"`
}

// Second is one second of the timeline, by arrival time.
type Second struct {
	T        int     `json:"t_s"`
	Arrivals int     `json:"arrivals"`
	OK       int     `json:"ok"`
	Cold     int     `json:"cold"`
	Rejected int     `json:"rejected"`
	Errors   int     `json:"errors"`
	P50Ms    float64 `json:"p50_ms"`
	P99Ms    float64 `json:"p99_ms"`
}

// Analyze builds the report of a run.
func Analyze(cfg TraceConfig, start time.Time, elapsed time.Duration, reqs []Request, samples []Sample) *Report {
	r := &Report{Config: cfg, Start: start, ElapsedS: elapsed.Seconds(), Samples: samples, Requests: reqs,
		PerFunction: map[string]Summary{}}
	r.Summary = summarize(reqs, cfg.Duration, elapsed)
	for _, s := range samples {
		r.Summary.PeakMemUsedMiB = max(r.Summary.PeakMemUsedMiB, s.MemUsedMiB)
		r.Summary.PeakServiceMemMiB = max(r.Summary.PeakServiceMemMiB, s.Metrics["snapbpf_memory_used_bytes"]/(1<<20))
	}
	if n := len(samples); n > 0 {
		first, last := samples[0].Metrics, samples[n-1].Metrics
		r.Summary.Evictions = int(last["snapbpf_evictions_total"] - first["snapbpf_evictions_total"])
		r.Summary.BudgetWaits = int(last["snapbpf_budget_waits_total"] - first["snapbpf_budget_waits_total"])
	}
	byFn := map[string][]Request{}
	for _, q := range reqs {
		byFn[q.Function] = append(byFn[q.Function], q)
	}
	for fn, l := range byFn {
		s := summarize(l, cfg.Duration, elapsed)
		s.ErrorMessages = nil
		r.PerFunction[fn] = s
	}
	r.Seconds = timeline(reqs, cfg.Duration)
	return r
}

func summarize(reqs []Request, duration, elapsed time.Duration) Summary {
	s := Summary{Arrivals: len(reqs)}
	var all, cold, warm, queue, restore []float64
	for _, q := range reqs {
		s.MaxLagMs = max(s.MaxLagMs, float64(q.Lag.Microseconds())/1000)
		switch q.Outcome {
		case OutcomeOK:
			s.OK++
			all = append(all, q.LatencyMs)
			queue = append(queue, q.QueueMs)
			if q.Start == api.StartCold {
				cold = append(cold, q.LatencyMs)
				restore = append(restore, q.RestoreMs)
			} else {
				warm = append(warm, q.LatencyMs)
			}
			if q.Verified {
				s.Verified++
			}
			if q.Node != "" {
				if s.ByNode == nil {
					s.ByNode = map[string]int{}
				}
				s.ByNode[q.Node]++
			}
		case OutcomeRejected:
			s.Rejected++
		default:
			if q.Outcome == OutcomeWrong {
				s.Wrong++
			} else {
				s.Errors++
			}
			if s.ErrorMessages == nil {
				s.ErrorMessages = map[string]int{}
			}
			s.ErrorMessages[q.Error]++
		}
	}
	s.Latency, s.ColdLatency, s.WarmLatency = Summarize(all), Summarize(cold), Summarize(warm)
	s.Queue, s.Restore = Summarize(queue), Summarize(restore)
	if s.OK > 0 {
		s.ColdFraction = float64(len(cold)) / float64(s.OK)
	}
	s.ColdWarm = coldWarm(reqs)
	if duration > 0 {
		s.OfferedRPS = float64(len(reqs)) / duration.Seconds()
	}
	if elapsed > 0 {
		s.ThroughputRPS = float64(s.OK) / elapsed.Seconds()
	}
	return s
}

// timeline groups requests by the second they arrived in.
func timeline(reqs []Request, duration time.Duration) []Second {
	n := int(math.Ceil(duration.Seconds()))
	secs := make([]Second, n)
	lat := make([][]float64, n)
	for i := range secs {
		secs[i].T = i
	}
	for _, q := range reqs {
		i := min(int(q.At/time.Second), n-1)
		if i < 0 {
			continue
		}
		secs[i].Arrivals++
		switch q.Outcome {
		case OutcomeOK:
			secs[i].OK++
			if q.Start == api.StartCold {
				secs[i].Cold++
			}
			lat[i] = append(lat[i], q.LatencyMs)
		case OutcomeRejected:
			secs[i].Rejected++
		default: // errors and wrong results
			secs[i].Errors++
		}
	}
	for i := range secs {
		if d := Summarize(lat[i]); d.N > 0 {
			secs[i].P50Ms, secs[i].P99Ms = d.P50, d.P99
		}
	}
	return secs
}

// WriteSummary prints a run's summary for people.
func WriteSummary(w io.Writer, r *Report) {
	s := r.Summary
	name := r.Label()
	fmt.Fprintf(w, "%s: %d arrivals in %s (%.2f/s offered), %d ok (%d verified), %d wrong, %d rejected (429), %d errors; %.2f ok/s\n",
		name, s.Arrivals, r.Config.Duration, s.OfferedRPS, s.OK, s.Verified, s.Wrong, s.Rejected, s.Errors, s.ThroughputRPS)
	fmt.Fprintf(w, "  latency ms: p50 %.1f  p95 %.1f  p99 %.1f  max %.1f\n", s.Latency.P50, s.Latency.P95, s.Latency.P99, s.Latency.Max)
	fmt.Fprintf(w, "  cold %.1f%% (p50 %.1f ms), warm p50 %.1f ms; queue p50 %.1f p99 %.1f ms; peak host memory used %.0f MiB, by the functions %.0f MiB; %d evictions, %d waits for memory\n",
		100*s.ColdFraction, s.ColdLatency.P50, s.WarmLatency.P50, s.Queue.P50, s.Queue.P99, s.PeakMemUsedMiB, s.PeakServiceMemMiB, s.Evictions, s.BudgetWaits)
	if cw := s.ColdWarm; cw.Cold > 0 && cw.Warm > 0 {
		fmt.Fprintf(w, "  cold vs warm: cold p50 %.1f ms against 1.15 x warm p50 %.1f + compute difference %+.1f = %.1f ms: %.2fx of the bound (%s)\n",
			cw.ColdP50Ms, cw.WarmP50Ms, cw.ComputeDiffMs, cw.BoundMs, cw.OfBound, map[bool]string{true: "met", false: "not met"}[cw.Met])
	}
	if r.Soak != nil {
		writeSoak(w, r.Soak)
	}
	msgs := make([]string, 0, len(s.ErrorMessages))
	for m := range s.ErrorMessages {
		msgs = append(msgs, m)
	}
	slices.Sort(msgs)
	for i, m := range msgs {
		if i == 3 {
			fmt.Fprintf(w, "  ... %d more distinct errors (see the JSON)\n", len(msgs)-3)
			break
		}
		fmt.Fprintf(w, "  error x%d: %s\n", s.ErrorMessages[m], m)
	}
}

// Label names the run: its policy, and its memory budget if it had one.
func (r *Report) Label() string {
	name := r.Policy
	if name == "" {
		name = "load"
	}
	if r.MemoryBudgetMiB > 0 {
		name += fmt.Sprintf(" (budget %d MiB)", r.MemoryBudgetMiB)
	}
	return name
}

// WriteComparison prints the runs of one trace side by side, with the
// ratio of each run's p99 to the first run's and the cold median against
// its bound (ColdWarm.OfBound: at most 1 meets it). errors counts wrong
// results too.
func WriteComparison(w io.Writer, runs []*Report) error {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "policy\tok\t429\terrors\tok/s\tp50_ms\tp95_ms\tp99_ms\tp99_vs_first\tcold_%\tcold_p50_ms\twarm_p50_ms\tcold_of_bound\tqueue_p99_ms\tpeak_mem_MiB\tfn_mem_MiB\tevictions\t")
	for _, r := range runs {
		s := r.Summary
		ratio := math.NaN()
		if p := runs[0].Summary.Latency.P99; p > 0 {
			ratio = s.Latency.P99 / p
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.2f\t%.0f\t%.0f\t%.0f\t%.2fx\t%.1f\t%.0f\t%.0f\t%.2f\t%.0f\t%.0f\t%.0f\t%d\t\n", r.Label(), s.OK, s.Rejected, s.Errors+s.Wrong,
			s.ThroughputRPS, s.Latency.P50, s.Latency.P95, s.Latency.P99, ratio, 100*s.ColdFraction,
			s.ColdLatency.P50, s.WarmLatency.P50, s.ColdWarm.OfBound, s.Queue.P99, s.PeakMemUsedMiB, s.PeakServiceMemMiB, s.Evictions)
	}
	return tw.Flush()
}
