// Package record records a snapshot's working set: the pages of its
// memory file a function's restore touches, found by capture over a few
// restores (the first under nora, the later ones under snapbpf with the set
// so far), widened by a margin and stored beside the snapshot for policy
// snapbpf to prefetch (Snapshot); and records a restore's page-access
// trace: every first touch of a guest page, from the VMM's page faults
// (Trace, stored in package trace's format).
package record

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"slices"
	"time"

	"github.com/snapbpf/snapbpf/internal/capture"
	"github.com/snapbpf/snapbpf/internal/funcvm"
	"github.com/snapbpf/snapbpf/internal/logging"
	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/prefetch"
	"github.com/snapbpf/snapbpf/internal/progress"
	"github.com/snapbpf/snapbpf/internal/restore"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/vmm"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// Options describe a working-set recording of a snapshot.
type Options struct {
	Input    uint64
	Expected string // the invoke's correct checksum
	// Inputs, if set, are the inputs to record instead of Input: each is
	// recorded as Input would be (Runs restores, Margin), and the
	// snapshot's working set is their union, with how many of them touched
	// each page (wset.Set.Counts), in the first input's first-touch order
	// followed by what only later ones touched.
	Inputs []Input
	// Method is capture.MethodEBPF (default) or capture.MethodMincore.
	Method string
	// Merge unions the new recording with the snapshot's existing working
	// set instead of replacing it.
	Merge bool
	// Runs is how many cold restores to record (0 means DefaultRuns):
	// the first under nora, the others under snapbpf with the set so far,
	// each adding the pages its guest touched beyond the prefetch. A guest does not touch quite the same pages on every
	// run, and each page a recording misses costs a restore one fault.
	Runs int
	// Margin widens the regions where the refining runs found pages by
	// this many pages on either side, data pages of the memory file only
	// (0 means DefaultMargin, negative none; see widen).
	Margin int
	Accel  string
	// NoWait fails the recording at once with ErrBusy if another
	// recording of the snapshot runs, instead of waiting for it.
	NoWait bool
	// Log receives diagnostics; nil discards them.
	Log *slog.Logger
	// Progress shows the recording's restores (Runs per input); nil
	// shows nothing.
	Progress progress.Meter
}

// Input is one input a recording invokes the function on.
type Input struct {
	Seed     uint64
	Expected string // the invoke's correct checksum; empty skips the check
}

// margin is the margin o asks for, in pages (Margin: 0 means
// DefaultMargin, negative none).
func (o Options) margin() int {
	switch {
	case o.Margin == 0:
		return DefaultMargin
	case o.Margin < 0:
		return 0
	}
	return o.Margin
}

// inputs are the inputs o records.
func (o Options) inputs() []Input {
	if len(o.Inputs) > 0 {
		return o.Inputs
	}
	return []Input{{Seed: o.Input, Expected: o.Expected}}
}

// DefaultMargin is how far around the regions where the refining runs found
// pages the recording also takes the memory file's data pages (see widen).
// What the refining runs add, and what a restore still faults on after
// eight of them, are pages near the ones the runs found (kernel
// allocations that follow the run's timing). 16 pages, the first choice,
// grew a python function's set by 150-290 pages of which 90-98% no later
// restore touched, and a restore on the other input shape then left 8-23%
// of the set untouched; 2 pages catch about two thirds of what 16 did (the
// shape-1 trace's pages outside the set: 21 instead of 11 over 8 python
// functions, 35 with no margin) for a quarter of the pages
// (docs/measurements/issue16.md, "Prefetched but not touched").
const DefaultMargin = 2

// All widening together adds at most marginBudgetPercent of the set's
// pages, the regions where the refining runs found the most pages first: a
// function whose pages vary all over (gzip once: 85 refined pages in 31
// places) would otherwise grow by half. Regions where the runs found a
// single page are widened too: the pages a restore still faults on lie
// near any page the runs found (widening only regions with 2 or more found
// pages left bert at a median of 3 faults).
const marginBudgetPercent = 10

// marginBudgetFloor raises the percentage for a small set, in pages: 1 MiB,
// a millisecond of this disk's reads. A 10% budget of alloc's 1916-page set
// left its most frequent leftover region (about 125 pages at the top of
// guest RAM) out.
const marginBudgetFloor = 256

