package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/snapbpf/snapbpf/internal/logging"
	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/progress"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/trace"
	"github.com/snapbpf/snapbpf/internal/vmm"
	"github.com/snapbpf/snapbpf/internal/vmm/qemu"
)

// bench is one session of a bench.
type bench struct {
	cfg      Config
	driver   vmm.Driver
	accel    string
	machine  Machine
	res      *Results
	path     string
	snaps    map[string]*snapshot.Dir // by function/free page mode
	recorded map[string]bool          // snapshot IDs with this bench's working set
	traces   map[string]*trace.Trace  // by snapshot ID
	sums     map[string]hostResult    // expected results by snapshot ID/input
	// measure fills one cell's run; tests replace it.
	measure func(ctx context.Context, k Key, run *Run) error
}

// Execute measures every cell of cfg that cfg.Out/results.json does not hold
// yet, saving the results after each cell, then writes the report and the
// plots. Failed cells are kept with their error and tried again by the
// next session; the returned error counts them.
func Execute(ctx context.Context, cfg Config) (*Results, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if cfg.Image == nil {
		return nil, errors.New("bench: no guest image")
	}
	if cfg.SnapshotDir == "" {
		cfg.SnapshotDir = filepath.Join(cfg.Out, "snapshots")
	}
	var err error
	// Absolute paths: the VMM's mappings are matched by path in /proc.
	if cfg.Out, err = filepath.Abs(cfg.Out); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if cfg.SnapshotDir, err = filepath.Abs(cfg.SnapshotDir); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	for _, d := range []string{cfg.Out, cfg.SnapshotDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
	}
	driver := cfg.Driver
	if driver == nil {
		driver = &qemu.Driver{}
	}
	b := &bench{
		cfg: cfg, driver: driver, accel: vmm.DetectAccel(),
		path: filepath.Join(cfg.Out, ResultsFile), snaps: map[string]*snapshot.Dir{}, recorded: map[string]bool{},
		traces: map[string]*trace.Trace{}, sums: map[string]hostResult{},
	}
	b.measure = b.measureVM
	b.machine = DetectMachine(ctx, b.driver, b.accel, cfg.SnapshotDir)
	b.log().Info("bench: machine", "machine", b.machine)
	return b.run(ctx)
}

// run is a session: load the results, measure what is missing, report.
func (b *bench) run(ctx context.Context) (*Results, error) {
	var err error
	if b.res, err = Load(b.path); err != nil {
		return nil, err
	}
	if err := compatible(b.res.Config, b.cfg); err != nil {
		return nil, fmt.Errorf("bench: %s: %w", b.path, err)
	}
	b.res.Config = b.cfg
	b.res.Sessions = append(b.res.Sessions, Session{Start: time.Now().UTC()})
	cur := &b.res.Sessions[len(b.res.Sessions)-1]
	keys := Plan(b.cfg)
	for _, k := range keys {
		if b.res.Finished(k) {
			cur.Skipped++
		}
	}
	if cur.Skipped > 0 {
		b.log().Info("bench: resuming", "done", cur.Skipped, "cells", len(keys))
	}
	runErr := b.runCells(ctx, keys, cur)
	cur.End = time.Now().UTC()
	if err := b.save(); err != nil {
		return b.res, errors.Join(runErr, err)
	}
	if runErr != nil && ctx.Err() != nil {
		return b.res, runErr
	}
	if err := WriteReport(b.res, b.cfg.Out); err != nil {
		return b.res, errors.Join(runErr, err)
	}
	b.log().Info("bench: wrote results, report and plots", "results", b.path, "report", filepath.Join(b.cfg.Out, ReportFile))
	return b.res, runErr
}

