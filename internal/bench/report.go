package bench

import (
	"cmp"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/prefetch"
	"github.com/snapbpf/snapbpf/internal/replay"
)

// ReportFile is the name of the Markdown report in a bench's output
// directory.
const ReportFile = "report.md"

// WriteReport renders res into dir: report.md and every figure as SVG and
// PNG. Figures without data are left out of both.
func WriteReport(res *Results, dir string) error {
	var b strings.Builder
	if err := renderReport(&b, res, dir); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, ReportFile), []byte(b.String()))
}

// section is one figure of the report: its plot, caption and table.
type section struct {
	label   string
	bars    *barFigure
	lines   *LineFigure
	caption string
	table   func(w io.Writer)
}

// renderReport writes the Markdown to w and, when dir is not empty, the
// figures into dir.
func renderReport(w io.Writer, res *Results, dir string) error {
	where := whereMeasured(res)
	writeHeader(w, res, where)
	fig1 := trimBars(figLatency(res))
	fig2 := figMemory(res)
	fig3 := figConcurrency(res)
	fig4 := trimBars(figBreakdown(res))
	fig6 := trimBars(figPrefetch(res))
	r1, r2, r3, r5 := replaySections(res, replayWhere(res))
	// Figure numbers follow the paper's; each replay figure follows the
	// real-VM one it mirrors.
	sections := []section{
		{"Figure 1 (real VMs)", &fig1, nil, captionLatency(res, where), func(w io.Writer) { latencyTable(w, fig1) }},
		r1,
		{"Figure 2 (real VMs)", nil, &fig2, captionMemory(where), func(w io.Writer) { memoryTable(w, res, fig2, ExpLatency) }},
		r2,
		{"Figure 3 (real VMs)", nil, &fig3, captionConcurrency(where), func(w io.Writer) { concurrencyTable(w, fig3) }},
		r3,
		{"Figure 4 (real VMs)", &fig4, nil, captionBreakdown(where), func(w io.Writer) { barTable(w, fig4, "ms", "%.0f") }},
		r5,
		{"Figure 6 (host, no VMs)", &fig6, nil, captionPrefetch(where), func(w io.Writer) { prefetchTable(w, res, fig6) }},
	}
	for _, s := range sections {
		if err := writeSection(w, dir, s); err != nil {
			return err
		}
	}
	writeSnapshots(w, res)
	writeRecordedInput(w, res)
	writeOtherInput(w, res)
	writeReplayBaselines(w, res)
	writeTraces(w, res)
	writeDetails(w, res)
	writeTimes(w, res)
	writeFailures(w, res)
	return nil
}

func writeSection(w io.Writer, dir string, s section) error {
	var name, title string
	switch {
	case s.bars != nil && !s.bars.empty():
		name, title = s.bars.Name, s.bars.Title
		if dir != "" {
			if _, err := plotBars(dir, *s.bars); err != nil {
				return err
			}
		}
	case s.lines != nil && !s.lines.empty():
		name, title = s.lines.Name, s.lines.Title
		if dir != "" {
			if _, err := PlotLines(dir, *s.lines); err != nil {
				return err
			}
		}
	default:
		return nil
	}
	fmt.Fprintf(w, "## %s: %s\n\n", s.label, title)
	fmt.Fprintf(w, "![%s](%s.svg)\n\n", title, name)
	fmt.Fprintf(w, "*%s: %s* (Also as [PNG](%s.png).)\n\n", s.label, s.caption, name)
	s.table(w)
	fmt.Fprintln(w)
	return nil
}

