package funcvm

// Tests of the restore and create pipelines on the fake VMM of package
// vmmtest: ordering, timeouts and error paths, without root or QEMU.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/vmm"
	"github.com/snapbpf/snapbpf/internal/vmm/vmmtest"
)

// fakeSnapshot makes a real snapshot directory with CreateSnapshot on the
// fake VMM and opens it.
func fakeSnapshot(t *testing.T) *snapshot.Dir {
	t.Helper()
	out := filepath.Join(t.TempDir(), "snap")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := &vmmtest.Driver{}
	dir, _, err := CreateSnapshot(ctx, d, vmmtest.Image(), CreateOptions{
		Function: vmmtest.FastFunction, DataMiB: vmmtest.FastDataMiB, MemMiB: vmmtest.FastMemMiB, Out: out, FreePages: snapshot.FreePagesNone,
	})
	if err != nil {
		t.Fatalf("create a snapshot on the fake VMM: %v", err)
	}
	dir.Close()
	// Open as a restore does: ownership, sizes and the state's digest.
	dir, err = snapshot.Open(out)
	if err != nil {
		t.Fatalf("open the snapshot: %v", err)
	}
	t.Cleanup(func() { dir.Close() })
	return dir
}

// fakeDriver is a driver whose restored guests hold the snapshot's
// function, logging to a fresh log.
func fakeDriver() (*vmmtest.Driver, *vmmtest.Log) {
	log := &vmmtest.Log{}
	return &vmmtest.Driver{Log: log, Function: vmmtest.FastFunction, DataMiB: vmmtest.FastDataMiB}, log
}

// failOn returns Faults that fail (or, with vmmtest.ErrHang, hang) op on
// machine index, or on every machine when index is -1.
func failOn(op vmmtest.Op, index int, err error) func(*vmmtest.Machine, vmmtest.Op) error {
	return func(m *vmmtest.Machine, o vmmtest.Op) error {
		if o != op {
			return nil
		}
		if m != nil && index >= 0 && m.Index() != index {
			return nil
		}
		return err
	}
}

// logHooks are restore hooks that log their calls and can fail.
type logHooks struct {
	log                *vmmtest.Log
	beginErr, startErr error
}

func (h *logHooks) Begin(context.Context) error { h.log.Add("begin"); return h.beginErr }
func (h *logHooks) Configure(*vmm.Config)       { h.log.Add("configure") }
func (h *logHooks) VMMStarted(context.Context, int) error {
	h.log.Add("vmm-started")
	return h.startErr
}

