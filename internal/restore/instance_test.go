package restore

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/funcvm"
	"github.com/snapbpf/snapbpf/internal/vmm/vmmtest"
)

// TestStartInvokeWarm: Start restores one clone through the pipeline's
// hooks and leaves it running; the first Invoke is the cold start (restore
// timings, prefetch finished once), later ones run on the same VMM, each
// checked against the host's result for its own input.
func TestStartInvokeWarm(t *testing.T) {
	dir := fakeSnapshot(t)
	log := &vmmtest.Log{}
	d := fakeDriver(log)
	h := &logHooks{log: log}
	ctx := context.Background()
	inst, err := Start(ctx, d, dir, Config{Hooks: h})
	if err != nil {
		t.Fatal(err)
	}
	if h.finished != 0 {
		t.Errorf("prefetch finished before the first invocation")
	}
	for n, input := range []uint64{1, 2, 2} {
		inv, err := inst.Invoke(ctx, input)
		if err != nil {
			t.Fatalf("invocation %d: %v", n, err)
		}
		want, _ := funcvm.Expect(vmmtest.FastFunction, vmmtest.FastDataMiB, input)
		if inv.VM.Checksum != want || !inv.VM.ResultOK || inv.Expected != want {
			t.Errorf("invocation %d: checksum %s (ok %v), want %s", n, inv.VM.Checksum, inv.VM.ResultOK, want)
		}
		if inv.Cold != (n == 0) {
			t.Errorf("invocation %d: cold %v", n, inv.Cold)
		}
		if inv.Cold && (inv.Prefetch.Bytes != 4096 || inv.VM.StateLoadMs <= 0) {
			t.Errorf("cold invocation: prefetch %+v, state load %v ms: want the restore's", inv.Prefetch, inv.VM.StateLoadMs)
		}
	}
	if len(d.Machines()) != 1 || h.finished != 1 {
		t.Errorf("%d VMs started, prefetch finished %d times: want 1 and 1", len(d.Machines()), h.finished)
	}
	if err := inst.Close(); err != nil {
		t.Error(err)
	}
	if err := inst.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if h.finished != 1 {
		t.Errorf("finished %d times, want once", h.finished)
	}
	noLeaks(t, d)
}

// TestStartFailures: a clone that fails to restore leaves nothing running
// and its prefetch finished; a crashed VMM fails the invocation and Close
// still cleans up.
func TestStartFailures(t *testing.T) {
	dir := fakeSnapshot(t)
	log := &vmmtest.Log{}
	d := fakeDriver(log)
	d.Faults = func(_ *vmmtest.Machine, op vmmtest.Op) error {
		if op == vmmtest.OpLoadState {
			return vmmtest.ErrHang
		}
		return nil
	}
	h := &logHooks{log: log}
	_, err := Start(context.Background(), d, dir, Config{Hooks: h, Timeouts: funcvm.Timeouts{VMM: 50 * time.Millisecond}})
	if err == nil || !strings.Contains(err.Error(), "deadline") {
		t.Errorf("error %v, want the state load's timeout", err)
	}
	if h.finished != 1 {
		t.Errorf("finished %d times, want once", h.finished)
	}
	noLeaks(t, d)

	d = fakeDriver(log)
	h = &logHooks{log: log}
	inst, err := Start(context.Background(), d, dir, Config{Hooks: h})
	if err != nil {
		t.Fatal(err)
	}
	d.Machines()[0].Crash("killed by a test")
	if _, err := inst.Invoke(context.Background(), 1); err == nil {
		t.Error("invocation of a crashed VM succeeded")
	}
	inst.Close()
	noLeaks(t, d)
}

// TestInstanceWrongResult: a guest whose result differs from the host's
// fails the invocation, naming both checksums.
func TestInstanceWrongResult(t *testing.T) {
	dir := fakeSnapshot(t)
	d := &vmmtest.Driver{Function: vmmtest.FastFunction, DataMiB: vmmtest.FastDataMiB + 1} // other data: other results
	inst, err := Start(context.Background(), d, dir, Config{Hooks: &logHooks{log: &vmmtest.Log{}}})
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	inv, err := inst.Invoke(context.Background(), 1)
	if err == nil || !strings.Contains(err.Error(), "wrong result") || inv.VM.ResultOK {
		t.Errorf("invocation %+v, error %v: want a wrong result reported", inv.VM, err)
	}
}