func writeHeader(w io.Writer, res *Results, where string) {
	c := res.Config
	fmt.Fprintf(w, "# snapbpf bench\n\n")
	fmt.Fprintf(w, "Measured on %s.\n\n", where)
	fmt.Fprintf(w, "- Functions and data sizes: %s.\n", dataSizes(res))
	fmt.Fprintf(w, "- Policies: %s. Concurrency N: %s (replay: %s). Runs per cell: %d.\n", strings.Join(c.Policies, ", "), joinInts(c.Concurrency), joinInts(c.replayConcurrency()), c.Runs)
	fmt.Fprintf(w, "- Every measured invocation gets input %d.\n", c.Input)
	fmt.Fprintf(w, "- lazy is Linux as it is (readahead, QEMU's hugepage advice); nora turns readahead off for the memory file; "+
		"snapbpf prefetches the working set recorded on the same input (%d) into the page cache while the VM starts, readahead off; "+
		"snapbpf-other is snapbpf with the working set recorded on input %d, a different invocation of the function than the one measured "+
		"(pages outside it fault one at a time, as in nora; measured at N=1 only); "+
		"warm restores with the whole memory file already in the page cache: the floor.\n", c.Input, c.otherInput())
	fmt.Fprintf(w, "- Tables give the median over runs and the range (min–max) in parentheses; plots draw the median with min–max whiskers.\n")
	for _, n := range c.Notes {
		fmt.Fprintf(w, "- Note: %s\n", n)
	}
	fmt.Fprintf(w, "- Sources: figures marked (real VMs) restore QEMU microVMs (under %s here, whose guests compute 5 to 30 times slower "+
		"than natively, so paging is a smaller share of a restore than on KVM); figures marked (replay) come from the replay harness "+
		"replaying a first-touch trace of each function at native speed, the only source of the REAP and FaaSnap series and of "+
		"figure 5; figure 6 runs on the host alone. results.json says which for each run (`source`: `vm` or `replay`).\n", accelOf(res))
	if fr := c.ScatterFractions; len(fr) > 0 && slices.Contains(c.Experiments, ExpScatter) {
		fmt.Fprintf(w, "- Replay policies: %s; figure 5's scatter fractions: %s.\n", strings.Join(ReplayPolicies(), ", "), joinFloats(fr))
	}
	fmt.Fprintln(w)
}

// accelOf is the accelerator of the runs' VMs.
func accelOf(res *Results) string {
	for _, r := range res.Runs {
		if r.Machine.Accel != "" {
			return r.Machine.Accel
		}
	}
	return "an unknown accelerator"
}

// replayWhere describes the machines of the replay runs.
func replayWhere(res *Results) string {
	var ms []string
	for _, r := range res.Runs {
		if r.Source != SourceReplay {
			continue
		}
		if s := r.Machine.String(); !slices.Contains(ms, s) {
			ms = append(ms, s)
		}
	}
	if len(ms) == 0 {
		return "no machine yet"
	}
	return "the host " + strings.Join(ms, "; and on ") + " (traces recorded on its QEMU microVMs)"
}

func joinFloats(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ", ")
}

// whereMeasured describes the machines of the runs.
func whereMeasured(res *Results) string {
	var ms []string
	for _, r := range res.Runs {
		if r.Source == SourceReplay {
			continue
		}
		if s := r.Machine.String(); !slices.Contains(ms, s) {
			ms = append(ms, s)
		}
	}
	if len(ms) == 0 {
		return "no machine yet (no runs)"
	}
	return "real QEMU microVMs, " + strings.Join(ms, "; and on ")
}

func dataSizes(res *Results) string {
	var out []string
	for _, fn := range functionsOf(res) {
		mib := res.Config.dataMiB(fn)
		for _, r := range res.Runs {
			if r.Function == fn {
				mib = r.DataMiB
				break
			}
		}
		out = append(out, fmt.Sprintf("%s %d MiB", fn, mib))
	}
	return strings.Join(out, ", ")
}

func captionLatency(res *Results, where string) string {
	return fmt.Sprintf("End-to-end latency of one restore of each function, from the restore call (including the policy's start, "+
		"such as snapbpf's prefetch) to the verified result of one invocation, with the memory file's page cache dropped first; "+
		"warm has the whole memory file cached instead. Median of %d runs, whiskers min–max. Measured on %s. %s",
		res.Config.Runs, where, vmNote)
}

func captionMemory(where string) string {
	return fmt.Sprintf("Host memory holding guest RAM after N VMs of one function were restored at once and invoked: "+
		"the memory file's page cache after the run (mincore; shared by all VMs, counted once) plus every VM's private guest pages "+
		"(copy-on-write copies, from /proc/PID/smaps before the VM exited), divided by the median of %s. "+
		"Measured on %s. %s",
		memoryBasis, where, vmNote)
}

func captionConcurrency(where string) string {
	return fmt.Sprintf("Mean end-to-end latency of N VMs of one function restored cold at the same time and invoked once each "+
		"(mean over the N VMs, then median over runs; whiskers min–max over runs). Measured on %s, where the vCPUs of all N "+
		"guests share the host's CPUs. %s", where, vmNote)
}