// marginPerFound sizes the widening by what the runs disagreed on: at most
// this many pages for each page the refining runs found. The margin is a
// guess at where a later restore touches what no run did, and the pages
// the runs disagreed on are the evidence for it; a set the runs agreed on
// gets little or none.
const marginPerFound = 2

// marginBudget is how many pages widening may add to a set of setPages
// pages around found pages the refining runs found: marginPerFound for
// each, and no more than marginBudgetPercent of the set (or
// marginBudgetFloor, whichever is more).
func marginBudget(setPages, found int64) int64 {
	return min(found*marginPerFound, max(setPages*marginBudgetPercent/100, marginBudgetFloor))
}

// DefaultRuns is how many restores a recording takes by default.
// Each later run adds the few pages the guest touched this time and no run
// before it (aes: 11, 6, 3, 2, 3, 1, 2 pages in runs 2-8); a restore then
// faults on what all of them missed: 4-9 pages after 3 runs, 0-3 after 8
// (docs/measurements/issue3.md). A run under snapbpf costs about one warm
// restore (0.3-0.9 s here).
const DefaultRuns = 8

// Report describes a recording.
type Report struct {
	VM                funcvm.VMResult `json:"vm"`
	Method            string          `json:"method"`
	Pages             int64           `json:"pages"`
	Bytes             int64           `json:"bytes"`
	Extents           int             `json:"extents"`
	Lost              uint64          `json:"lost_events"`
	NoOrder           uint64          `json:"insertions_without_order"` // capture.Capture.NoOrder, over the runs
	HolePagesDropped  uint64          `json:"hole_pages_dropped"`
	IncludesReadahead bool            `json:"includes_readahead"`
	// ZeroPages are the touched holes the set lists (wset.Set.Zero).
	ZeroPages int64 `json:"zero_pages"`
	// Runs is how many restores were recorded per input (Options.Runs).
	Runs int `json:"runs"`
	// Inputs are the recorded inputs, and InputPages the data pages each
	// one's recording found (refining and margin included).
	Inputs     []uint64 `json:"inputs"`
	InputPages []int64  `json:"input_pages"`
	// RefinedPages and RefinedZeroPages are what the runs after the first
	// added: pages the guest touched beyond the prefetch of the set so far.
	RefinedPages     int64 `json:"refined_pages"`
	RefinedZeroPages int64 `json:"refined_zero_pages"`
	// MarginPages are the data pages added around the regions where the
	// refining runs found pages (Options.Margin).
	MarginPages int64 `json:"margin_pages"`
	// ForeignPages are pages that entered the recorded file's cache for
	// processes other than the recorded VMM (this process's prefetch not
	// counted), over all runs, and ForeignProcesses how many processes
	// (summed over the runs): left out of the set. The VMMs map a private
	// copy of the memory file (see coldCopy), so this is 0 unless
	// something reads that copy.
	ForeignPages     uint64 `json:"foreign_pages"`
	ForeignProcesses int    `json:"foreign_processes"`
	// CopyMs is how long the private cold copy of the memory file took
	// (copy, fsync, drop from the cache), CopyDataBytes how much data it
	// copied; RecordMs is the whole recording, the copy included.
	CopyMs        float64 `json:"copy_ms"`
	CopyDataBytes int64   `json:"copy_data_bytes"`
	RecordMs      float64 `json:"record_ms"`
	// CommonPages is, with Merge, how many pages the old and the new
	// recording share.
	CommonPages int64  `json:"common_pages,omitempty"`
	Path        string `json:"path"`
}

