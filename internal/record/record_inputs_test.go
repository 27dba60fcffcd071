package record

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/vmm/qemu"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// TestRecordInputs records two inputs at once and each alone: the stored
// set is the union of the two single recordings, up to the guest's
// run-to-run variation, and counts 2 for the pages both touched.
func TestRecordInputs(t *testing.T) {
	img := needVM(t)
	root, err := rootDir()
	if err != nil {
		t.Fatal(err)
	}
	f := createSnapshot(t, img, "json", 8, filepath.Join(root, "json-inputs"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	rec := func(seeds ...uint64) *wset.Set {
		t.Helper()
		// No margin: the pages around what the refining run found
		// vary with it (up to 10% of the set per input), and would hide
		// what this test compares.
		o := Options{Runs: 2, Margin: -1}
		for _, s := range seeds {
			o.Inputs = append(o.Inputs, Input{Seed: s, Expected: f.want(t, s)})
		}
		var log bytes.Buffer
		o.Log = slog.New(slog.NewTextHandler(&log, nil))
		set, rep, err := Snapshot(ctx, &qemu.Driver{}, f.dir, o)
		if err != nil {
			t.Fatalf("record inputs %v: %v\n%s", seeds, err, log.String())
		}
		t.Logf("inputs %v: %d pages (each: %v), copy %.0f ms, recording %.0f ms", seeds, set.Pages(), rep.InputPages, rep.CopyMs, rep.RecordMs)
		return set
	}
	one, two := rec(1), rec(2)
	both := rec(1, 2)

	stored, err := wset.Read(f.dir.File(policy.WorkingSetFile))
	if err != nil {
		t.Fatal(err)
	}
	if stored.Inputs != 2 || stored.Pages() != both.Pages() {
		t.Fatalf("stored set: %d recordings, %d pages; want 2 and %d", stored.Inputs, stored.Pages(), both.Pages())
	}
	union, common, err := wset.Merge(one, two)
	if err != nil {
		t.Fatal(err)
	}
	extra, missing := minus(both, union), minus(union, both)
	t.Logf("two inputs: %d pages; union of the single recordings %d (common %d); %d extra, %d missing; counts %v",
		both.Pages(), union.Pages(), common.Pages(), extra, missing, stored.CountSummary())
	// Each recording runs the guest anew: a few percent of pages differ
	// between two recordings of one input (README: 0.1 to 3.3%).
	if extra*20 > union.Pages() || missing*20 > union.Pages() {
		t.Errorf("two-input set differs from the union of single recordings by %d extra and %d missing pages of %d: more than 5%%", extra, missing, union.Pages())
	}
	var twice int64
	for _, c := range stored.CountSummary() {
		if c.Count == 2 {
			twice = c.Pages
		}
	}
	if d := twice - common.Pages(); d*10 > common.Pages() || -d*10 > common.Pages() {
		t.Errorf("%d pages counted twice, but the single recordings share %d", twice, common.Pages())
	}
}