// runCells measures the unfinished cells of keys in order.
func (b *bench) runCells(ctx context.Context, keys []Key, cur *Session) error {
	job := progress.Or(b.cfg.Progress).Start("bench", len(keys)-cur.Skipped)
	defer job.Done()
	for i, k := range keys {
		if b.res.Finished(k) {
			continue
		}
		job.Step(k.String())
		run := b.cell(ctx, k)
		if ctx.Err() != nil {
			// An interrupted cell measured nothing worth keeping.
			return ctx.Err()
		}
		b.res.Put(run)
		cur.Cells++
		if !run.OK() {
			cur.Failed++
		}
		cur.End = time.Now().UTC()
		if err := b.save(); err != nil {
			return err
		}
		if run.OK() {
			b.log().Info("bench: cell", "cell", fmt.Sprintf("%d/%d", i+1, len(keys)), "key", k.String(), "result", describe(run))
		} else {
			b.log().Warn("bench: cell failed", "cell", fmt.Sprintf("%d/%d", i+1, len(keys)), "key", k.String(), "err", run.Error)
		}
	}
	if cur.Failed > 0 {
		return fmt.Errorf("bench: %d cells failed (kept in %s with their errors; run again to retry them)", cur.Failed, b.path)
	}
	return nil
}

func (b *bench) save() error { return b.res.Save(b.path) }

// cell measures one cell. Errors end up in the run.
func (b *bench) cell(ctx context.Context, k Key) Run {
	run := Run{
		Key: k, Machine: b.machine, Input: b.cfg.Input, DataMiB: b.cfg.dataMiB(k.Function),
		FreePages: snapshot.FreePagesReport, Cache: "cold", Start: time.Now().UTC(), LoadAvg: loadAvg(),
		Metrics: map[string]float64{}, Source: sourceOf(k.Experiment),
	}
	if k.Experiment == ExpBreakdown {
		run.FreePages = snapshot.FreePagesNone
	}
	if k.Policy == PolicyWarm {
		run.Cache = "warm"
	}
	if k.Policy == PolicySnapBPFOther {
		run.WSInput = b.cfg.otherInput()
	} else if k.Policy == policy.SnapBPF && k.Experiment == ExpLatency || k.Experiment == ExpPrefetch {
		run.WSInput = b.cfg.Input
	}
	err := b.measure(ctx, k, &run)
	run.WallMs = ms(time.Since(run.Start))
	if err != nil {
		run.Error = err.Error()
	}
	return run
}

// measureVM measures a cell on real VMs.
func (b *bench) measureVM(ctx context.Context, k Key, run *Run) error {
	d, err := b.snapshot(ctx, k.Function, run.FreePages)
	if err != nil {
		return err
	}
	// Preparing the snapshot can take a while: time only the cell.
	run.Start, run.LoadAvg = time.Now().UTC(), loadAvg()
	run.SnapshotID, run.MemMiB = d.Manifest.ID, d.Manifest.MemMiB
	switch k.Experiment {
	case ExpLatency, ExpBreakdown:
		return b.restore(ctx, d, k, run)
	case ExpPrefetch:
		return b.prefetch(ctx, d, k, run)
	case ExpTrace:
		return b.traceCell(ctx, d, run)
	case ExpReplay, ExpScatter:
		return b.replayCell(ctx, d, k, run)
	}
	return fmt.Errorf("unknown experiment %q", k.Experiment)
}

// describe is a run's progress line.
func describe(r Run) string {
	if !r.OK() {
		return "FAILED: " + r.Error
	}
	m := r.Metrics
	if r.Experiment == ExpTrace {
		return fmt.Sprintf("%.0f pages (%.0f holes), slowdown %.1fx; %s", m[MetricTracePages], m[MetricTraceHoles], m[MetricTraceSlowdown], r.Detail)
	}
	if r.Experiment == ExpPrefetch {
		return fmt.Sprintf("%.1f MiB in %.0f ms (%.0f MB/s)", m[MetricBytes]/(1<<20), m[MetricMs], m[MetricMBps])
	}
	s := fmt.Sprintf("%.0f ms", m[MetricE2EMs])
	if r.N > 1 {
		s += fmt.Sprintf(" (slowest %.0f ms)", m[MetricE2EMaxMs])
	}
	return s + fmt.Sprintf(", memory %.0f MiB", m[MetricTotalBytes]/(1<<20))
}

// log is where the bench's diagnostics go.
func (b *bench) log() *slog.Logger { return logging.Or(b.cfg.Log) }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
