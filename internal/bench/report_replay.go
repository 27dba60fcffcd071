package bench

import (
	"fmt"
	"io"
	"slices"

	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/replay"
)

// vmNote says, in every caption of a real-VM figure, where the numbers
// come from.
const vmNote = "Every number here is from real VMs, none from the replay harness; the harness's numbers for this figure, " +
	"REAP and FaaSnap among them, are in the section marked (replay)."

// replayHow is what every replay caption says about the harness.
const replayHow = "Every number here comes from the replay harness (`snapbpf replay`, package replay), not from real VMs: " +
	"each function's first-touch trace was recorded once on a real VM restored cold with readahead off, and is replayed in the " +
	"bench's own process, which maps the memory file as each policy's VMM would (lazy and nora: a private file mapping with or " +
	"without readahead; snapbpf: nora plus the trace's data pages prefetched into the page cache from the restore request on; " +
	"faasnap: per-region mappings with a loading-set file read by a loader; reap: anonymous memory filled from a working-set file " +
	"through userfaultfd) and touches the trace's pages in order. The recorded compute gaps are divided by the compute slowdown " +
	"measured when the trace was recorded (native speed; the TCG guests compute 5 to 30 times slower than the host, see the trace " +
	"table). Latency counts from the restore request: the traced VMM's start and state load, each policy's own work around them, " +
	"and the replay. Every run starts with the memory file's and the compact files' page cache dropped; REAP's and FaaSnap's record " +
	"phases (a cold replay each) run at the start of every cell and are not counted."

// warmHow says how the replay's warm is made.
const warmHow = "warm is policy lazy with the whole memory file read into the page cache and held there by a populated shared " +
	"mapping in the bench process (the harness has no warm mode and drops the cache before each run; the drop skips mapped pages)."

// replaySections are the report's replay figures, after the real-VM ones
// they mirror; fig5 is the paper's figure 5.
func replaySections(res *Results, where string) (fig1, fig2, fig3, fig5 section) {
	runs := res.Config.Runs
	f1 := trimBars(latencyBars(res, barFigure{Name: "fig1-latency-replay",
		Title:  "Single-function end-to-end latency, cold (N=1), replay at native speed",
		YLabel: "end-to-end latency (ms)", Categories: functionsOf(res)}, ExpReplay, policiesIn(res, ExpReplay, ReplayPolicies())))
	fig1 = section{"Figure 1 (replay)", &f1, nil,
		fmt.Sprintf("End-to-end latency of one restore of each function under the harness's five policies and warm, native-speed "+
			"compute. %s %s Median of %d runs, whiskers min–max. Replayed on %s. The second table puts these beside figure 1's "+
			"real-VM medians, whose compute runs under TCG.", replayHow, warmHow, runs, where),
		func(w io.Writer) { latencyTable(w, f1); fmt.Fprintln(w); sideBySideTable(w, res) }}
	pols := policiesIn(res, ExpReplay, replay.Policies())
	f2 := memoryLines(res, LineFigure{Name: "fig2-memory-replay", Title: "Memory usage against concurrency, replay",
		XLabel: "concurrent VMs (N)", YLabel: "memory / lazy N=1"}, ExpReplay, pols)
	fig2 = section{"Figure 2 (replay)", nil, &f2,
		fmt.Sprintf("Host memory holding guest RAM after N VMs of one function were replayed at once: the VMs' anonymous "+
			"memory (/proc/self/smaps of each guest mapping: copy-on-write copies, and all of REAP's guest memory) plus the page "+
			"cache of each file read (memory file, REAP's and FaaSnap's compact files; shared, counted once), divided by the "+
			"median of the replay's lazy at N=1 of the same function. %s Median of %d runs. Replayed on %s.", replayHow, runs, where),
		func(w io.Writer) { memoryTable(w, res, f2, ExpReplay) }}
	f3 := concurrencyLines(res, LineFigure{Name: "fig3-concurrency-replay", Title: "Concurrent execution latency, replay",
		XLabel: "concurrent VMs (N)", YLabel: "mean end-to-end latency (ms)"}, ExpReplay, pols)
	fig3 = section{"Figure 3 (replay)", nil, &f3,
		fmt.Sprintf("Mean end-to-end latency of N VMs of one function replayed at once (mean over the N VMs, then median over "+
			"%d runs; whiskers min–max). Every replay sleeps its compute gaps instead of spinning, as if each VM had a CPU of "+
			"its own (this host has %s), so the curves show contention for memory and storage, not for CPUs. "+
			"REAP reads its working-set file once per VM, as vHive does. %s Replayed on %s.", runs, cpusOf(res), replayHow, where),
		func(w io.Writer) { concurrencyTable(w, f3) }}
	f5 := figScatter(res)
	fig5 = section{"Figure 5 (replay)", nil, &f5,
		fmt.Sprintf("Fragmentation sensitivity: end-to-end latency of one VM when a fraction of the trace's non-zero pages is "+
			"moved to random places in the memory file (`snapbpf replay --scatter`, seed 1), so the working set is spread over "+
			"more, shorter extents; REAP's and FaaSnap's record phases run on the scattered trace, so their compact files stay "+
			"compact. %s Median of %d runs, whiskers min–max. Replayed on %s.", replayHow, runs, where),
		func(w io.Writer) { scatterTable(w, res, f5) }}
	return fig1, fig2, fig3, fig5
}

// selectScatter is Select for ExpScatter at one fraction.
func selectScatter(res *Results, fn, pol string, frac float64) []Run {
	var out []Run
	for _, r := range res.Select(ExpScatter, fn, pol, 0) {
		if r.Scatter == frac {
			out = append(out, r)
		}
	}
	return out
}

