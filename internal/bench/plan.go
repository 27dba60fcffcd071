package bench

import (
	"fmt"
	"slices"

	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/replay"
)

// Experiments.
const (
	// ExpLatency restores each function cold under every policy at every
	// concurrency N (and warm at N=1): figures 1, 2 and 3.
	ExpLatency = "latency"
	// ExpBreakdown restores each function lazily from a snapshot taken
	// without free page reporting: the first step of figure 4, whose other
	// steps are ExpLatency's lazy and snapbpf runs at N=1.
	ExpBreakdown = "breakdown"
	// ExpPrefetch times the prefetch of each function's recorded working
	// set, cold, against fio reading the same requests: figure 6.
	ExpPrefetch = "prefetch"
	// ExpReplay replays each function's first-touch trace (ExpTrace) with
	// the replay harness at native speed under every replay policy, warm
	// included, at every N (warm at N=1 only): figure 1's, 2's and 3's
	// replay series, REAP and FaaSnap among them.
	ExpReplay = "replay"
	// ExpScatter replays the trace with a fraction of its non-zero pages
	// scattered across the memory file, one VM, every replay policy:
	// figure 5 (fragmentation).
	ExpScatter = "scatter"
	// ExpTrace records a function's first-touch trace on a real VM, once
	// per function (run 1), before its first replay cell. It is a cell,
	// not an experiment to choose: ExpReplay and ExpScatter bring it.
	ExpTrace = "trace"
)

// Experiments lists the experiments in the order a bench runs them.
func Experiments() []string {
	return []string{ExpLatency, ExpBreakdown, ExpPrefetch, ExpReplay, ExpScatter}
}

// usesTrace reports whether exp replays the function's trace.
func usesTrace(exp string) bool { return exp == ExpReplay || exp == ExpScatter }

// Restore policies besides policy.Names().
const (
	// PolicySnapBPFOther is policy snapbpf with a working set recorded on
	// another input than the one measured: what a platform gets when the
	// invocation it recorded differs from the next one.
	PolicySnapBPFOther = "snapbpf-other"
	// PolicyWarm restores under policy lazy with the whole memory file
	// read into the page cache first: the floor no prefetch can beat.
	PolicyWarm = "warm"
)

// Policies are the restore policies a bench can compare.
func Policies() []string {
	return []string{policy.Lazy, policy.NoRA, policy.SnapBPF, PolicySnapBPFOther, PolicyWarm}
}

// singleOnly reports whether pol is measured at N=1 only.
func singleOnly(pol string) bool { return pol == PolicyWarm || pol == PolicySnapBPFOther }

// ReplayPolicies are the policies of ExpReplay: the harness's five and
// warm (lazy with the memory file held in the page cache).
func ReplayPolicies() []string { return append(replay.Policies(), PolicyWarm) }

// The two "policies" of ExpPrefetch.
const (
	SeriesPrefetch = "prefetch" // prefetch.Prefetch with its default options
	SeriesFio      = "fio"      // fio replaying the same requests
)

// Key identifies a cell.
type Key struct {
	Experiment string `json:"experiment"`
	Function   string `json:"function"`
	Policy     string `json:"policy"`
	N          int    `json:"n"`
	Run        int    `json:"run"` // from 1
	// Scatter is ExpScatter's fraction of the trace's non-zero pages
	// relocated across the memory file; 0 in every other experiment.
	Scatter float64 `json:"scatter,omitempty"`
}

func (k Key) String() string {
	s := fmt.Sprintf("%s %s %s N=%d run %d", k.Experiment, k.Function, k.Policy, k.N, k.Run)
	if k.Experiment == ExpScatter {
		s += fmt.Sprintf(" scatter %g", k.Scatter)
	}
	return s
}

// Plan lists the cells of a bench in the order they run: run by run, so
// that slow drifts of a shared machine spread over every configuration
// instead of biasing whichever ran last.
func Plan(c Config) []Key {
	var keys []Key
	traced := map[string]bool{}
	for run := 1; run <= c.Runs; run++ {
		for _, exp := range Experiments() {
			if !slices.Contains(c.Experiments, exp) {
				continue
			}
			for _, fn := range c.Functions {
				// The trace comes once, before the function's first replay.
				if usesTrace(exp) && !traced[fn] {
					keys = append(keys, Key{Experiment: ExpTrace, Function: fn, Policy: ExpTrace, N: 1, Run: 1})
					traced[fn] = true
				}
				keys = append(keys, experimentKeys(c, exp, fn, run)...)
			}
		}
	}
	return keys
}

func experimentKeys(c Config, exp, fn string, run int) []Key {
	var keys []Key
	add := func(pol string, n int) {
		keys = append(keys, Key{Experiment: exp, Function: fn, Policy: pol, N: n, Run: run})
	}
	switch exp {
	case ExpLatency:
		for _, pol := range c.Policies {
			for _, n := range c.Concurrency {
				// Warm is the single-VM floor (concurrent warm restores
				// would only measure CPU contention), and snapbpf-other a
				// single-VM variant of snapbpf.
				if singleOnly(pol) && n != 1 {
					continue
				}
				add(pol, n)
			}
		}
	case ExpBreakdown:
		add(policy.Lazy, 1)
	case ExpPrefetch:
		add(SeriesPrefetch, 1)
		add(SeriesFio, 1)
	case ExpReplay:
		for _, pol := range ReplayPolicies() {
			for _, n := range c.replayConcurrency() {
				if pol == PolicyWarm && n != 1 {
					continue
				}
				add(pol, n)
			}
		}
	case ExpScatter:
		for _, frac := range c.ScatterFractions {
			for _, pol := range replay.Policies() {
				keys = append(keys, Key{Experiment: exp, Function: fn, Policy: pol, N: 1, Run: run, Scatter: frac})
			}
		}
	}
	return keys
}
