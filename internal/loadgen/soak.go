package loadgen

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/snapbpf/snapbpf/internal/procfs"
	"github.com/snapbpf/snapbpf/internal/stats"
)

// SoakMaxGrowth is how much the service's descriptors and memory may grow
// over a soak (10%).
const SoakMaxGrowth = 0.10

// Soak is the verdict of a soak run: the service's open descriptors and
// resident memory held steady, no VMM outlived it, every request was
// answered with a result the load verified.
type Soak struct {
	// WarmupS is how long after the start the baseline is taken: the
	// pools fill and the Go heap settles first.
	WarmupS float64 `json:"warmup_s"`
	FDs     Growth  `json:"service_fds"`
	RSSMiB  Growth  `json:"service_rss_mib"`
	// VMMsLeft are the processes still running from the service's
	// snapshots once it had stopped.
	VMMsLeft []int `json:"vmms_left"`
	// Failures name each invariant that broke; none means the soak passed.
	Failures []string `json:"failures,omitempty"`
}

// OK says the soak passed.
func (s *Soak) OK() bool { return len(s.Failures) == 0 }

// Growth is how a quantity sampled over the run moved. Start is the
// median of the first tenth of the samples taken after the warm-up, End
// the median of the last tenth: medians of windows, not single samples,
// so that the instances warm at one instant (each holds a few
// descriptors) do not decide it.
type Growth struct {
	Samples int     `json:"samples"`
	Start   float64 `json:"start"`
	End     float64 `json:"end"`
	Max     float64 `json:"max"`
	// Growth is End/Start - 1.
	Growth float64 `json:"growth"`
}

func growth(v []float64) Growth {
	g := Growth{Samples: len(v)}
	if len(v) == 0 {
		return g
	}
	w := max(1, len(v)/10)
	g.Start, g.End = stats.Median(v[:w]), stats.Median(v[len(v)-w:])
	for _, x := range v {
		g.Max = max(g.Max, x)
	}
	if g.Start > 0 {
		g.Growth = g.End/g.Start - 1
	}
	return g
}

// CheckSoak judges run r as a soak: the service's descriptors and resident
// memory (sampled through the sampler's Pidfile) may not grow by more than
// SoakMaxGrowth from the warm-up to the end, vmmsLeft (the VMM processes
// found once the service had stopped) must be empty, and every arrival
// must have been answered with a verified result (no error, wrong result,
// rejection or unverified result).
func CheckSoak(r *Report, warmup time.Duration, vmmsLeft []int) *Soak {
	s := &Soak{WarmupS: warmup.Seconds(), VMMsLeft: vmmsLeft}
	var fds, rss []float64
	for _, smp := range r.Samples {
		if smp.T < s.WarmupS || smp.ServiceError != "" || smp.ServicePID == 0 {
			continue
		}
		fds, rss = append(fds, float64(smp.ServiceFDs)), append(rss, smp.ServiceRSSMiB)
	}
	s.FDs, s.RSSMiB = growth(fds), growth(rss)
	fail := func(format string, a ...any) { s.Failures = append(s.Failures, fmt.Sprintf(format, a...)) }
	if len(fds) < 2 {
		fail("service: %d samples of its descriptors and memory after the %s warm-up: the run is too short, or the service's pidfile was not readable", len(fds), warmup)
	} else {
		if s.FDs.Growth > SoakMaxGrowth {
			fail("fds: the service's open descriptors grew %.0f%% (%.0f to %.0f), more than %.0f%%", 100*s.FDs.Growth, s.FDs.Start, s.FDs.End, 100*SoakMaxGrowth)
		}
		if s.RSSMiB.Growth > SoakMaxGrowth {
			fail("rss: the service's resident memory grew %.0f%% (%.1f to %.1f MiB), more than %.0f%%", 100*s.RSSMiB.Growth, s.RSSMiB.Start, s.RSSMiB.End, 100*SoakMaxGrowth)
		}
	}
	if len(vmmsLeft) > 0 {
		fail("vmms: %d VMM processes outlived the service: pids %v", len(vmmsLeft), vmmsLeft)
	}
	sum := r.Summary
	if sum.Wrong > 0 {
		fail("results: %d wrong results", sum.Wrong)
	}
	if sum.Errors > 0 {
		fail("results: %d requests failed (see error_messages)", sum.Errors)
	}
	if sum.Rejected > 0 {
		fail("results: %d requests rejected (429): the rate is not one the service sustains", sum.Rejected)
	}
	if n := sum.OK - sum.Verified; n > 0 {
		fail("results: %d results not verified (the load cannot compute their functions' results)", n)
	}
	return s
}

func writeSoak(w io.Writer, s *Soak) {
	verdict := "passed"
	if !s.OK() {
		verdict = "FAILED: " + strings.Join(s.Failures, "; ")
	}
	fmt.Fprintf(w, "  soak %s\n", verdict)
	fmt.Fprintf(w, "    service fds %.0f -> %.0f (%+.1f%%, max %.0f), rss %.1f -> %.1f MiB (%+.1f%%, max %.1f); %d samples after %.0f s warm-up; VMMs left %d\n",
		s.FDs.Start, s.FDs.End, 100*s.FDs.Growth, s.FDs.Max, s.RSSMiB.Start, s.RSSMiB.End, 100*s.RSSMiB.Growth, s.RSSMiB.Max,
		s.FDs.Samples, s.WarmupS, len(s.VMMsLeft))
}

// ProcessesUsing lists the processes (other than this one) with a
// command-line argument naming a path under dir: given the VMM driver's
// run directory ($SNAPBPF_HOME/run), the VMMs started from that home,
// whose command lines name their QMP and serial sockets there. They are
// found by what they run from, never by their name.
func ProcessesUsing(dir string) ([]int, error) {
	pids, err := procfs.Pids()
	if err != nil {
		return nil, err
	}
	prefix := strings.TrimSuffix(dir, "/") + "/"
	var out []int
	for _, pid := range pids {
		if pid == os.Getpid() {
			continue
		}
		args, err := procfs.Cmdline(pid)
		if err != nil {
			continue // gone meanwhile
		}
		if slices.ContainsFunc(args, func(a string) bool { return strings.Contains(a, prefix) }) {
			out = append(out, pid)
		}
	}
	return out, nil
}