// expected is the checksum a correct fake restore returns for input.
func expected(t *testing.T, input uint64) string {
	t.Helper()
	sum, err := Expect(vmmtest.FastFunction, vmmtest.FastDataMiB, input)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// noLeaks fails the test if a machine of d is still running.
func noLeaks(t *testing.T, d *vmmtest.Driver) {
	t.Helper()
	for _, m := range d.Running() {
		t.Errorf("fake VM %d was never stopped", m.Index())
	}
}

// before reports whether a comes before b in events, both present.
func before(events []string, a, b string) bool {
	i, j := slices.Index(events, a), slices.Index(events, b)
	return i >= 0 && j >= 0 && i < j
}

func TestFakeCreateSnapshot(t *testing.T) {
	out := filepath.Join(t.TempDir(), "snap")
	log := &vmmtest.Log{}
	d := &vmmtest.Driver{Log: log}
	dir, st, err := CreateSnapshot(context.Background(), d, vmmtest.Image(), CreateOptions{
		Function: vmmtest.FastFunction, DataMiB: vmmtest.FastDataMiB, MemMiB: vmmtest.FastMemMiB, Out: out, FreePages: snapshot.FreePagesNone,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	want := []string{"start", "resume 0", "pause 0", "save-state 0", "stop 0"}
	if got := log.Events(); !slices.Equal(got, want) {
		t.Errorf("VMM operations %q, want %q", got, want)
	}
	if dir.Manifest.Function != vmmtest.FastFunction || dir.Manifest.VMM.Name != "fake" || dir.Manifest.MemMiB != vmmtest.FastMemMiB {
		t.Errorf("manifest %+v does not describe the fake snapshot", dir.Manifest)
	}
	if st.InitMs <= 0 {
		t.Errorf("init took %v ms: the agent's init did not run", st.InitMs)
	}
	if c := d.Machines()[0].Config(); !c.MemShared || c.Incoming || c.MemPath == "" {
		t.Errorf("boot config %+v: want a shared memory file, not incoming", c)
	}
	noLeaks(t, d)
}

// TestFakeCreateSnapshotErrors: a failed or hung step stops the VM,
// names the step and publishes no snapshot.
func TestFakeCreateSnapshotErrors(t *testing.T) {
	for _, tc := range []struct {
		op   vmmtest.Op
		err  error
		want string
	}{
		{vmmtest.OpStart, errors.New("no such VMM"), "no such VMM"},
		{vmmtest.OpResume, errors.New("vCPU error"), "resume: fake VM 0: resume: vCPU error"},
		{vmmtest.OpPause, vmmtest.ErrHang, "pause: fake VM 0: pause: context deadline exceeded"},
		{vmmtest.OpSaveState, errors.New("disk full"), "save state: disk full"},
	} {
		t.Run(string(tc.op), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "snap")
			d := &vmmtest.Driver{Faults: failOn(tc.op, -1, tc.err)}
			start := time.Now()
			_, _, err := CreateSnapshot(context.Background(), d, vmmtest.Image(), CreateOptions{
				Function: vmmtest.FastFunction, DataMiB: vmmtest.FastDataMiB, MemMiB: vmmtest.FastMemMiB, Out: out,
				FreePages: snapshot.FreePagesNone, Timeouts: Timeouts{VMM: 200 * time.Millisecond},
			})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
			if el := time.Since(start); el > 10*time.Second {
				t.Errorf("took %v to fail", el)
			}
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a failed create left %s: %v", out, err)
			}
			noLeaks(t, d)
		})
	}
}

