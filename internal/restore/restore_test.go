package restore

// Tests of the pipeline on the fake VMM of package vmmtest: without root
// or QEMU, they run under go test -short.

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/funcvm"
	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/vmm"
	"github.com/snapbpf/snapbpf/internal/vmm/vmmtest"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// fakeSnapshot makes a snapshot directory on the fake VMM and opens it as
// a restore does.
func fakeSnapshot(t *testing.T) *snapshot.Dir {
	t.Helper()
	out := filepath.Join(t.TempDir(), "snap")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir, _, err := funcvm.CreateSnapshot(ctx, &vmmtest.Driver{}, vmmtest.Image(), funcvm.CreateOptions{
		Function: vmmtest.FastFunction, DataMiB: vmmtest.FastDataMiB, MemMiB: vmmtest.FastMemMiB, Out: out, FreePages: snapshot.FreePagesNone,
	})
	if err != nil {
		t.Fatalf("create a snapshot on the fake VMM: %v", err)
	}
	dir.Close()
	dir, err = snapshot.Open(out)
	if err != nil {
		t.Fatalf("open the snapshot: %v", err)
	}
	t.Cleanup(func() { dir.Close() })
	return dir
}

// fakeDriver is a driver whose restored guests hold the snapshot's
// function.
func fakeDriver(log *vmmtest.Log) *vmmtest.Driver {
	return &vmmtest.Driver{Log: log, Function: vmmtest.FastFunction, DataMiB: vmmtest.FastDataMiB}
}

// noLeaks fails the test if a machine of d is still running.
func noLeaks(t *testing.T, d *vmmtest.Driver) {
	t.Helper()
	for _, m := range d.Running() {
		t.Errorf("fake VM %d was never stopped", m.Index())
	}
}

// logHooks are hooks that log their calls, count Finish and can fail.
type logHooks struct {
	log                           *vmmtest.Log
	beginErr, startErr, finishErr error
	finished                      int
}

func (h *logHooks) Begin(context.Context) error { h.log.Add("begin"); return h.beginErr }
func (h *logHooks) Configure(*vmm.Config)       { h.log.Add("configure") }
func (h *logHooks) VMMStarted(context.Context, int) error {
	h.log.Add("vmm-started")
	return h.startErr
}
func (h *logHooks) Name() string    { return "logged" }
func (h *logHooks) Readahead() bool { return true }
func (h *logHooks) Finish() (policy.PrefetchStats, error) {
	h.log.Add("finish")
	h.finished++
	return policy.PrefetchStats{Bytes: 4096}, h.finishErr
}

