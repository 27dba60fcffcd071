package bench

import (
	"fmt"
	"io"
	"slices"

	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/replay"
	"github.com/snapbpf/snapbpf/internal/snapshot"
)

// The tables of this file put each function's numbers side by side, Go
// and runtime functions alike: what its snapshot holds, a restore with
// and without the function's own compute, on the recorded input and on
// another, and the replay against REAP and FaaSnap.

// derived summarizes f over runs, skipping runs it has no value for.
func derived(runs []Run, f func(Run) (float64, bool)) Summary {
	var v []float64
	for _, r := range runs {
		if x, ok := f(r); ok {
			v = append(v, x)
		}
	}
	return Summarize(v)
}

// overhead is a restore's end-to-end time less the function's own time
// in the guest: what restoring costs, the part a policy can change.
func overhead(r Run) (float64, bool) {
	e, ok1 := r.Metrics[MetricE2EMs]
	g, ok2 := r.Metrics[MetricGuestFnMs]
	return e - g, ok1 && ok2
}

// untouchedShare is the pages a restore brought into the page cache that
// the invocation did not touch, over those it touched.
func untouchedShare(r Run) (float64, bool) {
	u, ok1 := r.Metrics[MetricUntouchedPages]
	t, ok2 := r.Metrics[MetricTouchedPages]
	return u / t, ok1 && ok2 && t > 0
}

// wsUntouchedShare is the pages of a snapbpf restore's working set the
// invocation did not touch, over the working set.
func wsUntouchedShare(r Run) (float64, bool) {
	u, ok1 := r.Metrics[MetricWSUntouched]
	n, ok2 := r.Metrics[MetricWSPages]
	return u / n, ok1 && ok2 && n > 0
}

// lastPrep is the latest preparation of fn's snapshot in free page mode
// mode.
func lastPrep(res *Results, fn, mode string) (Preparation, bool) {
	for i := len(res.Snapshots) - 1; i >= 0; i-- {
		if p := res.Snapshots[i]; p.Function == fn && p.FreePages == mode {
			return p, true
		}
	}
	return Preparation{}, false
}

// recordedPages is the size of the working set recorded on input in
// fn's snapshot, in pages (-1: none recorded).
func recordedPages(res *Results, fn string, input uint64) int64 {
	for i := len(res.Snapshots) - 1; i >= 0; i-- {
		p := res.Snapshots[i]
		if p.Function != fn {
			continue
		}
		for _, r := range p.Recordings {
			if r.Input == input {
				return r.Pages
			}
		}
	}
	return -1
}

// writeSnapshots tabulates each function's snapshot: guest RAM, the data
// its memory file stores with and without free page reporting, and the
// working sets recorded.
func writeSnapshots(w io.Writer, res *Results) {
	if len(res.Snapshots) == 0 {
		return
	}
	c := res.Config
	fmt.Fprintf(w, "## Snapshots and working sets\n\n")
	tableHead(w, []string{"function", "guest RAM (MiB)", "memory file data (MiB)", "without free page reporting (MiB)",
		"saved by free page reporting", fmt.Sprintf("working set, input %d (MiB)", c.Input), fmt.Sprintf("working set, input %d (MiB)", c.otherInput())})
	const mib = 1 << 20
	for _, fn := range functionsOf(res) {
		rep, ok := lastPrep(res, fn, snapshot.FreePagesReport)
		if !ok {
			continue
		}
		row := []string{fn, fmt.Sprint(rep.MemMiB), fmt.Sprintf("%.1f", float64(rep.DataBytes)/mib), "–", "–"}
		if none, ok := lastPrep(res, fn, snapshot.FreePagesNone); ok && none.DataBytes > 0 {
			saved := none.DataBytes - rep.DataBytes
			row[3] = fmt.Sprintf("%.1f", float64(none.DataBytes)/mib)
			row[4] = fmt.Sprintf("%.1f MiB (%.0f%%)", float64(saved)/mib, 100*float64(saved)/float64(none.DataBytes))
		}
		for _, in := range []uint64{c.Input, c.otherInput()} {
			if p := recordedPages(res, fn, in); p >= 0 {
				row = append(row, fmt.Sprintf("%.1f (%d pages)", float64(p)*4096/mib, p))
			} else {
				row = append(row, "–")
			}
		}
		tableRow(w, row)
	}
	fmt.Fprintf(w, "\nThe memory file's data is what it stores outside holes: the guest's free pages, reported at snapshot time, and "+
		"all-zero pages are holes, never read. The working sets are the pages `record` found (several runs and a margin), "+
		"which snapbpf prefetches.\n\n")
}