// TestFakeRestoreOrder: the policy's Begin runs before any VMM starts,
// VMMStarted after its VMM has started and before the state load, then
// the VM resumes and the function is invoked.
func TestFakeRestoreOrder(t *testing.T) {
	dir := fakeSnapshot(t)
	d, log := fakeDriver()
	res, err := Restore(context.Background(), d, dir, RestoreOptions{
		Input: 5, Count: 1, Expected: expected(t, 5), Hooks: &logHooks{log: log},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"configure", "begin", "start", "vmm-started", "load-state 0", "resume 0", "stop 0"}
	if got := log.Events(); !slices.Equal(got, want) {
		t.Errorf("order %q, want %q", got, want)
	}
	if r := res[0]; !r.ResultOK || r.Checksum == "" || r.GuestFnMs <= 0 || r.E2EMs <= 0 {
		t.Errorf("result %+v: want a verified invocation", r)
	}
	c := d.Machines()[0].Config()
	if !c.Incoming || c.MemShared || c.MemFile == nil || c.MemMiB != vmmtest.FastMemMiB {
		t.Errorf("restore config %+v: want incoming, private, the opened memory file", c)
	}
	noLeaks(t, d)
}

// TestFakeRestoreClones: each clone of a concurrent restore goes through
// its own steps in order.
func TestFakeRestoreClones(t *testing.T) {
	dir := fakeSnapshot(t)
	d, log := fakeDriver()
	const n = 3
	res, err := Restore(context.Background(), d, dir, RestoreOptions{Input: 2, Count: n, Expected: expected(t, 2), Hooks: &logHooks{log: log}})
	if err != nil {
		t.Fatal(err)
	}
	ev := log.Events()
	if ev[0] != "configure" || ev[1] != "begin" {
		t.Errorf("events %q: want configure and begin before any VMM", ev)
	}
	for i := range n {
		if !res[i].ResultOK || res[i].Index != i {
			t.Errorf("clone %d: %+v", i, res[i])
		}
		id := fmt.Sprint(i)
		if !before(ev, "load-state "+id, "resume "+id) || !before(ev, "resume "+id, "stop "+id) {
			t.Errorf("clone %d out of order: %q", i, ev)
		}
	}
	if got := len(d.Machines()); got != n {
		t.Errorf("%d VMs started, want %d", got, n)
	}
	noLeaks(t, d)
}

// TestFakeRestoreTimeouts: a VMM or guest that does not answer is given
// up at its deadline with an error naming the VM and the step, and the VM
// is stopped.
func TestFakeRestoreTimeouts(t *testing.T) {
	dir := fakeSnapshot(t)
	for _, tc := range []struct {
		name     string
		faults   func(*vmmtest.Machine, vmmtest.Op) error
		timeouts Timeouts
		want     []string
	}{
		{"start", failOn(vmmtest.OpStart, -1, vmmtest.ErrHang), Timeouts{VMM: 100 * time.Millisecond},
			[]string{"vm 0:", "start fake VMM", "deadline exceeded"}},
		{"load state", failOn(vmmtest.OpLoadState, -1, vmmtest.ErrHang), Timeouts{VMM: 100 * time.Millisecond},
			[]string{"vm 0:", "load state", "deadline exceeded"}},
		{"resume", failOn(vmmtest.OpResume, -1, vmmtest.ErrHang), Timeouts{VMM: 100 * time.Millisecond},
			[]string{"vm 0:", "resume", "deadline exceeded", "did not answer in time"}},
		{"invoke", nil, Timeouts{Invoke: time.Nanosecond},
			[]string{"vm 0:", "invoke", "deadline exceeded", "did not answer in time"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := fakeDriver()
			d.Faults = tc.faults
			start := time.Now()
			_, err := Restore(context.Background(), d, dir, RestoreOptions{Input: 1, Timeouts: tc.timeouts})
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if !errors.Is(err, context.DeadlineExceeded) && !strings.Contains(err.Error(), "deadline exceeded") {
				t.Errorf("error %v is not a deadline", err)
			}
			if el := time.Since(start); el > 5*time.Second {
				t.Errorf("took %v: the deadline was not honoured", el)
			}
			noLeaks(t, d)
		})
	}
}

// TestFakeRestoreErrors: a failure of one clone is reported under its
// number, the others still succeed, and every VM started is stopped.
func TestFakeRestoreErrors(t *testing.T) {
	dir := fakeSnapshot(t)
	boom := errors.New("boom")
	for _, tc := range []struct {
		name   string
		faults func(*vmmtest.Machine, vmmtest.Op) error
		hooks  func(*vmmtest.Log) Hooks
		noFn   bool // restored guests hold no function: the agent refuses to invoke
		want   []string
		failed int // clones that fail
	}{
		{name: "start fails", faults: failOn(vmmtest.OpStart, -1, boom), want: []string{"vm 0: start fake VMM: boom", "vm 2: start fake VMM: boom"}, failed: 3},
		// Clones start concurrently, so which clone got the VMM
		// started second is not known: only that it is named.
		{name: "load state fails", faults: failOn(vmmtest.OpLoadState, 1, boom), want: []string{": fake VM 1: load state: boom"}, failed: 1},
		{name: "resume fails", faults: failOn(vmmtest.OpResume, 2, boom), want: []string{": resume: fake VM 2: resume: boom"}, failed: 1},
		{name: "stop fails", faults: failOn(vmmtest.OpStop, -1, boom), failed: 0},
		{name: "hook fails", hooks: func(l *vmmtest.Log) Hooks { return &logHooks{log: l, startErr: boom} }, want: []string{"vm 0: boom", "vm 1: boom", "vm 2: boom"}, failed: 3},
		{name: "agent error", noFn: true, want: []string{"vm 0: invoke: agent: no function initialised", "vm 2: invoke: agent: no function initialised"}, failed: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, log := fakeDriver()
			d.Faults = tc.faults
			if tc.noFn {
				d.Function = ""
			}
			o := RestoreOptions{Input: 3, Count: 3, Expected: expected(t, 3)}
			if tc.hooks != nil {
				o.Hooks = tc.hooks(log)
			}
			res, err := Restore(context.Background(), d, dir, o)
			if len(tc.want) > 0 && err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			failed := 0
			for _, r := range res {
				if r.Error != "" {
					failed++
					if !strings.Contains(err.Error(), fmt.Sprintf("vm %d: %s", r.Index, r.Error)) {
						t.Errorf("error %q does not name clone %d's failure %q", err, r.Index, r.Error)
					}
				} else if !r.ResultOK {
					t.Errorf("clone %d: no error but no verified result", r.Index)
				}
			}
			if failed != tc.failed {
				t.Errorf("%d clones failed, want %d", failed, tc.failed)
			}
			noLeaks(t, d)
		})
	}
}

