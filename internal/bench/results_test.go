package bench

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestResultsRoundTrip(t *testing.T) {
	cfg := Reduced()
	cfg.Notes = []string{"other jobs ran QEMU"}
	res := fakeResults(cfg)
	res.Runs[0].Error = "vm 0: boom"
	path := filepath.Join(t.TempDir(), ResultsFile)
	if err := res.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, res) {
		t.Errorf("round trip changed the results:\n got %+v\nwant %+v", got.Runs[0], res.Runs[0])
	}
	// The raw file carries the fields a reader needs without the code.
	b, _ := os.ReadFile(path)
	for _, field := range []string{`"machine"`, `"kernel"`, `"vmm"`, `"accel"`, `"disk"`, `"policy"`, `"function"`,
		`"input"`, `"n"`, `"metrics"`, `"e2e_ms"`, `"vms"`} {
		if !strings.Contains(string(b), field) {
			t.Errorf("results.json lacks %s", field)
		}
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*tmp*"))
	if len(leftovers) > 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
}

func TestLoadMissingAndBad(t *testing.T) {
	dir := t.TempDir()
	res, err := Load(filepath.Join(dir, "none.json"))
	if err != nil || len(res.Runs) != 0 {
		t.Fatalf("Load(missing) = %v, %v; want empty results", res, err)
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"format": 99}`), 0o644)
	if _, err := Load(bad); err == nil {
		t.Error("Load accepted format 99")
	}
	os.WriteFile(bad, []byte(`{"format": 1, "runs": [`), 0o644)
	if _, err := Load(bad); err == nil {
		t.Error("Load accepted truncated JSON")
	}
}

func TestFinishedAndPut(t *testing.T) {
	var r Results
	k := Key{ExpLatency, "json", "lazy", 1, 1, 0}
	r.Put(Run{Key: k, Error: "failed"})
	if r.Finished(k) {
		t.Error("a failed cell counts as finished")
	}
	r.Put(Run{Key: k, Metrics: map[string]float64{MetricE2EMs: 5}})
	if !r.Finished(k) || len(r.Runs) != 1 {
		t.Errorf("retry did not replace the failed run: %+v", r.Runs)
	}
	if got := r.Select(ExpLatency, "json", "", 0); len(got) != 1 {
		t.Errorf("Select = %v", got)
	}
}

// fakeBench is a bench whose cells are measured by fake.
func fakeBench(t *testing.T, cfg Config, fake func(ctx context.Context, k Key, run *Run) error) *bench {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return &bench{cfg: cfg, machine: fakeMachine, path: filepath.Join(cfg.Out, ResultsFile), measure: fake}
}

// TestResume interrupts a session partway through, then checks that the
// next session measures only what is missing (and the failed cell again).
func TestResume(t *testing.T) {
	cfg := Reduced()
	cfg.Functions = []string{"json", "alloc"}
	cfg.Runs = 2
	cfg.Out = t.TempDir()
	total := len(Plan(cfg))
	failing := Key{ExpLatency, "json", "nora", 2, 1, 0} // among the first 10

	ctx, cancel := context.WithCancel(context.Background())
	var first []Key
	b := fakeBench(t, cfg, func(ctx context.Context, k Key, run *Run) error {
		if len(first) == 10 {
			cancel() // interrupted during the 11th cell
			return ctx.Err()
		}
		first = append(first, k)
		run.Metrics = fakeMetrics(k)
		if k == failing {
			return errors.New("vm 1: checksum mismatch")
		}
		return nil
	})
	if _, err := b.run(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted session returned %v", err)
	}
	saved, err := Load(b.path)
	if err != nil {
		t.Fatal(err)
	}
	if len(saved.Runs) != 10 {
		t.Fatalf("after the interruption results.json holds %d runs, want 10", len(saved.Runs))
	}
	if _, err := os.Stat(filepath.Join(cfg.Out, ReportFile)); err == nil {
		t.Error("an interrupted session wrote the report")
	}

	var second []Key
	b = fakeBench(t, cfg, func(ctx context.Context, k Key, run *Run) error {
		second = append(second, k)
		run.Metrics = fakeMetrics(k)
		return nil
	})
	res, err := b.run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	done := map[Key]bool{}
	for _, k := range first {
		done[k] = k != failing
	}
	for _, k := range second {
		if done[k] {
			t.Errorf("cell %s measured again", k)
		}
	}
	if want := total - 10 + 1; len(second) != want {
		t.Errorf("second session measured %d cells, want %d (the rest and the failed one)", len(second), want)
	}
	if len(res.Runs) != total || len(res.Sessions) != 2 {
		t.Errorf("results: %d runs in %d sessions, want %d in 2", len(res.Runs), len(res.Sessions), total)
	}
	if s := res.Sessions[1]; s.Skipped != 9 || s.Cells != total-9 || s.Failed != 0 {
		t.Errorf("second session = %+v", s)
	}
	if _, err := os.Stat(filepath.Join(cfg.Out, ReportFile)); err != nil {
		t.Errorf("no report after the full session: %v", err)
	}
}

func TestResumeRefusesOtherSettings(t *testing.T) {
	cfg := Reduced()
	cfg.Functions, cfg.Runs, cfg.Experiments = []string{"json"}, 1, []string{ExpPrefetch}
	cfg.Out = t.TempDir()
	fake := func(ctx context.Context, k Key, run *Run) error { run.Metrics = fakeMetrics(k); return nil }
	if _, err := fakeBench(t, cfg, fake).run(context.Background()); err != nil {
		t.Fatal(err)
	}
	cfg.Input = 7
	if _, err := fakeBench(t, cfg, fake).run(context.Background()); !errors.Is(err, ErrOtherResults) {
		t.Errorf("mixing inputs: err = %v", err)
	}
}
