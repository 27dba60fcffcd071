package policy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

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
	Accel string
}

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
	// CommonPages is, with Merge, how many pages every recording shares.
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
	nora, err := New(NoRA, dir, "", Options{})
	if err != nil {
		return nil, nil, err
	}
	mem := dir.MemPath()
	sess, err := capture.Watch(mem, o.Method)
	if err != nil {
		return nil, nil, err
	}
	defer sess.Close()
	vms, err := funcvm.Restore(ctx, d, dir, funcvm.RestoreOptions{
		Input: o.Input, Count: 1, Cold: true, Expected: o.Expected, Accel: o.Accel, Hooks: nora,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("record: %w", err)
	}
	c, err := sess.Stop()
	if err != nil {
		// Lost events mean an incomplete working set: refuse it.
		return nil, nil, fmt.Errorf("record: %w", err)
	}
	if c.IncludesReadahead && o.Method == capture.MethodEBPF {
		fmt.Fprintf(log, "warning: readahead reached the memory file during the recording (%d windows); the working set includes pages the function did not touch\n", c.ReadaheadWindows)
	}
	id, err := wset.IdentifyFile(mem, dir.Manifest.ID)
	if err != nil {
		return nil, nil, err
	}
	set := &wset.Set{
		Mem:     id,
		Extents: wset.FromPages(capture.Pages(c, 0)),
		Created: time.Now().UTC(),
		Source:  fmt.Sprintf("record %s input=%d method=%s", dir.Manifest.Function, o.Input, o.Method),
	}
	rep := &RecordReport{
		VM: vms[0], Method: c.Method, Lost: c.Lost, HolePagesDropped: c.HolePagesDropped,
		IncludesReadahead: c.IncludesReadahead, Path: dir.File(WorkingSetFile),
	}
	if o.Merge {
		old, err := wset.Read(rep.Path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, nil, err
		default:
			if set, rep.CommonPages, err = wset.Merge(old, set); err != nil {
				return nil, nil, err
			}
		}
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
	return set, rep, nil
}
