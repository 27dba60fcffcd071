package bench

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/guest"
	"github.com/snapbpf/snapbpf/internal/progress"
	"github.com/snapbpf/snapbpf/internal/testenv"
)

// TestMain removes the shared test directory once every test has run: two
// tests here use it (each removing it made the second fail).
func TestMain(m *testing.M) {
	testenv.Run(m)
}

// TestSmoke runs the bench for real on the smallest set: json with 4 MiB
// of data, one run, N=1, every policy and experiment.
func TestSmoke(t *testing.T) {
	img := testenv.NeedVM(t)
	if _, err := exec.LookPath("fio"); err != nil {
		t.Fatalf("fio not installed (make deps installs it): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	cfg := Reduced()
	cfg.Functions, cfg.DataMiB, cfg.Runs, cfg.Concurrency = []string{"json"}, 4, 1, []int{1}
	cfg.ScatterFractions = []float64{0.5}
	cfg.Out = t.TempDir()
	cfg.SnapshotDir = filepath.Join(t.TempDir(), "snapshots")
	cfg.Image = img
	cfg.Log = testLog(t)
	steps := &countingMeter{Meter: progress.Log(cfg.Log)}
	cfg.Progress = steps
	res, err := Execute(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	keys := Plan(cfg)
	if steps.jobs != 1 || steps.total != len(keys) || steps.steps != len(keys) || !steps.done {
		t.Errorf("progress: %d jobs of %d steps, %d steps shown, done %v; want 1 job of %d cells, each shown, done",
			steps.jobs, steps.total, steps.steps, steps.done, len(keys))
	}
	for _, k := range keys {
		if !res.Finished(k) {
			t.Errorf("cell %s not finished", k)
		}
	}
	saved, err := Load(filepath.Join(cfg.Out, ResultsFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(saved.Runs) != len(keys) {
		t.Errorf("results.json has %d runs, want %d", len(saved.Runs), len(keys))
	}
	for _, r := range saved.Runs {
		if r.Machine.Kernel == "" || r.Machine.VMM == "" || r.SnapshotID == "" || r.DataMiB != 4 {
			t.Errorf("run %s lacks its context: %+v", r.Key, r)
		}
		switch r.Experiment {
		case ExpLatency, ExpBreakdown:
			if len(r.VMs) != r.N || r.Metrics[MetricE2EMs] <= 0 || r.Metrics[MetricCacheBytes] <= 0 {
				t.Errorf("run %s: %d VMs, metrics %v", r.Key, len(r.VMs), r.Metrics)
			}
		case ExpPrefetch:
			if r.Metrics[MetricBytes] <= 0 || r.Metrics[MetricMBps] <= 0 {
				t.Errorf("run %s: metrics %v", r.Key, r.Metrics)
			}
		case ExpTrace:
			if r.Metrics[MetricTracePages] <= 0 || r.Source != SourceVM {
				t.Errorf("run %s: source %q, metrics %v", r.Key, r.Source, r.Metrics)
			}
		case ExpReplay, ExpScatter:
			if r.Replay == nil || r.Metrics[MetricE2EMs] <= 0 || r.Source != SourceReplay {
				t.Errorf("run %s: source %q, metrics %v", r.Key, r.Source, r.Metrics)
			}
		}
	}
	// Prefetch and fio read the same requests (fio may leave up to 1%
	// uncached, see fioResult).
	pre, fio := saved.Select(ExpPrefetch, "json", SeriesPrefetch, 1), saved.Select(ExpPrefetch, "json", SeriesFio, 1)
	if len(pre) == 1 && len(fio) == 1 {
		pb, fb := pre[0].Metrics[MetricBytes], fio[0].Metrics[MetricBytes]
		if fb > pb || fb < 0.99*pb || pre[0].Metrics[MetricRequests] != fio[0].Metrics[MetricRequests] {
			t.Errorf("prefetch read %v bytes in %v requests, fio %v in %v", pre[0].Metrics[MetricBytes], pre[0].Metrics[MetricRequests],
				fio[0].Metrics[MetricBytes], fio[0].Metrics[MetricRequests])
		}
	}
	if _, err := os.Stat(filepath.Join(cfg.SnapshotDir, "json", otherWSFile(cfg.otherInput()))); err != nil {
		t.Errorf("no working set for snapbpf-other: %v", err)
	}
	// Warm keeps the memory file cached through the replay's drop: no
	// major faults on data pages.
	warm, lazy := saved.Select(ExpReplay, "json", PolicyWarm, 1), saved.Select(ExpReplay, "json", "lazy", 1)
	if len(warm) == 1 && len(lazy) == 1 && warm[0].Metrics[MetricReadBytes] >= lazy[0].Metrics[MetricReadBytes] {
		t.Errorf("warm replay read %v bytes, lazy %v", warm[0].Metrics[MetricReadBytes], lazy[0].Metrics[MetricReadBytes])
	}
	if _, err := os.Stat(filepath.Join(cfg.SnapshotDir, "json", traceFile(cfg.Input))); err != nil {
		t.Errorf("no trace: %v", err)
	}
	if st, err := os.Stat(filepath.Join(cfg.Out, ReportFile)); err != nil || st.Size() == 0 {
		t.Errorf("report.md: %v", err)
	}

	// A second session finds everything done and measures nothing.
	res, err = Execute(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s := res.Sessions[len(res.Sessions)-1]; s.Cells != 0 || s.Skipped != len(keys) {
		t.Errorf("second session = %+v, want every cell skipped", s)
	}
}

// testLog sends diagnostics to the test's output.
func testLog(t *testing.T) *slog.Logger { return slog.New(slog.NewTextHandler(t.Output(), nil)) }

// countingMeter counts what a bench shows of its progress, and logs it.
type countingMeter struct {
	progress.Meter
	jobs, total, steps int
	done               bool
}

func (m *countingMeter) Start(name string, total int) progress.Job {
	m.jobs++
	m.total = total
	return countingJob{m, m.Meter.Start(name, total)}
}

type countingJob struct {
	m *countingMeter
	progress.Job
}

func (j countingJob) Step(what string) { j.m.steps++; j.Job.Step(what) }
func (j countingJob) Done()            { j.m.done = true; j.Job.Done() }

// TestSmokePython runs the bench on a python function for real: its
// snapshot from the python image, a working set recorded on the other
// input shape, one restore with it on the measured shape, verified by the
// host's runner, the pages that restore brought in for nothing, and the
// function's trace replayed under every replay policy, REAP and FaaSnap
// included.
func TestSmokePython(t *testing.T) {
	img := testenv.NeedPython(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cfg := Reduced()
	cfg.Functions, cfg.Runs, cfg.Concurrency = []string{"python:hello"}, 1, []int{1}
	cfg.Policies, cfg.Experiments = []string{PolicySnapBPFOther}, []string{ExpLatency, ExpReplay}
	cfg.Out = t.TempDir()
	cfg.SnapshotDir = filepath.Join(t.TempDir(), "snapshots")
	cfg.Image, cfg.Images = testenv.NeedVM(t), map[string]*guest.Image{"python": img}
	cfg.Log = testLog(t)
	res, err := Execute(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	runs := res.Select(ExpLatency, "python:hello", PolicySnapBPFOther, 1)
	if len(runs) != 1 {
		t.Fatalf("%d runs of python:hello under %s", len(runs), PolicySnapBPFOther)
	}
	r := runs[0]
	if len(r.VMs) != 1 || !r.VMs[0].ResultOK || r.Metrics[MetricTouchedPages] < 100 {
		t.Errorf("run: %+v", r)
	}
	for _, m := range []string{MetricUntouchedPages, MetricWSUntouched} {
		if _, ok := r.Metrics[m]; !ok {
			t.Errorf("run has no %s metric: %v", m, r.Metrics)
		}
	}
	if r.Metrics[MetricWSPages] < 100 || r.Metrics[MetricWSUntouched] > r.Metrics[MetricWSPages] {
		t.Errorf("working set of %.0f pages, %.0f of them untouched", r.Metrics[MetricWSPages], r.Metrics[MetricWSUntouched])
	}
	t.Logf("e2e %.0f ms, guest fn %.0f ms, %.0f pages touched, %.0f untouched; %.0f of the working set's %.0f pages untouched", r.Metrics[MetricE2EMs], r.Metrics[MetricGuestFnMs],
		r.Metrics[MetricTouchedPages], r.Metrics[MetricUntouchedPages], r.Metrics[MetricWSUntouched], r.Metrics[MetricWSPages])
	for _, pol := range ReplayPolicies() {
		rp := res.Select(ExpReplay, "python:hello", pol, 1)
		if len(rp) != 1 || rp[0].Metrics[MetricE2EMs] <= 0 || rp[0].Replay == nil {
			t.Errorf("replay under %s: %+v", pol, rp)
		}
	}
	md, err := os.ReadFile(filepath.Join(cfg.Out, ReportFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), "| python:hello |") {
		t.Errorf("report has no python:hello row:\n%s", md)
	}
}
