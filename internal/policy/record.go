package policy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/snapbpf/snapbpf/internal/capture"
	"github.com/snapbpf/snapbpf/internal/funcvm"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/vmm"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// RecordOptions describe a working-set recording of a snapshot.
type RecordOptions struct {
	Input    uint64
	Expected string // the invoke's correct checksum
	// Method is capture.MethodEBPF (default) or capture.MethodMincore.
	Method string
	// Merge unions the new recording with the snapshot's existing working
	// set instead of replacing it.
	Merge bool
	// Runs is how many cold restores to record (0 means DefaultRecordRuns); the stored set
	// is their union. A guest does not touch quite the same pages on every
	// run (kernel stack offsets are random, timers fire at other points),
	// and each page a recording misses costs a restore one fault.
	Runs  int
	Accel string
}

// DefaultRecordRuns is how many restores a recording unites by default.
// Measured on alloc (docs/measurements/issue3.md): one recording missed
// 7-15 of ~1760 data pages a second run touched, each a major fault on
// restore; a union of three left 0-7 faults.
const DefaultRecordRuns = 3

// RecordReport describes a recording.
type RecordReport struct {
	VM                funcvm.VMResult `json:"vm"`
	Method            string          `json:"method"`
	Pages             int64           `json:"pages"`
	Bytes             int64           `json:"bytes"`
	Extents           int             `json:"extents"`
	Lost              uint64          `json:"lost_events"`
	HolePagesDropped  uint64          `json:"hole_pages_dropped"`
	IncludesReadahead bool            `json:"includes_readahead"`
	// ZeroPages are the touched holes the set lists (wset.Set.Zero).
	ZeroPages int64 `json:"zero_pages"`
	// Runs is how many restores were recorded (RecordOptions.Runs).
	Runs int `json:"runs"`
	// CommonPages is, with Merge or several runs, how many pages every
	// recording shares.
	CommonPages int64  `json:"common_pages,omitempty"`
	Path        string `json:"path"`
}

// Record restores one clone of dir with the memory file cold and readahead
// off, invokes it once on o.Input while capture watches the memory file,
// and stores the pages it touched, in first-touch order, as the snapshot's
// working set (atomically).
func Record(ctx context.Context, d vmm.Driver, dir *snapshot.Dir, o RecordOptions, log io.Writer) (*wset.Set, *RecordReport, error) {
	if o.Method == "" {
		o.Method = capture.MethodEBPF
	}
	runs := o.Runs
	if runs <= 0 {
		runs = DefaultRecordRuns
	}
	rep := &RecordReport{Path: dir.File(WorkingSetFile), Runs: runs}
	var sets []*wset.Set
	for i := range runs {
		set, c, vm, err := recordOnce(ctx, d, dir, o)
		if err != nil {
			return nil, nil, err
		}
		if c.IncludesReadahead && o.Method == capture.MethodEBPF {
			fmt.Fprintf(log, "warning: readahead reached the memory file during the recording (%d windows); the working set includes pages the function did not touch\n", c.ReadaheadWindows)
		}
		if runs > 1 {
			fmt.Fprintf(log, "run %d of %d: %d pages, %d touched holes, invoke e2e %.0f ms\n", i+1, runs, set.Pages(), set.ZeroPages(), vm.E2EMs)
		}
		sets = append(sets, set)
		if i == 0 {
			rep.VM, rep.Method, rep.IncludesReadahead = vm, c.Method, c.IncludesReadahead
			rep.HolePagesDropped = c.HolePagesDropped
		}
		rep.Lost += c.Lost
	}
	if o.Merge {
		old, err := wset.Read(rep.Path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, nil, err
		default:
			sets = append([]*wset.Set{old}, sets...)
		}
	}
	set := sets[0]
	if len(sets) > 1 {
		var err error
		if set, rep.CommonPages, err = wset.Merge(sets...); err != nil {
			return nil, nil, err
		}
		set.Source = fmt.Sprintf("%s; union of %d recordings", sets[len(sets)-1].Source, len(sets))
	}
	b, err := set.MarshalBinary()
	if err != nil {
		return nil, nil, err
	}
	if err := dir.AddFile(WorkingSetFile, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	}); err != nil {
		return nil, nil, err
	}
	rep.Pages, rep.Bytes, rep.Extents = set.Pages(), set.Bytes(), len(set.Extents)
	rep.ZeroPages = set.ZeroPages()
	return set, rep, nil
}

// recordOnce restores one clone cold with readahead off, invokes it under
// capture and returns the pages it touched as a working set.
func recordOnce(ctx context.Context, d vmm.Driver, dir *snapshot.Dir, o RecordOptions) (*wset.Set, *capture.Capture, funcvm.VMResult, error) {
	var none funcvm.VMResult
	nora, err := New(NoRA, dir, "", Options{})
	if err != nil {
		return nil, nil, none, err
	}
	mem := dir.MemPath()
	sess, err := capture.Watch(mem, o.Method)
	if err != nil {
		return nil, nil, none, err
	}
	defer sess.Close()
	vms, err := funcvm.Restore(ctx, d, dir, funcvm.RestoreOptions{
		Input: o.Input, Count: 1, Cold: true, Expected: o.Expected, Accel: o.Accel, Hooks: nora,
	})
	if err != nil {
		return nil, nil, none, fmt.Errorf("record: %w", err)
	}
	c, err := sess.Stop()
	if err != nil {
		// Lost events mean an incomplete working set: refuse it.
		return nil, nil, none, fmt.Errorf("record: %w", err)
	}
	id, err := wset.IdentifyFile(mem, dir.Manifest.ID)
	if err != nil {
		return nil, nil, none, err
	}
	set := c.WorkingSet(0, id, fmt.Sprintf("record %s input=%d method=%s", dir.Manifest.Function, o.Input, o.Method))
	return set, c, vms[0], nil
}