// Snapshot records the snapshot's working set for each input and stores
// their union, with per-page counts, as the snapshot's working set
// (atomically). Per input it restores one clone with the memory file cold
// and readahead off, invokes it while capture watches the memory file,
// repeats that o.Runs-1 times under snapbpf with the set so far, and keeps
// the pages touched, in first-touch order, with the touched holes apart.
//
// Whatever else runs, the set holds only what the recorded VMMs touched:
// they map a private copy of the memory file that starts cold and nobody
// else reads (coldCopy), and capture keeps only their own insertions
// (capture.Recorder.Attribute). Recordings of one snapshot take turns
// (lockRecording). Progress goes to o.Log.
func Snapshot(ctx context.Context, d vmm.Driver, dir *snapshot.Dir, o Options) (*wset.Set, *Report, error) {
	start := time.Now()
	log := logging.Or(o.Log)
	if o.Method == "" {
		o.Method = capture.MethodEBPF
	}
	runs := o.Runs
	if runs <= 0 {
		o.Runs, runs = DefaultRuns, DefaultRuns
	}
	rep := &Report{Path: dir.File(policy.WorkingSetFile), Runs: runs}
	unlock, err := lockRecording(ctx, dir, o.NoWait, log)
	if err != nil {
		return nil, nil, err
	}
	defer unlock()

	// The set describes the snapshot's own file, whatever the VMMs mapped.
	id, err := wset.IdentifyFile(dir.MemPath(), dir.Manifest.ID)
	if err != nil {
		return nil, nil, err
	}
	// Copy what Open checked, not whatever the path names now.
	src := dir.MemPath()
	if f := dir.MemFile(); f != nil {
		src = fmt.Sprintf("/proc/self/fd/%d", f.Fd())
	}
	cp, err := newColdCopy(src, dir.Path)
	if err != nil {
		return nil, nil, fmt.Errorf("record: %w", err)
	}
	// Closing frees the copy's blocks, which took 1 s for 71 MiB here
	// (ext4 mounted with discard): let it happen after the recording
	// has returned.
	defer func() { go cp.Close() }()
	rep.CopyMs, rep.CopyDataBytes = durMs(cp.Took), cp.DataBytes
	if testHookCopy != nil {
		defer testHookCopy(cp.Path)() // before the copy goes
	}
	log.Debug("record: private cold copy of the memory file", "mem", dir.MemPath(), "data_bytes", cp.DataBytes, "ms", rep.CopyMs)

	job := progress.Or(o.Progress).Start("record "+dir.Manifest.Function, runs*len(o.inputs()))
	defer job.Done()
	var sets []*wset.Set
	for _, in := range o.inputs() {
		if len(o.inputs()) > 1 {
			log.Info("record: input", "input", in.Seed)
		}
		set, err := recordInput(ctx, d, dir, cp, id, in, o, rep, log, job)
		if err != nil {
			return nil, nil, err
		}
		rep.Inputs = append(rep.Inputs, in.Seed)
		rep.InputPages = append(rep.InputPages, set.Pages())
		sets = append(sets, set)
	}
	// The union of the inputs' sets, with how many touched each page.
	set, _, err := wset.Merge(sets...)
	if err != nil {
		return nil, nil, fmt.Errorf("record: %w", err)
	}
	set.Source = sets[0].Source
	if len(sets) > 1 {
		set.Source = fmt.Sprintf("record %s inputs=%v method=%s; refined by %d snapbpf restores per input, margin %d pages",
			dir.Manifest.Function, rep.Inputs, o.Method, runs-1, o.margin())
	}
	if o.Merge {
		old, err := wset.Read(rep.Path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, nil, err
		default:
			union, common, err := wset.Merge(old, set)
			if err != nil {
				return nil, nil, err
			}
			set, rep.CommonPages = union, common.Pages()
		}
	}
	b, err := set.MarshalBinary()
	if err != nil {
		return nil, nil, err
	}
	if err := dir.AddFile(policy.WorkingSetFile, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	}); err != nil {
		return nil, nil, err
	}
	rep.Pages, rep.Bytes, rep.Extents = set.Pages(), set.Bytes(), len(set.Extents)
	rep.ZeroPages = set.ZeroPages()
	rep.RecordMs = durMs(time.Since(start))
	return set, rep, nil
}

// testHookCopy, if set, is called with the path of a recording's private
// copy of the memory file before its first run, and what it returns at the
// end of the recording, while the copy still exists: tests watch it.
var testHookCopy func(path string) (end func())

