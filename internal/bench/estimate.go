package bench

import (
	"fmt"
	"slices"
	"time"

	"github.com/snapbpf/snapbpf/internal/snapshot"
)

// Estimation is a predicted bench time.
type Estimation struct {
	Total     time.Duration
	Cells     int
	Snapshots int
	Basis     string // how the prediction was made
}

// Estimate predicts how long cfg takes on the machine of res from the
// runs and preparations res holds. A cell is predicted from the median of
// the same configuration; otherwise from the mean over the functions
// measured with the same experiment, policy and N; otherwise, for an N
// not measured, from the largest N measured scaled linearly (the guests'
// vCPUs share the host's CPUs, so N VMs take about N times as long once
// the CPUs are busy). Functions never measured count as the mean of the
// measured ones.
func Estimate(res *Results, cfg Config) Estimation {
	var est Estimation
	var total float64
	for _, k := range Plan(cfg) {
		total += cellEstimate(res, k)
		est.Cells++
	}
	for _, fn := range cfg.Functions {
		for _, mode := range snapshotModes(cfg) {
			total += prepEstimate(res, fn, mode)
			est.Snapshots++
		}
	}
	est.Total = time.Duration(total * float64(time.Millisecond))
	est.Basis = fmt.Sprintf("predicted from this machine's %d runs (see Estimate in internal/bench)", len(res.Select("", "", "", 0)))
	if len(res.Select("", "", "", 0)) == 0 {
		est.Basis = "no runs to predict from"
	}
	return est
}

// snapshotModes are the snapshots cfg needs per function.
func snapshotModes(cfg Config) []string {
	modes := []string{snapshot.FreePagesReport}
	if slices.Contains(cfg.Experiments, ExpBreakdown) {
		modes = append(modes, snapshot.FreePagesNone)
	}
	return modes
}

func cellEstimate(res *Results, k Key) float64 {
	if s := wall(res.Select(k.Experiment, k.Function, k.Policy, k.N)); s.Valid() {
		return s.Median
	}
	if v, ok := meanOverFunctions(res, k.Experiment, k.Policy, k.N); ok {
		return v
	}
	// Scale from the largest N measured, for this function or any.
	var ns []int
	for _, r := range res.Select(k.Experiment, "", k.Policy, 0) {
		if r.N < k.N && !slices.Contains(ns, r.N) {
			ns = append(ns, r.N)
		}
	}
	if len(ns) == 0 {
		return 0
	}
	top := slices.Max(ns)
	base := wall(res.Select(k.Experiment, k.Function, k.Policy, top))
	if base.Valid() {
		return base.Median * float64(k.N) / float64(top)
	}
	v, _ := meanOverFunctions(res, k.Experiment, k.Policy, top)
	return v * float64(k.N) / float64(top)
}

// meanOverFunctions is the mean over functions of each function's median
// cell time for exp, pol and n.
func meanOverFunctions(res *Results, exp, pol string, n int) (float64, bool) {
	var sum float64
	var count int
	for _, fn := range functionsOf(res) {
		if s := wall(res.Select(exp, fn, pol, n)); s.Valid() {
			sum += s.Median
			count++
		}
	}
	if count == 0 {
		return 0, false
	}
	return sum / float64(count), true
}

func wall(runs []Run) Summary {
	v := make([]float64, len(runs))
	for i, r := range runs {
		v[i] = r.WallMs
	}
	return Summarize(v)
}

// prepEstimate predicts the creation (and recording) of fn's snapshot in
// mode from the preparations measured.
func prepEstimate(res *Results, fn, mode string) float64 {
	var same, all []float64
	for _, p := range res.Snapshots {
		if p.FreePages != mode || p.CreateMs == 0 {
			continue
		}
		t := p.CreateMs + p.recordMs()
		all = append(all, t)
		if p.Function == fn {
			same = append(same, t)
		}
	}
	if s := Summarize(same); s.Valid() {
		return s.Median
	}
	if len(all) == 0 {
		return 0
	}
	var sum float64
	for _, t := range all {
		sum += t
	}
	return sum / float64(len(all))
}