// TestRunComputesExpected: without Config.Expected, Run computes the
// checksum on the host, checks every clone against it, reports how long
// the host took, restores Count clones and finishes the policy last.
func TestRunComputesExpected(t *testing.T) {
	dir := fakeSnapshot(t)
	log := &vmmtest.Log{}
	d := fakeDriver(log)
	h := &logHooks{log: log}
	res, err := Run(context.Background(), d, dir, Config{Hooks: h, Input: 3, Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	want, err := funcvm.Expect(vmmtest.FastFunction, vmmtest.FastDataMiB, 3)
	if err != nil {
		t.Fatal(err)
	}
	if res.Expected != want || res.HostFn <= 0 {
		t.Errorf("expected %q after %v on the host, want %q after some time", res.Expected, res.HostFn, want)
	}
	if len(res.VMs) != 2 || len(d.Machines()) != 2 {
		t.Fatalf("%d results of %d VMs, want 2 of 2", len(res.VMs), len(d.Machines()))
	}
	for _, v := range res.VMs {
		if !v.ResultOK || v.Checksum != want {
			t.Errorf("vm %d: checksum %s ok=%v, want %s", v.Index, v.Checksum, v.ResultOK, want)
		}
	}
	if res.Policy != "logged" || !res.Readahead || res.Prefetch.Bytes != 4096 {
		t.Errorf("result %+v: want the hooks' name, readahead and prefetch stats", res)
	}
	ev := log.Events()
	if h.finished != 1 || ev[len(ev)-1] != "finish" {
		t.Errorf("finished %d times, events %q: want once, last", h.finished, ev)
	}
	noLeaks(t, d)
}

// TestRunGivenExpected: a given checksum is used as it is (a wrong one
// fails every clone), and NoCheck checks nothing.
func TestRunGivenExpected(t *testing.T) {
	dir := fakeSnapshot(t)
	d := fakeDriver(nil)
	h := &logHooks{log: &vmmtest.Log{}}
	res, err := Run(context.Background(), d, dir, Config{Hooks: h, Input: 1, Expected: "wrong"})
	if err == nil || !strings.Contains(err.Error(), "want wrong") {
		t.Errorf("error %v, want a wrong checksum", err)
	}
	if res == nil || res.HostFn != 0 || res.VMs[0].ResultOK {
		t.Errorf("result %+v: want the clone's failed check, no host run", res)
	}
	res, err = Run(context.Background(), d, dir, Config{Hooks: h, Input: 1, NoCheck: true})
	if err != nil || res.Expected != "" || !res.VMs[0].ResultOK || res.HostFn != 0 {
		t.Errorf("NoCheck: %+v, %v: want an unchecked success", res, err)
	}
	if h.finished != 2 {
		t.Errorf("finished %d times in 2 runs", h.finished)
	}
	noLeaks(t, d)
}

// TestRunFinishesOnErrors: whatever fails once the policy is ready, its
// prefetch is finished and the failure is reported.
func TestRunFinishesOnErrors(t *testing.T) {
	dir := fakeSnapshot(t)
	boom := errors.New("boom")
	for _, tc := range []struct {
		name    string
		hooks   func(*logHooks)
		faults  func(*vmmtest.Machine, vmmtest.Op) error
		c       Config
		results bool // whether clones ran and have results
		want    string
	}{
		{name: "begin", hooks: func(h *logHooks) { h.beginErr = boom }, want: "boom"},
		{name: "vmm started", hooks: func(h *logHooks) { h.startErr = boom }, results: true, want: "vm 0: boom"},
		{name: "finish", hooks: func(h *logHooks) { h.finishErr = boom }, results: true, want: "policy logged: boom"},
		{name: "start", faults: func(_ *vmmtest.Machine, op vmmtest.Op) error {
			if op == vmmtest.OpStart {
				return boom
			}
			return nil
		}, results: true, want: "start fake VMM: boom"},
		{name: "cold and warm", c: Config{Cold: true, Warm: true}, want: "cold and warm at once"},
		{name: "invoke timeout", c: Config{Timeouts: funcvm.Timeouts{Invoke: time.Nanosecond}}, results: true, want: "deadline exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := &vmmtest.Log{}
			d := fakeDriver(log)
			d.Faults = tc.faults
			h := &logHooks{log: log}
			if tc.hooks != nil {
				tc.hooks(h)
			}
			c := tc.c
			c.Hooks, c.Input = h, 1
			res, err := Run(context.Background(), d, dir, c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one saying %q", err, tc.want)
			}
			if got := res != nil; got != tc.results {
				t.Errorf("result %+v: want one %v", res, tc.results)
			}
			if h.finished != 1 {
				t.Errorf("finished %d times, want once", h.finished)
			}
			noLeaks(t, d)
		})
	}
}

// TestRunPolicies: a named policy is prepared from the snapshot (with the
// working set override for snapbpf), its name and readahead reported and
// its prefetch waited for; a bad name or a missing set fails before any
// VMM starts.
func TestRunPolicies(t *testing.T) {
	dir := fakeSnapshot(t)
	mem := dir.MemPath()
	id, err := wset.IdentifyFile(mem, dir.Manifest.ID)
	if err != nil {
		t.Fatal(err)
	}
	ws := filepath.Join(t.TempDir(), "test.ws")
	if err := wset.Write(ws, &wset.Set{Mem: id, Extents: []pages.Extent{{Page: 0, N: 16}, {Page: 64, N: 8}}}); err != nil {
		t.Fatal(err)
	}
	d := fakeDriver(nil)
	res, err := Run(context.Background(), d, dir, Config{Policy: policy.Lazy, Input: 1, Cold: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Policy != policy.Lazy || !res.Readahead || res.Prefetch.Bytes != 0 {
		t.Errorf("lazy: %+v", res)
	}
	res, err = Run(context.Background(), d, dir, Config{Policy: policy.SnapBPF, WorkingSet: ws, Input: 1, Cold: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Policy != policy.SnapBPF || !res.Readahead || res.Prefetch.Bytes != 24*pages.Size {
		t.Errorf("snapbpf: policy %s, readahead %v, prefetched %d bytes; want snapbpf, true, %d", res.Policy, res.Readahead, res.Prefetch.Bytes, 24*pages.Size)
	}
	n := len(d.Machines())
	for _, c := range []Config{
		{Policy: "eager"},
		{Policy: policy.SnapBPF, WorkingSet: filepath.Join(t.TempDir(), "none.ws")},
		{Policy: policy.Lazy, PolicyOptions: policy.Options{NoReadahead: true}},
	} {
		if res, err := Run(context.Background(), d, dir, c); err == nil || res != nil {
			t.Errorf("%+v: %+v, %v: want an error", c, res, err)
		}
	}
	if len(d.Machines()) != n {
		t.Errorf("a failed policy started VMs")
	}
	noLeaks(t, d)
}

// TestRunColdWarm: Cold and Warm reach the restore: the memory file is
// dropped from, or read into, the page cache first (the fake VMM reads
// none of it).
func TestRunColdWarm(t *testing.T) {
	dir := fakeSnapshot(t)
	mem := dir.MemPath()
	d := fakeDriver(nil)
	cached := func() int64 {
		t.Helper()
		n, err := pagecache.Cached(mem)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if _, err := Run(context.Background(), d, dir, Config{Policy: policy.Lazy, Input: 1, Warm: true}); err != nil {
		t.Fatal(err)
	}
	if n := cached(); n != vmmtest.FastMemMiB<<20/pages.Size {
		t.Errorf("after a warm restore %d pages cached, want all %d", n, vmmtest.FastMemMiB<<20/pages.Size)
	}
	if _, err := Run(context.Background(), d, dir, Config{Policy: policy.Lazy, Input: 1, Cold: true}); err != nil {
		t.Fatal(err)
	}
	if n := cached(); n != 0 {
		t.Errorf("after a cold restore %d pages cached, want none", n)
	}
	noLeaks(t, d)
}

// TestRunPassesThrough: the memory file override (a recording's private
// copy) and the accelerator reach the VMM's configuration.
func TestRunPassesThrough(t *testing.T) {
	dir := fakeSnapshot(t)
	data, err := os.ReadFile(dir.MemPath())
	if err != nil {
		t.Fatal(err)
	}
	mem := filepath.Join(t.TempDir(), "copy.mem")
	if err := os.WriteFile(mem, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(mem)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := fakeDriver(nil)
	res, err := Run(context.Background(), d, dir, Config{
		Policy: policy.Lazy, Input: 1, Cold: true, Accel: "kvm", MemPath: mem, MemFile: f,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.VMs) != 1 {
		t.Fatalf("%d results, want 1", len(res.VMs))
	}
	if c := d.Machines()[0].Config(); c.MemPath != mem || c.MemFile != f || c.Accel != "kvm" {
		t.Errorf("VMM config: memory %s (%v), accel %s; want %s (the opened copy), kvm", c.MemPath, c.MemFile, c.Accel, mem)
	}
	noLeaks(t, d)
}
