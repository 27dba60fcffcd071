package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/snapbpf/snapbpf/internal/bench"
	"github.com/snapbpf/snapbpf/internal/catalog"
	"github.com/snapbpf/snapbpf/internal/functions"
	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/pyfn"
	"github.com/snapbpf/snapbpf/internal/record"
	"github.com/snapbpf/snapbpf/internal/replay"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// findCmd returns the command of the tree at path (e.g. "ws", "merge").
func findCmd(t *testing.T, root *cobra.Command, path ...string) *cobra.Command {
	t.Helper()
	c, rest, err := root.Find(path)
	if err != nil || len(rest) > 0 {
		t.Fatalf("no command %v: %v", path, err)
	}
	return c
}

// TestFlagAliases: each old flag name still sets the new flag's value,
// and help shows only the new name.
func TestFlagAliases(t *testing.T) {
	for _, tc := range []struct {
		cmd      []string
		old, new string
		value    string
	}{
		{[]string{"restore"}, "count", "concurrency", "3"},
		{[]string{"replay"}, "policy", "policies", "lazy,nora"},
		{[]string{"replay"}, "runs", "rounds", "4"},
		{[]string{"bench"}, "runs", "rounds", "4"},
		{[]string{"demo"}, "runs", "rounds", "4"},
	} {
		t.Run(strings.Join(tc.cmd, " ")+" --"+tc.old, func(t *testing.T) {
			root := newRootCmd()
			c := findCmd(t, root, tc.cmd...)
			if err := c.ParseFlags([]string{"--" + tc.old, tc.value}); err != nil {
				t.Fatalf("--%s %s: %v", tc.old, tc.value, err)
			}
			f := c.Flags().Lookup(tc.new)
			if f == nil {
				t.Fatalf("no flag --%s", tc.new)
			}
			if got := f.Value.String(); got != tc.value && got != "["+tc.value+"]" {
				t.Errorf("--%s %s set --%s to %q", tc.old, tc.value, tc.new, got)
			}
			if !c.Flags().Changed(tc.new) {
				t.Errorf("--%s does not count as --%s given", tc.old, tc.new)
			}

			root = newRootCmd()
			var out bytes.Buffer
			root.SetOut(&out)
			root.SetErr(&out)
			root.SetArgs(append(append([]string{}, tc.cmd...), "--help"))
			if err := root.Execute(); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), "--"+tc.new+" ") {
				t.Errorf("help does not list --%s:\n%s", tc.new, out.String())
			}
			if strings.Contains(out.String(), "--"+tc.old+" ") {
				t.Errorf("help lists the old name --%s:\n%s", tc.old, out.String())
			}
		})
	}
}

// runJSON runs the command line args and decodes its standard output into
// v, refusing fields v does not have: the output has v's fixed shape.
func runJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		t.Fatalf("%v: %v; stderr %s", args, err, errOut.String())
	}
	dec := json.NewDecoder(&out)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%v: output is not a %T: %v\n%s", args, v, err, out.String())
	}
	if dec.More() {
		t.Fatalf("%v: more than one JSON value on stdout", args)
	}
}

func TestFunctionsJSON(t *testing.T) {
	var list []functionInfo
	runJSON(t, &list, "functions", "--json")
	want := len(functions.Names()) + len(pyfn.Names())
	if len(list) != want {
		t.Fatalf("%d functions, want %d (Go and python)", len(list), want)
	}
	for _, f := range list {
		if c, err := catalog.Parse(f.Ref); f.Name == "" || f.GuestMiB <= 0 || err != nil || c.Name != f.Name || c.Runtime != f.Runtime {
			t.Errorf("entry %+v: ref parses to %+v, %v", f, c, err)
		}
	}
}

// writeSet writes a working set of mem with the given extents.
func writeSet(t *testing.T, mem, path string, ext ...pages.Extent) {
	t.Helper()
	id, err := wset.IdentifyFile(mem, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := wset.Write(path, &wset.Set{Mem: id, Extents: ext}); err != nil {
		t.Fatal(err)
	}
}

func TestWSMergeJSON(t *testing.T) {
	dir := t.TempDir()
	mem := filepath.Join(dir, "mem")
	if err := os.WriteFile(mem, bytes.Repeat([]byte{1}, 16*4096), 0o644); err != nil {
		t.Fatal(err)
	}
	a, b := filepath.Join(dir, "a.ws"), filepath.Join(dir, "b.ws")
	writeSet(t, mem, a, pages.Extent{Page: 0, N: 4})
	writeSet(t, mem, b, pages.Extent{Page: 2, N: 4})
	for _, common := range []bool{false, true} {
		out := filepath.Join(dir, "m.ws")
		args := []string{"ws", "merge", "--json", "--out", out, a, b}
		want := wsMergeReport{Out: out, Recordings: 2, Pages: 6, UnionPages: 6, CommonPages: 2}
		if common {
			args = append(args, "--common")
			want.Common, want.Pages = true, 2
		}
		var got wsMergeReport
		runJSON(t, &got, args...)
		if got != want {
			t.Errorf("%v: %+v, want %+v", args, got, want)
		}
	}
}

// TestRecordJSON: record prints one object type in both modes, with the
// common fields filled in each and only its own mode's part.
func TestRecordJSON(t *testing.T) {
	// --snapshot needs root and VMs: its report is converted here.
	r := &record.Report{Method: "ebpf", Pages: 10, Bytes: 40960, Extents: 2, Runs: 8, Path: "/s/wset/default.ws"}
	b, err := json.Marshal(snapshotRecordReport(r))
	if err != nil {
		t.Fatal(err)
	}
	var snap recordReport
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&snap); err != nil {
		t.Fatal(err)
	}
	if snap.Mode != "snapshot" || snap.Out != r.Path || snap.Pages != 10 || snap.Snapshot == nil || snap.Snapshot.Runs != 8 || snap.WorkingSet != nil {
		t.Errorf("record --snapshot --json: %s", b)
	}
	if strings.Contains(string(b), `"working_set"`) || strings.Contains(string(b), `"readahead_window_expired"`) {
		t.Errorf("record --snapshot --json has --mem fields: %s", b)
	}

	// --mem runs: mincore needs no BPF. Its command writes nothing to
	// stdout, which the command shares.
	if testing.Short() && os.Geteuid() != 0 {
		t.Skip("record --mem drops the file's page cache")
	}
	dir := t.TempDir()
	mem := filepath.Join(dir, "mem")
	if err := os.WriteFile(mem, bytes.Repeat([]byte{1}, 16*4096), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "x.ws")
	var cmdRep recordReport
	runJSON(t, &cmdRep, "record", "--mem", mem, "--out", out, "--method", "mincore", "--json", "--", "sh", "-c", "cat "+mem+" >/dev/null")
	if cmdRep.Mode != "command" || cmdRep.Out != out || cmdRep.Method != "mincore" || cmdRep.WorkingSet == nil || cmdRep.Snapshot != nil ||
		cmdRep.Pages != cmdRep.WorkingSet.Pages || cmdRep.Extents != cmdRep.WorkingSet.ExtentCount {
		t.Errorf("record --mem --json: %+v", cmdRep)
	}
}

