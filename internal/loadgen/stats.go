package loadgen

import "github.com/snapbpf/snapbpf/internal/stats"

// Dist summarises a distribution (milliseconds, here).
type Dist struct {
	N    int     `json:"n"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P95  float64 `json:"p95"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
}

// Summarize returns the distribution of v; zero values without any.
func Summarize(v []float64) Dist {
	if len(v) == 0 {
		return Dist{}
	}
	s := stats.Sorted(v)
	sum := 0.0
	for _, x := range s {
		sum += x
	}
	return Dist{N: len(s), Mean: sum / float64(len(s)), P50: stats.PercentileSorted(s, 50),
		P95: stats.PercentileSorted(s, 95), P99: stats.PercentileSorted(s, 99), Max: s[len(s)-1]}
}