func captionBreakdown(where string) string {
	return fmt.Sprintf("Cold end-to-end latency at N=1 in three steps: %q restores a snapshot taken without free page reporting "+
		"(free guest pages are data in the memory file); %q restores the snapshot whose free pages were reported and became holes "+
		"(no I/O, never prefetched); %q adds the prefetch of the recorded working set. The last two bars are figure 1's lazy and "+
		"snapbpf runs. The paper's middle step marks free pages online in a patched guest kernel; here they are filtered at snapshot "+
		"time with virtio-balloon free page reporting. Measured on %s. Every number here is from real VMs; the replay harness "+
		"does not measure this figure.", stepLinux, stepFreePage, stepSnapBPF, where)
}

func captionPrefetch(where string) string {
	return fmt.Sprintf("Throughput of reading each function's recorded working set into the page cache from a cold cache: "+
		"snapbpf's prefetch (default engine and options; time from start, planning included, until every page is cached) against "+
		"fio replaying exactly the same requests (merged across %d-page gaps, holes cut out, split at the device's max_sectors_kb) "+
		"with read_iolog, io_uring at depth 32, buffered, readahead off (fio's own runtime, in whole milliseconds). At this depth fio "+
		"counts fewer bytes than it brings into the cache (short reads where concurrent requests share a large folio), so it is "+
		"credited with the requested bytes mincore found cached after it ran (a run that left over 1%% uncached fails; the 'fio missed' "+
		"column gives the rest). MB/s is 10^6 bytes per second. "+
		"No VM runs here and no number comes from the replay harness. Measured on the host of %s.", prefetch.DefaultGapPages, where)
}

// latencyTable is figure 1 as a table, with snapbpf's speedup over lazy
// and its distance from warm.
func latencyTable(w io.Writer, f barFigure) {
	lazy, snap, warm := seriesIndex(f, policy.Lazy), seriesIndex(f, policy.SnapBPF), seriesIndex(f, PolicyWarm)
	head := []string{"function"}
	for _, s := range f.Series {
		head = append(head, s.Name+" (ms)")
	}
	if lazy >= 0 && snap >= 0 {
		head = append(head, "lazy / snapbpf")
	}
	if snap >= 0 && warm >= 0 {
		head = append(head, "snapbpf / warm")
	}
	tableHead(w, head)
	for j, c := range f.Categories {
		row := []string{c}
		for _, s := range f.Series {
			row = append(row, s.Values[j].Format("%.0f"))
		}
		if lazy >= 0 && snap >= 0 {
			row = append(row, ratioOf(f.Series[lazy].Values[j], f.Series[snap].Values[j]))
		}
		if snap >= 0 && warm >= 0 {
			row = append(row, ratioOf(f.Series[snap].Values[j], f.Series[warm].Values[j]))
		}
		tableRow(w, row)
	}
}

// barTable is a bar figure as a table.
func barTable(w io.Writer, f barFigure, unit, verb string) {
	head := []string{"function"}
	for _, s := range f.Series {
		head = append(head, s.Name+" ("+unit+")")
	}
	tableHead(w, head)
	for j, c := range f.Categories {
		row := []string{c}
		for _, s := range f.Series {
			row = append(row, s.Values[j].Format(verb))
		}
		tableRow(w, row)
	}
}

// memoryTable gives figure 2's normalised values with the absolute MiB.
func memoryTable(w io.Writer, res *Results, f LineFigure, exp string) {
	ns := concurrencyIn(res, exp)
	head := []string{"function", "policy"}
	for _, n := range ns {
		head = append(head, fmt.Sprintf("N=%d", n))
	}
	tableHead(w, head)
	for _, p := range f.Panels {
		for _, s := range p.Series {
			row := []string{p.Title, s.Name}
			for _, n := range ns {
				abs := metric(res.Select(exp, p.Title, s.Name, n), MetricTotalBytes).Scale(1.0 / (1 << 20))
				i := slices.Index(s.X, float64(n))
				if i < 0 {
					row = append(row, "–")
					continue
				}
				row = append(row, fmt.Sprintf("%s, %.0f MiB", s.Y[i].Format("%.2f"), abs.Median))
			}
			tableRow(w, row)
		}
	}
}

