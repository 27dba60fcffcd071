package record

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/capture"
	"github.com/snapbpf/snapbpf/internal/funcvm"
	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/restore"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/trace"
	"github.com/snapbpf/snapbpf/internal/vmm"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// TraceOptions describe a trace recording.
type TraceOptions struct {
	Input uint64
	// Expected is the invoke's correct checksum (empty: not checked).
	Expected string
	// HostFn is the same invocation's time natively on the host, for the
	// slowdown (0: unknown).
	HostFn time.Duration
	Accel  string
	// CrossCheck also runs the page-cache capture (package capture) and
	// stores what it saw, to compare with the trace's pages.
	CrossCheck bool
	// Log receives diagnostics; nil discards them.
	Log *slog.Logger
}

// Trace restores one clone of dir with the memory file cold and readahead
// off (policy nora), invokes it once and returns every first touch of a
// guest page, from the VMM's page faults.
func Trace(ctx context.Context, d vmm.Driver, dir *snapshot.Dir, o TraceOptions) (*trace.Trace, *funcvm.VMResult, error) {
	nora, err := policy.New(policy.NoRA, dir, "", policy.Options{})
	if err != nil {
		return nil, nil, err
	}
	mem := dir.MemPath()
	id, err := wset.IdentifyFile(mem, dir.Manifest.ID)
	if err != nil {
		return nil, nil, err
	}
	// Holes as they are before the run: a hole page read by a fault is in
	// the page cache afterwards, and some file systems then call it data.
	data, err := pages.Data(mem)
	if err != nil {
		return nil, nil, fmt.Errorf("trace: holes of %s: %w", mem, err)
	}
	var sess capture.Session
	if o.CrossCheck {
		if sess, err = capture.Watch(mem, capture.MethodEBPF); err != nil {
			return nil, nil, fmt.Errorf("trace: cross-check capture: %w", err)
		}
		defer sess.Close()
	}
	h := &traceHooks{Policy: nora, mem: mem}
	defer h.close()
	res, err := restore.Run(ctx, d, dir, restore.Config{
		Hooks: h, Input: o.Input, Count: 1, Cold: true, Expected: o.Expected, NoCheck: o.Expected == "",
		Accel: o.Accel, Log: o.Log,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("trace: %w", err)
	}
	if h.err != nil {
		return nil, nil, h.err
	}
	if h.tracer == nil {
		return nil, nil, errors.New("trace: the VMM started without the fault tracer attached")
	}
	raws, lost, err := h.tracer.stop()
	h.tracer = nil
	if err != nil {
		return nil, nil, err
	}
	vm := res.VMs[0]
	// The guest resumed right after the state load, which began when the
	// hook returned. (A hook at the resume itself would be exact; this is
	// off by the time between the load's end and the resume command.)
	resume := h.returnedNs + uint64(vm.StateLoadMs*1e6)
	end := resume + uint64(vm.ResumeToResultMs*1e6)
	events, st := buildEvents(raws, h.ram, h.present, h.attachedNs, resume, end)
	markHoles(data, events)
	// Stop the cross-check before calibrating, which touches the file.
	captured, capturedHoles, raSeen := int64(-1), int64(-1), false
	if sess != nil {
		c, err := sess.Stop()
		if err != nil {
			return nil, nil, fmt.Errorf("trace: cross-check capture: %w", err)
		}
		captured = int64(len(capture.Pages(c, 0)))
		capturedHoles = int64(c.HolePagesDropped)
		raSeen = c.IncludesReadahead
	}
	model, err := calibrate(mem, events)
	if err != nil {
		return nil, nil, err
	}
	for i := range events {
		events[i].StallNs = uint32(model.Estimate(events[i]))
	}
	t := &trace.Trace{
		Meta: trace.Meta{
			Mem: id, Function: dir.Manifest.Function, Input: o.Input, Created: time.Now().UTC(),
			Source: fmt.Sprintf("snapbpf trace --snapshot %s --input %d", dir.Path, o.Input), Accel: o.Accel,
			VMMStartNs: int64(vm.VMMStartMs * 1e6), StateLoadNs: int64(vm.StateLoadMs * 1e6),
			ResumeToResultNs: int64(vm.ResumeToResultMs * 1e6), GuestFnNs: int64(vm.GuestFnMs * 1e6),
			HostFnNs: o.HostFn.Nanoseconds(),
			Faults:   st.faults, GuestFaults: st.guestFaults, LateFaults: st.late, LostRecords: lost, Stall: model,
			MajorFaults: vm.MajorFaults, CapturedPages: captured, CapturedHoles: capturedHoles, ReadaheadWindow: raSeen,
		},
		Events: events,
	}
	if lost > 0 {
		return t, &vm, fmt.Errorf("trace: %d fault records lost (ring buffer full): the trace is incomplete", lost)
	}
	return t, &vm, nil
}

// traceHooks are policy nora's, plus the fault tracer attached once the VMM
// has mapped guest RAM and before it loads the state.
type traceHooks struct {
	*policy.Policy
	mem string

	tracer     *faultTracer
	ram        guestRAM
	present    []uint64
	attachedNs uint64
	returnedNs uint64
	err        error
}

// VMMStarted implements funcvm.Hooks.
func (h *traceHooks) VMMStarted(ctx context.Context, pid int) error {
	if err := h.Policy.VMMStarted(ctx, pid); err != nil {
		return err
	}
	if h.tracer != nil {
		return errors.New("trace: records one VM at a time")
	}
	ram, err := findGuestRAM(pid, h.mem)
	if err != nil {
		return h.fail(err)
	}
	t, err := startFaultTracer(pid)
	if err != nil {
		return h.fail(err)
	}
	h.tracer, h.ram, h.attachedNs = t, ram, monotonicNs()
	// Pages the VMM touched before the tracer saw it.
	if h.present, err = presentPages(pid, ram); err != nil {
		return h.fail(err)
	}
	h.returnedNs = monotonicNs()
	return nil
}

func (h *traceHooks) fail(err error) error {
	h.err = err
	return err
}

func (h *traceHooks) close() {
	if h.tracer != nil {
		h.tracer.close()
		h.tracer = nil
	}
}

// monotonicNs is CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns.
func monotonicNs() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(fmt.Sprintf("clock_gettime(CLOCK_MONOTONIC): %v", err))
	}
	return uint64(ts.Nano())
}

// markHoles flags events on pages outside the data extents as holes, and
// first touches of data pages as major: the recording starts with the file
// out of the page cache, so each of them read its page from storage.
func markHoles(data []pages.Extent, events []trace.Event) {
	for i := range events {
		switch _, in := pages.Search(data, events[i].Page); {
		case !in:
			events[i].Flags |= trace.FlagHole
		case events[i].Op != trace.OpUpgrade && events[i].Flags&trace.FlagPreexisting == 0:
			events[i].Flags |= trace.FlagMajor
		}
	}
}
