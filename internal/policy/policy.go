// Package policy holds the restore policies: how a restored VM's memory
// file gets into the page cache.
//
//   - lazy: Linux as it is. Each fault reads the page and, through
//     readahead (and QEMU's MADV_HUGEPAGE advice), megabytes around it.
//   - nora: no readahead for the memory file. Each fault reads one page.
//   - snapbpf: the recorded working set is prefetched into the memory
//     file's own page cache, asynchronously, starting before the VMM;
//     everything else comes in as lazy brings it (readahead and QEMU's
//     hugepage advice kept), so an input the recording never saw costs no
//     more than lazy (Options.NoReadahead reads it one page per fault
//     instead, as in nora: the policy as the SnapBPF paper has it).
package policy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/snapbpf/snapbpf/internal/prefetch"
	"github.com/snapbpf/snapbpf/internal/readahead"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/vmm"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// ErrNoWorkingSet is returned by New for policy snapbpf when the working set
// it was given, or the snapshot's own, does not exist: the snapshot has not
// been recorded yet (record.Snapshot makes one).
var ErrNoWorkingSet = errors.New("no working set recorded")

// Policy names.
const (
	Lazy    = "lazy"
	NoRA    = "nora"
	SnapBPF = "snapbpf"
)

// Names lists the policies.
func Names() []string { return []string{Lazy, NoRA, SnapBPF} }

// WorkingSetFile is where a snapshot keeps its recorded working set.
const WorkingSetFile = "wset/default.ws"

// Policy is one restore under a policy. It implements funcvm.Hooks.
type Policy struct {
	name string
	mem  string
	ws   *wset.Set
	opts Options
	job  *prefetch.Job
}

// Options tune a policy.
type Options struct {
	Prefetch prefetch.Options
	// NoReadahead, for snapbpf only, turns readahead and QEMU's hugepage
	// advice off for the pages outside the working set, as nora does: a
	// fault there reads one page instead of megabytes around it. That is
	// the paper's policy, kept for comparison and for recording: on an
	// input the recording never saw it ran up to 1.58x slower than lazy
	// (bert, 5230 one-page faults against lazy's 42), because every page
	// the set lacks costs a synchronous 4 KiB read.
	NoReadahead bool
}

// New prepares a restore of dir under policy name. Policy snapbpf needs the
// snapshot's working set, recorded with snapbpf record; wsPath overrides
// where it is read from.
func New(name string, dir *snapshot.Dir, wsPath string, o Options) (*Policy, error) {
	if name != SnapBPF {
		return ForFile(name, dir.MemPath(), nil, o) // checks name and options
	}
	explicit := wsPath != ""
	if !explicit {
		wsPath = dir.File(WorkingSetFile)
	}
	ws, err := wset.Read(wsPath)
	if err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist) && !explicit:
			return nil, fmt.Errorf("policy snapbpf: snapshot %s: %w (%w)", dir.Path, ErrNoWorkingSet, err)
		case errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("policy snapbpf: working set %s: %w (%w)", wsPath, ErrNoWorkingSet, err)
		}
		return nil, fmt.Errorf("policy snapbpf: %w", err)
	}
	if err := ws.CheckFile(dir.MemPath(), dir.Manifest.ID); err != nil {
		return nil, fmt.Errorf("policy snapbpf: working set %s: %w", wsPath, err)
	}
	return ForFile(name, dir.MemPath(), ws, o)
}

// ForFile prepares a restore under policy name of VMs that map the memory
// file mem, snapbpf prefetching ws (which the caller has checked belongs to
// mem). A recording uses it for its private copy of the memory file and the
// working set recorded so far; a restore of a snapshot uses New.
func ForFile(name, mem string, ws *wset.Set, o Options) (*Policy, error) {
	if err := check(name, o); err != nil {
		return nil, err
	}
	switch {
	case name == SnapBPF && ws == nil:
		return nil, errors.New("policy snapbpf: no working set to prefetch")
	case name != SnapBPF && ws != nil:
		return nil, fmt.Errorf("policy %s: prefetches no working set", name)
	}
	return &Policy{name: name, mem: mem, ws: ws, opts: o}, nil
}

// check reports whether policy name exists and takes options o.
func check(name string, o Options) error {
	switch name {
	case Lazy, NoRA:
		if o.NoReadahead {
			return fmt.Errorf("policy %s: turning readahead off outside the working set is an option of policy snapbpf only (policy nora has readahead off everywhere)", name)
		}
	case SnapBPF:
	default:
		return fmt.Errorf("unknown policy %q: want one of %v", name, Names())
	}
	return nil
}

// Name is the policy's name.
func (p *Policy) Name() string { return p.name }

// WorkingSet is the working set snapbpf prefetches; nil for other policies.
func (p *Policy) WorkingSet() *wset.Set { return p.ws }

// Begin implements funcvm.Hooks: snapbpf starts its prefetch here, before
// any VMM process exists, so the I/O overlaps VM setup.
func (p *Policy) Begin(ctx context.Context) error {
	if p.ws == nil {
		return nil
	}
	o := p.opts.Prefetch
	o.Zero = p.ws.Zero
	job, err := prefetch.Start(ctx, p.mem, p.ws.Extents, o)
	if err != nil {
		return fmt.Errorf("prefetch %s: %w", p.mem, err)
	}
	p.job = job
	return nil
}

// Configure implements funcvm.Hooks.
func (p *Policy) Configure(c *vmm.Config) {
	// QEMU's MADV_HUGEPAGE on guest RAM reads 4 MiB per fault whatever
	// the readahead setting; only a policy that keeps readahead keeps
	// Linux and QEMU as they are.
	c.IgnoreHugepageAdvice = !p.Readahead()
}

// Readahead says whether the VMM keeps Linux's readahead on the memory
// file: policy lazy, or snapbpf without Options.NoReadahead.
func (p *Policy) Readahead() bool {
	return p.name == Lazy || p.name == SnapBPF && !p.opts.NoReadahead
}

// VMMStarted implements funcvm.Hooks: readahead off for the VMM's
// descriptor of the memory file, before the guest touches anything.
func (p *Policy) VMMStarted(ctx context.Context, pid int) error {
	if p.Readahead() {
		return nil
	}
	if _, err := readahead.DisableForProcess(ctx, pid, p.mem); err != nil {
		return fmt.Errorf("policy %s: readahead off for VMM %d: %w", p.name, pid, err)
	}
	return nil
}

// PrefetchStats are what a restore reports of its prefetch.
type PrefetchStats struct {
	Bytes      int64   `json:"prefetch_bytes"`
	ZeroBytes  int64   `json:"prefetch_zero_bytes"`
	IssueMs    float64 `json:"prefetch_issue_ms"`
	CompleteMs float64 `json:"prefetch_ms"`
	Engine     string  `json:"prefetch_engine,omitempty"`
	Requests   int64   `json:"prefetch_requests,omitempty"`
}

// Finish waits for the prefetch, if any, and reports it.
func (p *Policy) Finish() (PrefetchStats, error) {
	if p.job == nil {
		return PrefetchStats{}, nil
	}
	st, err := p.job.Wait()
	return PrefetchStats{
		Bytes:      st.Bytes,
		ZeroBytes:  st.ZeroBytes,
		IssueMs:    durMs(st.IssueDur),
		CompleteMs: durMs(st.CompleteDur),
		Engine:     st.Engine,
		Requests:   st.Requests,
	}, err
}

func durMs(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