// TestFakeRestoreBeginFails: a policy that cannot begin starts no VM.
func TestFakeRestoreBeginFails(t *testing.T) {
	dir := fakeSnapshot(t)
	d, log := fakeDriver()
	boom := errors.New("prefetch failed")
	_, err := Restore(context.Background(), d, dir, RestoreOptions{Count: 2, Hooks: &logHooks{log: log, beginErr: boom}})
	if !errors.Is(err, boom) {
		t.Fatalf("error %v, want %v", err, boom)
	}
	if n := len(d.Machines()); n != 0 {
		t.Errorf("%d VMs started after Begin failed", n)
	}
}

// TestFakeRestoreCancel: cancelling the context ends a restore stuck in
// the VMM at once, long before the step's own deadline, and stops every
// VM.
func TestFakeRestoreCancel(t *testing.T) {
	dir := fakeSnapshot(t)
	for _, op := range []vmmtest.Op{vmmtest.OpLoadState, vmmtest.OpResume} {
		t.Run(string(op), func(t *testing.T) {
			d, _ := fakeDriver()
			d.Faults = failOn(op, -1, vmmtest.ErrHang)
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
			start := time.Now()
			_, err := Restore(ctx, d, dir, RestoreOptions{Count: 2, Timeouts: Timeouts{VMM: time.Minute}})
			if !strings.Contains(fmt.Sprint(err), context.Canceled.Error()) {
				t.Errorf("error %v, want one saying %q", err, context.Canceled)
			}
			if el := time.Since(start); el > 10*time.Second {
				t.Errorf("took %v after the cancel", el)
			}
			if n := len(d.Machines()); n != 2 {
				t.Errorf("%d VMs started, want 2", n)
			}
			noLeaks(t, d)
		})
	}
	t.Run("before start", func(t *testing.T) {
		d, _ := fakeDriver()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := Restore(ctx, d, dir, RestoreOptions{}); !errors.Is(err, context.Canceled) && !strings.Contains(fmt.Sprint(err), "canceled") {
			t.Errorf("error %v, want cancelled", err)
		}
		noLeaks(t, d)
	})
}

// TestFakeRestoreVMMDies: a VMM that dies under a running guest is
// reported with why it exited.
func TestFakeRestoreVMMDies(t *testing.T) {
	dir := fakeSnapshot(t)
	d, _ := fakeDriver()
	d.Faults = func(m *vmmtest.Machine, op vmmtest.Op) error {
		if op == vmmtest.OpResume {
			// The VMM dies as the guest starts to run.
			time.AfterFunc(0, func() { m.Crash("was killed by signal 7 (SIGBUS)") })
		}
		return nil
	}
	_, err := Restore(context.Background(), d, dir, RestoreOptions{Input: 1, Timeouts: Timeouts{VMM: 5 * time.Second, Invoke: 5 * time.Second}})
	if err == nil || !strings.Contains(err.Error(), "vm 0:") || !strings.Contains(err.Error(), "SIGBUS") {
		t.Errorf("error %v: want vm 0 and the VMM's exit", err)
	}
	noLeaks(t, d)
}

// TestExpectMedian: the median of several native runs has the checksum of
// one.
func TestExpectMedian(t *testing.T) {
	want, err := Expect(vmmtest.FastFunction, vmmtest.FastDataMiB, 3)
	if err != nil {
		t.Fatal(err)
	}
	got, took, err := ExpectMedian(vmmtest.FastFunction, vmmtest.FastDataMiB, 3, 3)
	if err != nil {
		t.Fatal(err)
	}
	if got != want || took <= 0 {
		t.Errorf("ExpectMedian = %s, %v; want %s and a time", got, took, want)
	}
}