// concurrencyTable gives figure 3's values.
func concurrencyTable(w io.Writer, f LineFigure) {
	var ns []float64
	for _, p := range f.Panels {
		for _, s := range p.Series {
			for _, x := range s.X {
				if !slices.Contains(ns, x) {
					ns = append(ns, x)
				}
			}
		}
	}
	slices.Sort(ns)
	head := []string{"function", "policy"}
	for _, n := range ns {
		head = append(head, fmt.Sprintf("N=%g (ms)", n))
	}
	tableHead(w, head)
	for _, p := range f.Panels {
		for _, s := range p.Series {
			row := []string{p.Title, s.Name}
			for _, n := range ns {
				if i := slices.Index(s.X, n); i >= 0 {
					row = append(row, s.Y[i].Format("%.0f"))
				} else {
					row = append(row, "–")
				}
			}
			tableRow(w, row)
		}
	}
}

// prefetchTable gives figure 6's throughputs with the bytes, requests and
// times behind them.
func prefetchTable(w io.Writer, res *Results, f barFigure) {
	tableHead(w, []string{"function", "MiB read", "requests", "snapbpf prefetch (ms)", "fio replay (ms)",
		"snapbpf prefetch (MB/s)", "fio replay (MB/s)", "prefetch / fio", "fio missed (KiB)"})
	for _, fn := range f.Categories {
		pre, fio := res.Select(ExpPrefetch, fn, SeriesPrefetch, 1), res.Select(ExpPrefetch, fn, SeriesFio, 1)
		src := pre
		if len(src) == 0 {
			src = fio
		}
		bytes := metric(src, MetricBytes).Scale(1.0 / (1 << 20))
		reqs := metric(src, MetricRequests)
		tableRow(w, []string{fn, bytes.Format("%.1f"), reqs.Format("%.0f"),
			metric(pre, MetricMs).Format("%.0f"), metric(fio, MetricMs).Format("%.0f"),
			metric(pre, MetricMBps).Format("%.0f"), metric(fio, MetricMBps).Format("%.0f"),
			ratioOf(metric(pre, MetricMBps), metric(fio, MetricMBps)), metric(fio, MetricMissedBytes).Scale(1.0 / 1024).Format("%.0f")})
	}
}

// writeDetails lists every restore and replay configuration's medians.
func writeDetails(w io.Writer, res *Results) {
	type group struct {
		exp, fn, pol string
		n            int
		scatter      float64
	}
	var groups []group
	for _, r := range res.Runs {
		g := group{r.Experiment, r.Function, r.Policy, r.N, r.Scatter}
		if r.OK() && r.Experiment != ExpPrefetch && r.Experiment != ExpTrace && !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
	}
	if len(groups) == 0 {
		return
	}
	fns := functionsOf(res)
	pols := append(Policies(), replay.FaaSnap, replay.REAP)
	slices.SortStableFunc(groups, func(a, b group) int {
		if c := slices.Index(fns, a.fn) - slices.Index(fns, b.fn); c != 0 {
			return c
		}
		if c := slices.Index(Experiments(), a.exp) - slices.Index(Experiments(), b.exp); c != 0 {
			return c
		}
		if a.scatter != b.scatter {
			return cmp.Compare(a.scatter, b.scatter)
		}
		if c := slices.Index(pols, a.pol) - slices.Index(pols, b.pol); c != 0 {
			return c
		}
		return a.n - b.n
	})
	fmt.Fprintf(w, "## Every restore and replay configuration\n\n")
	fmt.Fprintf(w, "Medians over runs. Source vm: real VMs; replay: the replay harness at native speed (experiment scatter "+
		"gives its fraction after the name). e2e is the mean over the N VMs, slowest the slowest VM; page cache is the memory file's "+
		"after the run (replay: every file's the policy reads); private is the sum of the VMs' copy-on-write pages (replay: anonymous "+
		"memory); read is what the VMMs read from storage (/proc/PID/io, so not the prefetch's reads; replay: everything the "+
		"process read, prefetch, loaders and handlers included); major faults are summed over the VMs, and of them those in the "+
		"memory file's mapping (real VMs: the rest fall on QEMU's binary and libraries; replay: all); load is the host's "+
		"1-minute load average as the cell started.\n\n")
	tableHead(w, []string{"function", "source", "experiment", "policy", "N", "runs", "e2e (ms)", "slowest (ms)", "page cache (MiB)",
		"private (MiB)", "read (MiB)", "major faults", "on the memory file", "prefetch (ms)", "load"})
	mib := 1.0 / (1 << 20)
	for _, g := range groups {
		runs := res.Select(g.exp, g.fn, g.pol, g.n)
		exp := g.exp
		if g.exp == ExpScatter {
			runs, exp = selectScatter(res, g.fn, g.pol, g.scatter), fmt.Sprintf("%s %g", g.exp, g.scatter)
		}
		var load []float64
		for _, r := range runs {
			load = append(load, r.LoadAvg)
		}
		tableRow(w, []string{g.fn, sourceOf(g.exp), exp, g.pol, fmt.Sprint(g.n), fmt.Sprint(len(runs)),
			fmt.Sprintf("%.0f", metric(runs, MetricE2EMs).Median), fmt.Sprintf("%.0f", metric(runs, MetricE2EMaxMs).Median),
			fmt.Sprintf("%.1f", metric(runs, MetricCacheBytes).Median*mib), fmt.Sprintf("%.1f", metric(runs, MetricPrivateBytes).Median*mib),
			fmt.Sprintf("%.1f", metric(runs, MetricReadBytes).Median*mib), fmt.Sprintf("%.0f", metric(runs, MetricMajorFaults).Median),
			orDash(metric(runs, MetricMemFaults), "%.0f"), orDash(metric(runs, MetricPrefetchMs), "%.0f"), fmt.Sprintf("%.1f", Summarize(load).Median)})
	}
	fmt.Fprintln(w)
}