// writeRecordedInput compares a single restore on the recorded input, end
// to end and without the function's own compute.
func writeRecordedInput(w io.Writer, res *Results) {
	pols := []string{PolicyWarm, policy.Lazy, policy.SnapBPF}
	if len(res.Select(ExpLatency, "", policy.SnapBPF, 1)) == 0 {
		return
	}
	fmt.Fprintf(w, "## One restore on the recorded input, with and without the function's compute (real VMs, N=1)\n\n")
	tableHead(w, []string{"function", "e2e ms warm / lazy / snapbpf", "snapbpf / warm", "snapbpf / lazy",
		"e2e less guest fn, ms: warm / lazy / snapbpf", "snapbpf / warm", "snapbpf / lazy", "guest fn ms (snapbpf)"})
	for _, fn := range functionsOf(res) {
		e2e, ovh := map[string]Summary{}, map[string]Summary{}
		for _, p := range pols {
			runs := res.Select(ExpLatency, fn, p, 1)
			e2e[p], ovh[p] = metric(runs, MetricE2EMs), derived(runs, overhead)
		}
		if !e2e[policy.SnapBPF].Valid() {
			continue
		}
		tableRow(w, []string{fn,
			fmt.Sprintf("%s / %s / %s", orDash(e2e[PolicyWarm], "%.0f"), orDash(e2e[policy.Lazy], "%.0f"), orDash(e2e[policy.SnapBPF], "%.0f")),
			ratioOf(e2e[policy.SnapBPF], e2e[PolicyWarm]), ratioOf(e2e[policy.SnapBPF], e2e[policy.Lazy]),
			fmt.Sprintf("%s / %s / %s", orDash(ovh[PolicyWarm], "%.0f"), orDash(ovh[policy.Lazy], "%.0f"), orDash(ovh[policy.SnapBPF], "%.0f")),
			ratioOf(ovh[policy.SnapBPF], ovh[PolicyWarm]), ratioOf(ovh[policy.SnapBPF], ovh[policy.Lazy]),
			orDash(metric(res.Select(ExpLatency, fn, policy.SnapBPF, 1), MetricGuestFnMs), "%.0f"),
		})
	}
	fmt.Fprintf(w, "\nMedians over runs. e2e is the restore call to the verified result; less the function's own time in the guest "+
		"(each run's e2e minus its guest fn) it is what restoring costs: starting the VMM, loading the state, faults and "+
		"prefetch, the protocol.\n\n")
}

// writeOtherInput compares a restore whose working set was recorded on
// another input than the one invoked, and says how many pages each
// policy brought in for nothing.
func writeOtherInput(w io.Writer, res *Results) {
	if len(res.Select(ExpLatency, "", PolicySnapBPFOther, 1)) == 0 {
		return
	}
	c := res.Config
	pols := []string{PolicyWarm, policy.Lazy, policy.SnapBPF, PolicySnapBPFOther}
	fmt.Fprintf(w, "## A working set recorded on another input (real VMs, N=1)\n\n")
	fmt.Fprintf(w, "snapbpf-other restores with the working set recorded on input %d and invokes input %d, as warm and lazy do. "+
		"Untouched: the memory file's pages in the page cache after the restore that the function's trace on input %d does not "+
		"touch, as a share of the data pages it does touch (readahead around faults, prefetched pages the invocation did not need, "+
		"or warm's whole file). Prefetched, not touched: the working set's pages the trace does not touch, as a share of the "+
		"working set.\n\n", c.otherInput(), c.Input, c.Input)
	tableHead(w, []string{"function", "e2e ms warm / lazy / snapbpf-other", "snapbpf-other / warm", "snapbpf-other / lazy",
		"pages touched", "untouched: warm / lazy / snapbpf / snapbpf-other", "prefetched, not touched: snapbpf / snapbpf-other"})
	for _, fn := range functionsOf(res) {
		e2e, un, wsun := map[string]Summary{}, map[string]Summary{}, map[string]Summary{}
		for _, p := range pols {
			runs := res.Select(ExpLatency, fn, p, 1)
			e2e[p], un[p] = metric(runs, MetricE2EMs), derived(runs, untouchedShare).Scale(100)
			wsun[p] = derived(runs, wsUntouchedShare).Scale(100)
		}
		if !e2e[PolicySnapBPFOther].Valid() {
			continue
		}
		tableRow(w, []string{fn,
			fmt.Sprintf("%s / %s / %s", orDash(e2e[PolicyWarm], "%.0f"), orDash(e2e[policy.Lazy], "%.0f"), orDash(e2e[PolicySnapBPFOther], "%.0f")),
			ratioOf(e2e[PolicySnapBPFOther], e2e[PolicyWarm]), ratioOf(e2e[PolicySnapBPFOther], e2e[policy.Lazy]),
			orDash(metric(res.Select(ExpLatency, fn, policy.Lazy, 1), MetricTouchedPages), "%.0f"),
			fmt.Sprintf("%s / %s / %s / %s", orDash(un[PolicyWarm], "%.0f%%"), orDash(un[policy.Lazy], "%.0f%%"),
				orDash(un[policy.SnapBPF], "%.1f%%"), orDash(un[PolicySnapBPFOther], "%.1f%%")),
			fmt.Sprintf("%s / %s", orDash(wsun[policy.SnapBPF], "%.1f%%"), orDash(wsun[PolicySnapBPFOther], "%.1f%%")),
		})
	}
	fmt.Fprintln(w)
}

