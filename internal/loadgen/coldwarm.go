package loadgen

import (
	"github.com/snapbpf/snapbpf/api"
	"github.com/snapbpf/snapbpf/internal/stats"
)

// ColdWarmSlack is the allowance for a cold start: its median may
// be at most this times the warm median, plus the compute difference.
const ColdWarmSlack = 1.15

// ColdWarm compares the cold invocations' median latency with the warm
// ones', net of what the functions themselves compute:
//
//	bound = 1.15 × warm_p50 + (cold_compute_p50 − warm_compute_p50)
//
// warm_compute is each warm request's guest_fn_ms. A cold request's own
// guest_fn_ms also holds the page faults its compute took (what the
// policies differ in), so its compute is taken from warm requests of the
// same function and input (their median guest_fn_ms), or of the same
// function when no warm request had that input; a cold request of a
// function that never ran warm keeps its own guest_fn_ms. The cold and
// warm requests of a mix run different functions in different shares,
// which is what the difference takes out.
type ColdWarm struct {
	Cold int `json:"cold"`
	Warm int `json:"warm"`
	// Client-side latency medians, ms.
	ColdP50Ms float64 `json:"cold_p50_ms"`
	WarmP50Ms float64 `json:"warm_p50_ms"`
	// Medians of the compute as described above, ms.
	ColdComputeP50Ms float64 `json:"cold_compute_p50_ms"`
	WarmComputeP50Ms float64 `json:"warm_compute_p50_ms"`
	ComputeDiffMs    float64 `json:"compute_diff_ms"`
	BoundMs          float64 `json:"bound_ms"`
	// OfBound is ColdP50Ms / BoundMs; Met says it is at most 1.
	OfBound float64 `json:"of_bound"`
	Met     bool    `json:"met"`
}

func coldWarm(reqs []Request) ColdWarm {
	type key struct{ fn, in string }
	byInput := map[key][]float64{}
	byFn := map[string][]float64{}
	var cw ColdWarm
	var coldLat, warmLat, warmComp []float64
	for _, q := range reqs {
		if q.Outcome != OutcomeOK || q.Start == api.StartCold {
			continue
		}
		warmLat = append(warmLat, q.LatencyMs)
		if q.GuestFnMs > 0 {
			warmComp = append(warmComp, q.GuestFnMs)
			byInput[key{q.Function, q.Input}] = append(byInput[key{q.Function, q.Input}], q.GuestFnMs)
			byFn[q.Function] = append(byFn[q.Function], q.GuestFnMs)
		}
	}
	var coldComp []float64
	for _, q := range reqs {
		if q.Outcome != OutcomeOK || q.Start != api.StartCold {
			continue
		}
		coldLat = append(coldLat, q.LatencyMs)
		switch {
		case len(byInput[key{q.Function, q.Input}]) > 0:
			coldComp = append(coldComp, stats.Median(byInput[key{q.Function, q.Input}]))
		case len(byFn[q.Function]) > 0:
			coldComp = append(coldComp, stats.Median(byFn[q.Function]))
		case q.GuestFnMs > 0:
			coldComp = append(coldComp, q.GuestFnMs)
		}
	}
	cw.Cold, cw.Warm = len(coldLat), len(warmLat)
	if cw.Cold == 0 || cw.Warm == 0 {
		return cw
	}
	cw.ColdP50Ms, cw.WarmP50Ms = stats.Median(coldLat), stats.Median(warmLat)
	if len(coldComp) > 0 && len(warmComp) > 0 {
		cw.ColdComputeP50Ms, cw.WarmComputeP50Ms = stats.Median(coldComp), stats.Median(warmComp)
	}
	cw.ComputeDiffMs = cw.ColdComputeP50Ms - cw.WarmComputeP50Ms
	cw.BoundMs = ColdWarmSlack*cw.WarmP50Ms + cw.ComputeDiffMs
	if cw.BoundMs > 0 {
		cw.OfBound = cw.ColdP50Ms / cw.BoundMs
	}
	cw.Met = cw.BoundMs > 0 && cw.ColdP50Ms <= cw.BoundMs
	return cw
}
