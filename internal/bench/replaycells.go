package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/record"
	"github.com/snapbpf/snapbpf/internal/replay"
	"github.com/snapbpf/snapbpf/internal/restore"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/trace"
)

// Sources of a run's numbers.
const (
	SourceVM     = "vm"     // real QEMU microVMs (or, for ExpPrefetch, the host alone)
	SourceReplay = "replay" // the replay harness (package replay) on a trace
)

// sourceOf is where a cell's numbers come from. A trace is recorded on a
// real VM.
func sourceOf(exp string) string {
	if exp == ExpReplay || exp == ExpScatter {
		return SourceReplay
	}
	return SourceVM
}

// traceFile is where a snapshot keeps the bench's trace on input.
func traceFile(input uint64) string { return fmt.Sprintf("bench-input-%d.trace", input) }

// traceHostRuns is how many times the traced invocation runs natively for
// its host time (the median is the trace's, as snapbpf trace does).
const traceHostRuns = 3

// Trace metrics.
const (
	MetricTracePages    = "trace_pages"      // distinct pages touched
	MetricTraceHoles    = "trace_hole_pages" // of them, holes of the memory file
	MetricTraceSlowdown = "trace_slowdown"   // TCG guest compute / native
	MetricTraceRecordMs = "trace_record_ms"  // 0: an existing trace was reused
	MetricTraceWritten  = "trace_written"    // distinct pages written (first touch or later)
	MetricStallMs       = "stall_ms"         // replay: time stalled on memory, mean over VMs
	MetricRecordPhaseMs = "record_phase_ms"  // replay: REAP's or FaaSnap's record run
)

// loadTrace returns the trace of d on the bench's input: the one in d when
// it was recorded on this memory file, otherwise a new recording. recorded
// reports which.
func (b *bench) loadTrace(ctx context.Context, d *snapshot.Dir) (t *trace.Trace, recorded bool, err error) {
	path := d.File(traceFile(b.cfg.Input))
	if t, ok := b.traces[d.Manifest.ID]; ok {
		return t, false, nil
	}
	if t, err := trace.Read(path); err == nil && t.Meta.Mem.SnapshotID == d.Manifest.ID && t.Meta.Input == b.cfg.Input {
		b.traces[d.Manifest.ID] = t
		return t, false, nil
	}
	b.log().Info("bench: tracing", "snapshot", d.Path, "input", b.cfg.Input, "file", path)
	m := d.Manifest
	o := record.TraceOptions{Input: b.cfg.Input, Accel: b.accel, CrossCheck: false}
	o.Expected, o.HostFn, err = restore.ExpectedMedian(ctx, m, b.cfg.Input, traceHostRuns)
	if err != nil {
		return nil, false, err
	}
	t, _, err = record.Trace(ctx, b.driver, d, o)
	if err != nil {
		return nil, false, fmt.Errorf("trace %s: %w", m.Function, err)
	}
	if err := trace.Write(path, t); err != nil {
		return nil, false, err
	}
	b.traces[d.Manifest.ID] = t
	return t, true, nil
}

// traceCell records (or finds) the function's trace.
func (b *bench) traceCell(ctx context.Context, d *snapshot.Dir, run *Run) error {
	t0 := time.Now()
	t, recorded, err := b.loadTrace(ctx, d)
	if err != nil {
		return err
	}
	s := t.Summary()
	mt := run.Metrics
	mt[MetricTracePages], mt[MetricTraceHoles], mt[MetricTraceSlowdown] = float64(s.Pages), float64(s.HolePages), s.Slowdown
	mt[MetricTraceWritten] = float64(s.WritePages + s.Upgrades)
	mt[MetricGuestFnMs], mt[MetricHostFnMs] = s.GuestFnMs, s.HostFnMs
	if recorded {
		mt[MetricTraceRecordMs] = ms(time.Since(t0))
		run.Detail = "recorded " + d.File(traceFile(b.cfg.Input))
	} else {
		run.Detail = fmt.Sprintf("reused %s (recorded %s)", d.File(traceFile(b.cfg.Input)), t.Meta.Created.UTC().Format(time.RFC3339))
	}
	if s.LostRecords > 0 {
		return fmt.Errorf("trace lost %d fault records: incomplete", s.LostRecords)
	}
	return nil
}