// writeReplayBaselines compares snapbpf with REAP and FaaSnap in the
// replay harness: one VM's completion time, and host memory at the
// largest N, with the share of touched pages each function writes
// (written pages are private copies under every policy).
func writeReplayBaselines(w io.Writer, res *Results) {
	if len(res.Select(ExpReplay, "", replay.REAP, 0)) == 0 {
		return
	}
	top := 1
	for _, r := range res.Select(ExpReplay, "", replay.REAP, 0) {
		top = max(top, r.N)
	}
	fmt.Fprintf(w, "## snapbpf against REAP and FaaSnap (replay at native speed)\n\n")
	tableHead(w, []string{"function", "N=1 ms snapbpf / faasnap / reap", "snapbpf / min(reap, faasnap)",
		fmt.Sprintf("N=%d host MiB snapbpf / faasnap / reap", top), "snapbpf / reap", "written / touched pages"})
	var ratios []float64
	for _, fn := range functionsOf(res) {
		one, mem := map[string]Summary{}, map[string]Summary{}
		for _, p := range []string{policy.SnapBPF, replay.FaaSnap, replay.REAP} {
			one[p] = metric(res.Select(ExpReplay, fn, p, 1), MetricE2EMs)
			mem[p] = metric(res.Select(ExpReplay, fn, p, top), MetricTotalBytes).Scale(1.0 / (1 << 20))
		}
		if !one[policy.SnapBPF].Valid() {
			continue
		}
		best := Summary{}
		if one[replay.REAP].Valid() && one[replay.FaaSnap].Valid() {
			best = one[replay.REAP]
			if one[replay.FaaSnap].Median < best.Median {
				best = one[replay.FaaSnap]
			}
			ratios = append(ratios, one[policy.SnapBPF].Median/best.Median)
		}
		written := "–"
		if tr := res.Select(ExpTrace, fn, "", 0); len(tr) > 0 {
			if m := tr[len(tr)-1].Metrics; m[MetricTracePages] > 0 {
				if wp, ok := m[MetricTraceWritten]; ok {
					written = fmt.Sprintf("%.0f%%", 100*wp/m[MetricTracePages])
				}
			}
		}
		tableRow(w, []string{fn,
			fmt.Sprintf("%s / %s / %s", orDash(one[policy.SnapBPF], "%.0f"), orDash(one[replay.FaaSnap], "%.0f"), orDash(one[replay.REAP], "%.0f")),
			ratioOf(one[policy.SnapBPF], best),
			fmt.Sprintf("%s / %s / %s", orDash(mem[policy.SnapBPF], "%.0f"), orDash(mem[replay.FaaSnap], "%.0f"), orDash(mem[replay.REAP], "%.0f")),
			ratioOf(mem[policy.SnapBPF], mem[replay.REAP]), written,
		})
	}
	if len(ratios) > 0 {
		var sum float64
		for _, r := range ratios {
			sum += r
		}
		fmt.Fprintf(w, "\nsnapbpf / min(reap, faasnap) over these %d functions: mean %.2fx, worst %.2fx.", len(ratios), sum/float64(len(ratios)), slices.Max(ratios))
	}
	fmt.Fprintf(w, " Medians over runs; host memory is the memory file's page cache plus every VM's private pages (REAP: its copies).\n\n")
}