// scatterFractions lists the fractions with runs, ascending.
func scatterFractions(res *Results) []float64 {
	var fs []float64
	for _, r := range res.Select(ExpScatter, "", "", 0) {
		if !slices.Contains(fs, r.Scatter) {
			fs = append(fs, r.Scatter)
		}
	}
	slices.Sort(fs)
	return fs
}

// figScatter is figure 5: latency against the scattered fraction.
func figScatter(res *Results) LineFigure {
	f := LineFigure{Name: "fig5-fragmentation-replay", Title: "Fragmentation sensitivity (N=1), replay",
		XLabel: "fraction of non-zero pages scattered", YLabel: "end-to-end latency (ms)"}
	for _, fn := range functionsOf(res) {
		panel := LinePanel{Title: fn}
		for _, p := range policiesIn(res, ExpScatter, replay.Policies()) {
			s := LineSeries{Name: p}
			for _, frac := range scatterFractions(res) {
				if v := metric(selectScatter(res, fn, p, frac), MetricE2EMs); v.Valid() {
					s.X, s.Y = append(s.X, frac), append(s.Y, v)
				}
			}
			if len(s.X) > 0 {
				panel.Series = append(panel.Series, s)
			}
		}
		if len(panel.Series) > 0 {
			f.Panels = append(f.Panels, panel)
		}
	}
	return f
}

// scatterTable gives figure 5's latencies with the bytes each policy read.
func scatterTable(w io.Writer, res *Results, f LineFigure) {
	fracs := scatterFractions(res)
	head := []string{"function", "policy"}
	for _, x := range fracs {
		head = append(head, fmt.Sprintf("scatter %g: ms / read MiB", x))
	}
	tableHead(w, head)
	for _, p := range f.Panels {
		for _, s := range p.Series {
			row := []string{p.Title, s.Name}
			for _, x := range fracs {
				runs := selectScatter(res, p.Title, s.Name, x)
				e2e, read := metric(runs, MetricE2EMs), metric(runs, MetricReadBytes)
				if !e2e.Valid() {
					row = append(row, "–")
					continue
				}
				row = append(row, fmt.Sprintf("%s / %.1f", e2e.Format("%.0f"), read.Median/(1<<20)))
			}
			tableRow(w, row)
		}
	}
}

// sideBySideTable puts figure 1's real-VM and replay medians in one row
// per function, with the trace's compute slowdown between them.
func sideBySideTable(w io.Writer, res *Results) {
	vmPols, rpPols := policiesOf(res), policiesIn(res, ExpReplay, ReplayPolicies())
	head := []string{"function", "TCG slowdown"}
	for _, p := range vmPols {
		head = append(head, "VM "+p)
	}
	for _, p := range rpPols {
		head = append(head, "replay "+p)
	}
	head = append(head, "snapbpf / warm, VM", "snapbpf / warm, replay")
	tableHead(w, head)
	for _, fn := range functionsOf(res) {
		row := []string{fn, orDash(metric(res.Select(ExpTrace, fn, "", 0), MetricTraceSlowdown), "%.1fx")}
		for _, p := range vmPols {
			row = append(row, orDash(metric(res.Select(ExpLatency, fn, p, 1), MetricE2EMs), "%.0f"))
		}
		for _, p := range rpPols {
			row = append(row, orDash(metric(res.Select(ExpReplay, fn, p, 1), MetricE2EMs), "%.0f"))
		}
		ratio := func(exp string) string {
			return ratioOf(metric(res.Select(exp, fn, policy.SnapBPF, 1), MetricE2EMs), metric(res.Select(exp, fn, PolicyWarm, 1), MetricE2EMs))
		}
		row = append(row, ratio(ExpLatency), ratio(ExpReplay))
		tableRow(w, row)
	}
	fmt.Fprintf(w, "\nMedians in ms. VM columns: real QEMU microVMs (figure 1 (real VMs)); replay columns: the replay harness at native speed (above); the slowdown is the trace's, by which the replay divides the guest's compute.\n")
}

// writeTraces describes the traces the replays used.
func writeTraces(w io.Writer, res *Results) {
	runs := res.Select(ExpTrace, "", "", 0)
	if len(runs) == 0 {
		return
	}
	fmt.Fprintf(w, "## Traces (recorded on real VMs, replayed by every (replay) figure)\n\n")
	fmt.Fprintf(w, "One cold restore per function with readahead off, every first touch of a guest page recorded with eBPF "+
		"(`snapbpf trace`); stored in the snapshot directory and reused while the snapshot is. The slowdown is the guest's "+
		"compute time (less modelled stalls) over the same invocation's native time on the host, median of %d.\n\n", traceHostRuns)
	tableHead(w, []string{"function", "pages touched", "holes", "guest fn (ms)", "host fn (ms)", "slowdown", "record (ms)"})
	for _, r := range runs {
		m := r.Metrics
		rec := "reused"
		if m[MetricTraceRecordMs] > 0 {
			rec = fmt.Sprintf("%.0f", m[MetricTraceRecordMs])
		}
		tableRow(w, []string{r.Function, fmt.Sprintf("%.0f", m[MetricTracePages]), fmt.Sprintf("%.0f", m[MetricTraceHoles]),
			fmt.Sprintf("%.0f", m[MetricGuestFnMs]), fmt.Sprintf("%.2f", m[MetricHostFnMs]), fmt.Sprintf("%.1fx", m[MetricTraceSlowdown]),
			rec})
	}
	fmt.Fprintln(w)
}

// cpusOf is the host's CPU count as the replay runs saw it.
func cpusOf(res *Results) string {
	for _, r := range res.Runs {
		if r.Source == SourceReplay && r.Machine.NProc > 0 {
			return fmt.Sprint(r.Machine.NProc)
		}
	}
	return "unknown"
}
