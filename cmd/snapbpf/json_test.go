package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/funcvm"
	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/prefetch"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/trace"
	"github.com/snapbpf/snapbpf/internal/vmm"
	"github.com/snapbpf/snapbpf/internal/vmm/vmmtest"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// TestJSONShapes: each command a script reads prints, under --json, one
// JSON value of its documented type and nothing else on stdout (runJSON
// refuses unknown fields and a second value). restore runs on the fake
// VMM (TestRestoreJSON); the commands that need real VMs or apt (trace,
// snapshot create, image build, demo) are not run here; their types are
// named beside them (traceReport, snapshotCreateReport, guest.Image,
// demoReport).
func TestJSONShapes(t *testing.T) {
	t.Setenv("SNAPBPF_HOME", t.TempDir())
	dir := t.TempDir()
	mem := filepath.Join(dir, "mem")
	if err := os.WriteFile(mem, bytes.Repeat([]byte{1}, 16*4096), 0o644); err != nil {
		t.Fatal(err)
	}
	ws := filepath.Join(dir, "a.ws")
	writeSet(t, mem, ws, pages.Extent{Page: 2, N: 3})

	id, err := wset.IdentifyFile(mem, "")
	if err != nil {
		t.Fatal(err)
	}
	tracePath := filepath.Join(dir, "t.trace")
	if err := trace.Write(tracePath, &trace.Trace{
		Meta:   trace.Meta{Mem: id, Function: "json", Input: 1, Created: time.Unix(1700000000, 0).UTC()},
		Events: []trace.Event{{TimeNs: 100, Page: 2, Op: trace.OpRead, Flags: trace.FlagMajor}},
	}); err != nil {
		t.Fatal(err)
	}
	snap := fakeSnapshot(t, filepath.Join(dir, "snap"))

	for _, tc := range []struct {
		name  string
		args  []string
		into  func() any
		check func(t *testing.T, v any)
	}{
		{"version", []string{"version", "--json"}, func() any { return new(versionReport) },
			func(t *testing.T, v any) {
				if r := v.(*versionReport); r.Module == "" || r.GoVersion == "" {
					t.Errorf("%+v", r)
				}
			}},
		{"ws show", []string{"ws", "show", "--json", ws}, func() any { return new(wset.Summary) },
			func(t *testing.T, v any) {
				if s := v.(*wset.Summary); s.Pages != 3 || s.ExtentCount != 1 {
					t.Errorf("%+v", s)
				}
			}},
		{"trace show", []string{"trace", "show", "--json", tracePath}, func() any { return new(traceShowReport) },
			func(t *testing.T, v any) {
				if r := v.(*traceShowReport); r.Meta.Function != "json" || r.Summary.Pages != 1 {
					t.Errorf("%+v", r)
				}
			}},
		{"snapshot inspect", []string{"snapshot", "inspect", "--json", snap.Path}, func() any { return new(snapshot.Description) },
			func(t *testing.T, v any) {
				if d := v.(*snapshot.Description); d.Path != snap.Path || d.Manifest.Function != "json" {
					t.Errorf("%+v", d)
				}
			}},
		{"snapshot zeroscan", []string{"snapshot", "zeroscan", "--json", snap.Path}, func() any { return new(zeroscanReport) },
			func(t *testing.T, v any) {
				if r := v.(*zeroscanReport); r.Snapshot != snap.Path || r.Function != "json" || r.MemMiB != 16 {
					t.Errorf("%+v", r)
				}
			}},
		{"prefetch", []string{"prefetch", "--json", "--mem", mem, "--ws", ws}, func() any { return new(prefetch.Stats) },
			func(t *testing.T, v any) {
				if s := v.(*prefetch.Stats); s.Bytes != 3*4096 {
					t.Errorf("%+v", s)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := tc.into()
			runJSON(t, v, tc.args...)
			tc.check(t, v)
		})
	}
}

// TestCheckJSON: check --json prints its report whether or not the checks
// pass (it exits non-zero when one fails; a user who is not root fails
// some).
func TestCheckJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: check loads BPF programs and probes QEMU (about a second)")
	}
	t.Setenv("SNAPBPF_HOME", t.TempDir())
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs([]string{"check", "--json"})
	runErr := root.Execute()
	dec := json.NewDecoder(&out)
	dec.DisallowUnknownFields()
	var r checkReport
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("check --json (exit error %v): stdout is not a checkReport: %v\n%s", runErr, err, out.String())
	}
	if dec.More() {
		t.Fatal("more than one JSON value on stdout")
	}
	if len(r.Checks) == 0 || r.OK != (runErr == nil) {
		t.Errorf("report %+v with exit error %v", r, runErr)
	}
}

// TestRestoreJSON runs restore --json on the fake VMM (the real agent over
// a pipe): one restoreReport with a verified result per clone.
func TestRestoreJSON(t *testing.T) {
	asUser(t, 0) // the fake VMM needs no privilege; the root check would stop it
	t.Setenv("SNAPBPF_HOME", t.TempDir())
	const fn, dataMiB = "linpack", 1 // initialises and invokes in milliseconds
	out := filepath.Join(t.TempDir(), "snap")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir, _, err := funcvm.CreateSnapshot(ctx, &vmmtest.Driver{}, vmmtest.Image(), funcvm.CreateOptions{
		Function: fn, DataMiB: dataMiB, MemMiB: 4, Out: out, FreePages: snapshot.FreePagesNone,
	})
	if err != nil {
		t.Fatalf("create a snapshot on the fake VMM: %v", err)
	}
	dir.Close()
	d := &vmmtest.Driver{Function: fn, DataMiB: dataMiB}
	saved := restoreDriver
	restoreDriver = func() vmm.Driver { return d }
	t.Cleanup(func() { restoreDriver = saved })

	var rep restoreReport
	runJSON(t, &rep, "restore", "--snapshot", out, "--policy", "lazy", "--concurrency", "2", "--json")
	if rep.Policy != "lazy" || rep.Function != fn || rep.Count != 2 || len(rep.VMs) != 2 {
		t.Fatalf("%+v", rep)
	}
	for _, v := range rep.VMs {
		if !v.ResultOK || v.Error != "" || v.Policy != "lazy" {
			t.Errorf("clone %+v", v)
		}
	}
	for _, m := range d.Running() {
		t.Errorf("fake VM %d was never stopped", m.Index())
	}
}