// recordInput records one input's working set: o.Runs restores of the
// snapshot mapping cp (the private copy), the first under nora, the rest
// under snapbpf with the set so far, then the margin. It adds what it saw
// to rep.
func recordInput(ctx context.Context, d vmm.Driver, dir *snapshot.Dir, cp *coldCopy, id wset.Identity, in Input, o Options, rep *Report, log *slog.Logger, job progress.Job) (*wset.Set, error) {
	runs, mem := o.Runs, cp.Path
	// The first run restores under nora and sees every page the guest
	// touches. Each later run restores under snapbpf with the set so far,
	// as the set will be used, and adds what the guest touched beyond the
	// prefetch: a guest does not touch quite the same pages every time
	// (timers, allocations), and a restore with the prefetch runs at
	// another pace than one that faults on every page.
	var (
		set     *wset.Set
		refined []pages.Extent
		warned  = map[string]bool{}
	)
	for i := range runs {
		job.Step(fmt.Sprintf("input %d run %d/%d", in.Seed, i+1, runs))
		hooks, err := policy.ForFile(policy.NoRA, mem, nil, policy.Options{})
		if set != nil {
			// Readahead off, as in the first run: a page the guest
			// touches beyond the prefetch enters the cache alone, so
			// the capture sees exactly the pages the set lacks.
			hooks, err = policy.ForFile(policy.SnapBPF, mem, set, policy.Options{NoReadahead: true})
		}
		if err != nil {
			return nil, fmt.Errorf("record: %w", err)
		}
		got, c, vm, err := recordOnce(ctx, d, dir, cp, id, in, o, hooks)
		if err != nil {
			return nil, err
		}
		for _, w := range c.Warnings() {
			if !warned[w] { // the kernel's limits, once for all runs
				warned[w] = true
				log.Warn("record: capture limit", "warning", w, "snapshot", dir.Path)
			}
		}
		rep.Lost += c.Lost
		rep.NoOrder += c.NoOrder
		rep.ForeignPages += c.ForeignPages
		rep.ForeignProcesses += c.ForeignProcesses
		if c.ForeignPages > 0 {
			log.Info("record: left out pages other processes brought into the recorded file's cache", "run", i+1, "pages", c.ForeignPages, "processes", c.ForeignProcesses)
		}
		if set == nil {
			set = got
			if rep.Method == "" { // the first input's first run
				rep.VM, rep.Method = vm, c.Method
			}
			rep.IncludesReadahead = rep.IncludesReadahead || c.IncludesReadahead
			rep.HolePagesDropped += c.HolePagesDropped
			if runs > 1 {
				log.Info("record: run", "run", 1, "runs", runs, "policy", policy.NoRA, "pages", set.Pages(), "touched_holes", set.ZeroPages(), "e2e_ms", vm.E2EMs)
			}
			continue
		}
		added, zero := extend(set, got, prefetch.Plan(set.Extents, prefetch.DefaultGapPages))
		refined = append(refined, added...)
		rep.RefinedZeroPages += zero
		log.Info("record: run", "run", i+1, "runs", runs, "policy", policy.SnapBPF, "pages_beyond_prefetch", wset.PageCount(added), "touched_holes_beyond_prefetch", zero, "e2e_ms", vm.E2EMs)
	}
	rep.RefinedPages += wset.PageCount(refined)
	if runs > 1 {
		margin := o.margin()
		if margin > 0 && len(refined) > 0 {
			data, err := pages.Data(dir.MemPath())
			if err != nil {
				return nil, fmt.Errorf("record: %w", err)
			}
			rep.MarginPages += widen(set, refined, uint64(margin), data, marginBudget(set.Pages(), wset.PageCount(refined)))
		}
		set.Source += fmt.Sprintf("; refined by %d snapbpf restores, margin %d pages", runs-1, margin)
	}
	return set, nil
}

// recordOnce restores one clone cold under hooks (nora, or snapbpf for a
// refining run), mapping cp, invokes it under capture and returns the
// pages its VMM brought into the page cache as a working set of the memory
// file id.
func recordOnce(ctx context.Context, d vmm.Driver, dir *snapshot.Dir, cp *coldCopy, id wset.Identity, in Input, o Options, hooks *policy.Policy) (*wset.Set, *capture.Capture, funcvm.VMResult, error) {
	var none funcvm.VMResult
	mem := cp.Path
	sess, err := capture.Watch(mem, o.Method)
	if err != nil {
		return nil, nil, none, err
	}
	defer sess.Close()
	res, err := restore.Run(ctx, d, dir, restore.Config{
		Hooks: attributed{hooks, sess}, Input: in.Seed, Count: 1, Cold: true,
		Expected: in.Expected, NoCheck: in.Expected == "", Accel: o.Accel, MemPath: mem, MemFile: cp.File, Log: o.Log,
	})
	if err != nil {
		return nil, nil, none, fmt.Errorf("record: %w", err)
	}
	c, err := sess.Stop()
	if err != nil {
		// Lost events mean an incomplete working set: refuse it.
		return nil, nil, none, fmt.Errorf("record: %w", err)
	}
	set := c.WorkingSet(0, id, fmt.Sprintf("record %s input=%d method=%s", dir.Manifest.Function, in.Seed, o.Method))
	return set, c, res.VMs[0], nil
}