// replayCell replays the function's trace at native speed under k's
// policy, k.N VMs at once, k.Scatter of its pages scattered.
func (b *bench) replayCell(ctx context.Context, d *snapshot.Dir, k Key, run *Run) error {
	t, _, err := b.loadTrace(ctx, d)
	if err != nil {
		return err
	}
	// Tracing can take a while: time only the replay.
	run.Start, run.LoadAvg = time.Now().UTC(), loadAvg()
	work := d.File("replay")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	o := replay.Options{
		Mem: d.MemPath(), SnapshotID: d.Manifest.ID, Trace: t, Policy: k.Policy, Concurrency: k.N, Runs: 1,
		GapScale: 0, VMMStart: -1, StateLoad: -1, Scatter: k.Scatter, ScatterSeed: 1, WorkDir: work,
		// Compute is slept, as if each VM had a CPU of its own, at every N:
		// spinning at N=1 and sleeping from N=2 on (replay's default on 2
		// CPUs) would change how compute is spent between the points of
		// one curve.
		Compute: replay.ComputeSleep,
	}
	var release func() error
	if k.Policy == PolicyWarm {
		o.Policy = policy.Lazy
		if release, err = holdCached(d.MemPath()); err != nil {
			return err
		}
	}
	rep, err := replay.Run(ctx, o)
	if release != nil {
		err = errors.Join(err, release())
	}
	if err != nil {
		return err
	}
	run.Replay = rep
	replayMetrics(run.Metrics, rep)
	return nil
}

// replayMetrics fills a replay cell's metrics with the names restore
// cells use, so that the figures can put them side by side.
func replayMetrics(mt map[string]float64, rep *replay.Report) {
	var cache int64
	for _, c := range rep.PageCache {
		cache += c
	}
	mt[MetricE2EMs], mt[MetricE2EMaxMs], mt[MetricStallMs] = rep.CompletionMs, rep.MaxCompletionMs, rep.StallMs
	mt[MetricCacheBytes], mt[MetricPrivateBytes], mt[MetricTotalBytes] = float64(cache), float64(rep.AnonBytes), float64(rep.TotalBytes)
	mt[MetricReadBytes] = float64(rep.ReadBytes)
	// The report's faults are means over the VMs; restore cells sum them.
	mt[MetricMajorFaults] = rep.MajorFaults * float64(rep.Concurrency)
	// The replay's threads touch only the guest's memory mappings.
	mt[MetricMemFaults] = mt[MetricMajorFaults]
	mt[MetricGuestFnMs] = rep.ComputeMs
	if len(rep.Runs) > 0 && rep.Runs[0].Prefetch != nil {
		mt[MetricPrefetchMs] = ms(rep.Runs[0].Prefetch.CompleteDur)
	}
	if p := rep.Prepare; p != nil && p.RecordMs > 0 {
		mt[MetricRecordPhaseMs] = p.RecordMs
	}
}

// holdCached reads the file at path into the page cache and keeps it there
// until the returned function is called: the replay drops the memory
// file's cache before each run (POSIX_FADV_DONTNEED), which skips pages
// some process maps, so a populated shared mapping here keeps the file
// warm through it.
func holdCached(path string) (func() error, error) {
	if err := pagecache.Warm(path); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("hold %s cached: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("hold %s cached: %w", path, err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("hold %s cached: mmap: %w", path, err)
	}
	return func() error {
		if err := unix.Munmap(m); err != nil {
			return fmt.Errorf("release %s: %w", path, err)
		}
		return nil
	}, nil
}