func orDash(s Summary, verb string) string {
	if !s.Valid() {
		return "–"
	}
	return fmt.Sprintf(verb, s.Median)
}

// writeTimes says how long the bench took and how long the full set is
// expected to take.
func writeTimes(w io.Writer, res *Results) {
	fmt.Fprintf(w, "## Time\n\n")
	var total time.Duration
	for _, s := range res.Sessions {
		if !s.End.IsZero() {
			total += s.End.Sub(s.Start)
		}
	}
	fmt.Fprintf(w, "This bench took %s in %d session(s), snapshot creation and working-set recording included.\n\n", timeOf(total), len(res.Sessions))
	for _, e := range []struct {
		name string
		cfg  Config
	}{{"reduced set (`make bench`)", Reduced()}, {"full set (`snapbpf bench --full`)", Full()}} {
		est := Estimate(res, e.cfg)
		fmt.Fprintf(w, "- Expected time of the %s: %s (%d cells, %d snapshots); %s\n", e.name, timeOf(est.Total), est.Cells, est.Snapshots, est.Basis)
	}
	fmt.Fprintln(w)
}

func writeFailures(w io.Writer, res *Results) {
	var failed []Run
	for _, r := range res.Runs {
		if !r.OK() {
			failed = append(failed, r)
		}
	}
	if len(failed) == 0 {
		return
	}
	fmt.Fprintf(w, "## Failed cells\n\nThese are left out of every table and figure; running the bench again retries them.\n\n")
	for _, r := range failed {
		fmt.Fprintf(w, "- %s: %s\n", r.Key, r.Error)
	}
	fmt.Fprintln(w)
}

// trimBars drops categories without any value.
func trimBars(f barFigure) barFigure {
	out := f
	out.Categories = nil
	out.Series = make([]barSeries, len(f.Series))
	for i, s := range f.Series {
		out.Series[i].Name = s.Name
	}
	for j, c := range f.Categories {
		keep := false
		for _, s := range f.Series {
			keep = keep || s.Values[j].Valid()
		}
		if !keep {
			continue
		}
		out.Categories = append(out.Categories, c)
		for i, s := range f.Series {
			out.Series[i].Values = append(out.Series[i].Values, s.Values[j])
		}
	}
	return out
}

func seriesIndex(f barFigure, name string) int {
	return slices.IndexFunc(f.Series, func(s barSeries) bool { return s.Name == name })
}

func ratioOf(a, b Summary) string {
	if !a.Valid() || !b.Valid() || b.Median == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2fx", a.Median/b.Median)
}

func tableHead(w io.Writer, cols []string) {
	fmt.Fprintf(w, "| %s |\n|", strings.Join(cols, " | "))
	for range cols {
		fmt.Fprint(w, "---|")
	}
	fmt.Fprintln(w)
}

func tableRow(w io.Writer, cols []string) {
	fmt.Fprintf(w, "| %s |\n", strings.Join(cols, " | "))
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}

func timeOf(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%.0f s", d.Seconds())
	}
	return fmt.Sprintf("%.1f min", d.Minutes())
}