// attributed is a policy whose capture keeps only the VMM's own page
// loads: the VMM is known once started, before it loads any state.
type attributed struct {
	*policy.Policy
	sess capture.Session
}

// VMMStarted implements funcvm.Hooks: the capture attributes page loads
// to the VMM from now on, then the policy acts.
func (a attributed) VMMStarted(ctx context.Context, pid int) error {
	a.sess.Attribute(pid)
	return a.Policy.VMMStarted(ctx, pid)
}

// extend adds to set the pages of got that the prefetch plan of set did not
// bring in (data beyond plan, holes beyond set.Zero), after set's own, and
// returns the data pages it added and how many holes.
func extend(set, got *wset.Set, plan []pages.Extent) (added []pages.Extent, zero int64) {
	var data, holes wset.Builder
	for _, e := range set.Extents {
		data.Add(e.Page, e.N)
	}
	for _, e := range set.Zero {
		holes.Add(e.Page, e.N)
	}
	beforeZero := holes.Pages()
	for _, e := range got.Extents {
		// plan covers every page of set and got's extents are disjoint:
		// each part outside plan is new.
		for _, r := range outside(e, plan) {
			data.Add(r.Page, r.N)
			added = append(added, r)
		}
	}
	for _, e := range got.Zero {
		holes.Add(e.Page, e.N)
	}
	set.Extents, set.Zero = data.Extents(), holes.Extents()
	return added, holes.Pages() - beforeZero
}

// widen adds to set, after its own pages, the data pages of the memory file
// (data: its data pages, in order) around the regions where the
// refining runs found pages (around, in any order), and returns how many it
// added. A region is a run of found extents less than 2*margin pages apart;
// each is taken whole, widened by margin on both sides, those with the most
// found pages first, while the pages it adds fit in budget.
func widen(set *wset.Set, around []pages.Extent, margin uint64, data []pages.Extent, budget int64) int64 {
	type region struct {
		lo, hi uint64 // pages [lo, hi)
		found  uint64
	}
	var regions []region
	for _, e := range slices.SortedFunc(slices.Values(around), func(a, b pages.Extent) int { return cmp.Compare(a.Page, b.Page) }) {
		if k := len(regions); k > 0 && e.Page < regions[k-1].hi+2*margin {
			regions[k-1].hi = max(regions[k-1].hi, e.End())
			regions[k-1].found += e.N
			continue
		}
		regions = append(regions, region{e.Page, e.End(), e.N})
	}
	slices.SortStableFunc(regions, func(a, b region) int { return cmp.Compare(b.found, a.found) })

	have := slices.SortedFunc(slices.Values(set.Extents), func(a, b pages.Extent) int { return cmp.Compare(a.Page, b.Page) })
	var (
		b     wset.Builder
		added int64
	)
	for _, e := range set.Extents {
		b.Add(e.Page, e.N)
	}
	for _, r := range regions {
		lo, hi := r.lo-min(r.lo, margin), r.hi+margin
		var take []pages.Extent
		i, _ := pages.Search(data, lo)
		for ; i < len(data) && data[i].Page < hi; i++ {
			first, end := max(lo, data[i].Page), min(hi, data[i].End())
			if end > first {
				take = append(take, outside(pages.Extent{Page: first, N: end - first}, have)...)
			}
		}
		n := wset.PageCount(take)
		if added+n > budget {
			continue
		}
		for _, e := range take {
			b.Add(e.Page, e.N)
		}
		added += n
	}
	set.Extents = b.Extents()
	return added
}

// outside returns the parts of e that no extent of plan (sorted by page,
// disjoint) covers.
func outside(e pages.Extent, plan []pages.Extent) []pages.Extent {
	var out []pages.Extent
	i, _ := slices.BinarySearchFunc(plan, e.Page, func(x pages.Extent, p uint64) int {
		if x.End() <= p {
			return -1
		}
		return 1
	})
	p := e.Page
	for ; i < len(plan) && plan[i].Page < e.End(); i++ {
		if plan[i].Page > p {
			out = append(out, pages.Extent{Page: p, N: plan[i].Page - p})
		}
		p = max(p, plan[i].End())
	}
	if p < e.End() {
		out = append(out, pages.Extent{Page: p, N: e.End() - p})
	}
	return out
}

func durMs(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