// TestReplayJSONIsArray: replay --json prints an array for one policy as
// for several (the command needs root and a snapshot; its printer is
// tested).
func TestReplayJSONIsArray(t *testing.T) {
	var out bytes.Buffer
	if err := writeReplayJSON(&out, []*replay.Report{{Policy: "lazy"}}); err != nil {
		t.Fatal(err)
	}
	var reps []replay.Report
	if err := json.Unmarshal(out.Bytes(), &reps); err != nil || len(reps) != 1 || reps[0].Policy != "lazy" {
		t.Fatalf("one policy: %v, %+v\n%s", err, reps, out.String())
	}
}

// TestBenchSummaryJSON: bench --report-only --json prints the summary.
func TestBenchSummaryJSON(t *testing.T) {
	dir := t.TempDir()
	// Load gives an empty Results of the current format.
	res, err := bench.Load(filepath.Join(dir, bench.ResultsFile))
	if err != nil {
		t.Fatal(err)
	}
	res.Config, res.Sessions = bench.Reduced(), []bench.Session{{Cells: 3, Skipped: 1, Failed: 1}}
	res.Runs = []bench.Run{{}}
	if err := res.Save(filepath.Join(dir, bench.ResultsFile)); err != nil {
		t.Fatal(err)
	}
	var s benchSummary
	runJSON(t, &s, "bench", "--report-only", "--json", "--out", dir)
	want := benchSummary{Out: dir, Results: filepath.Join(dir, bench.ResultsFile), Report: filepath.Join(dir, bench.ReportFile), Runs: 1, Cells: 3, Skipped: 1, Failed: 1}
	if s != want {
		t.Errorf("%+v, want %+v", s, want)
	}
}

// TestRecordMemJSONAloneOnStdout: under --json, what record --mem's
// command prints goes to stderr, so stdout holds the JSON alone.
func TestRecordMemJSONAloneOnStdout(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("record --mem drops the file's page cache")
	}
	dir := t.TempDir()
	mem := filepath.Join(dir, "mem")
	if err := os.WriteFile(mem, bytes.Repeat([]byte{1}, 4*4096), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	saved := os.Stdout
	os.Stdout = stdout
	defer func() { os.Stdout = saved }()
	root := newRootCmd() // no SetOut: the real stdout, as in use
	var errOut bytes.Buffer
	root.SetErr(&errOut)
	root.SetArgs([]string{"record", "--mem", mem, "--out", filepath.Join(dir, "x.ws"), "--method", "mincore", "--json", "--",
		"sh", "-c", "echo the command speaks; cat " + mem + " >/dev/null"})
	err = root.Execute()
	os.Stdout = saved
	if err != nil {
		t.Fatalf("%v; stderr %s", err, errOut.String())
	}
	b, err := os.ReadFile(stdout.Name())
	if err != nil {
		t.Fatal(err)
	}
	var rep recordReport
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil || dec.More() || rep.Mode != "command" {
		t.Fatalf("stdout is not one record report (%v):\n%s", err, b)
	}
}

// TestDemoJSON: demo --json's comparison (the command needs root and VMs;
// its summary is tested) has one entry per policy, warm the basis.
func TestDemoJSON(t *testing.T) {
	rows := map[string][]vmReport{}
	for i, m := range demoModes {
		var v vmReport
		v.E2EMs = float64(100 * (i + 1))
		rows[m.name] = []vmReport{v}
	}
	b, err := json.Marshal(demoSummary("json", 1, 1, rows))
	if err != nil {
		t.Fatal(err)
	}
	var rep demoReport
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Policies) != len(demoModes) || rep.Policies[0].VsWarm != 1 || rep.Policies[3].VsWarm != 4 {
		t.Errorf("%s", b)
	}
}
