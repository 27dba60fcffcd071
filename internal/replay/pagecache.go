package replay

import (
	"context"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/prefetch"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// pageCachePolicy maps the memory file private, as QEMU or Firecracker
// does for a snapshot restore: lazy (readahead on, and QEMU's
// MADV_HUGEPAGE unless turned off), nora (readahead off: one page per
// fault), or snapbpf (lazy, or nora, plus the working set prefetched into
// the memory file's page cache, once for all VMs, starting with the
// restore).
type pageCachePolicy struct {
	name      string
	readahead bool
	hugepage  bool
	prefetch  bool
	// holesAnon maps the memory file's holes as anonymous memory and
	// only its data from the file (Options.SnapBPFHolesAnon).
	holesAnon bool
	data      []pageRun

	extents []pages.Extent
	zero    []pages.Extent // touched holes, filled with zeroes (no I/O)
	job     *prefetch.Job
	pstats  *prefetch.Stats
}

func (p *pageCachePolicy) prepare(ctx context.Context, e *env) (*PrepareReport, error) {
	if p.holesAnon {
		data, err := e.dataPages()
		if err != nil {
			return nil, err
		}
		p.data = mergeRuns(data, 1)
	}
	if !p.prefetch {
		return nil, nil
	}
	// SnapBPF's working set: the data pages the recording inserted into
	// the page cache, in first-touch order. Holes never enter it; the
	// touched ones are its zero extents, as capture records them (with
	// holesAnon they are anonymous memory and need nothing).
	data, err := e.dataPages()
	if err != nil {
		return nil, err
	}
	var pages, holes []uint64
	for _, pg := range pagesOf(e.trace) {
		if data.has(pg) {
			pages = append(pages, pg)
		} else if !p.holesAnon {
			holes = append(holes, pg)
		}
	}
	p.extents, p.zero = wset.FromPages(pages), wset.FromPages(holes)
	return &PrepareReport{WorkingSetPages: int64(len(pages)), WorkingSetExtents: len(p.extents)}, nil
}

func (p *pageCachePolicy) begin(ctx context.Context, e *env) error {
	p.job, p.pstats = nil, nil
	if !p.prefetch {
		return nil
	}
	o := e.opts.Prefetch
	o.Zero = p.zero
	job, err := prefetch.Start(ctx, e.mem, p.extents, o)
	if err != nil {
		return fmt.Errorf("snapbpf prefetch: %w", err)
	}
	p.job = job
	return nil
}

func (p *pageCachePolicy) newVM(ctx context.Context, e *env) (vm, error) {
	g, err := reserveGuestMem(e.size)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(e.mem)
	if err != nil {
		g.unmap()
		return nil, fmt.Errorf("open memory file: %w", err)
	}
	// The mapping keeps its own reference to the file.
	defer f.Close()
	if err := p.mapGuest(g, f, e.size); err != nil {
		g.unmap()
		return nil, err
	}
	var advice []int
	if !p.readahead {
		// One page per fault, as readahead off for the VMM's descriptor
		// gives QEMU (policy.NoRA).
		advice = append(advice, unix.MADV_RANDOM)
	}
	if p.hugepage {
		advice = append(advice, unix.MADV_HUGEPAGE)
	}
	for _, a := range advice {
		if err := g.madvise(a); err != nil {
			g.unmap()
			return nil, err
		}
	}
	return &plainVM{g: g}, nil
}

// mapGuest maps the memory file over all of guest memory, or, with
// holesAnon, anonymous memory with the file's data extents over it: the
// holes are free guest pages, which SnapBPF never reads (the paper backs
// them with anonymous memory when the guest allocates them).
func (p *pageCachePolicy) mapGuest(g *guestMem, f *os.File, size int64) error {
	if !p.holesAnon {
		return g.mapFixed(0, size, f, 0)
	}
	if err := g.mapFixed(0, size, nil, 0); err != nil {
		return err
	}
	for _, r := range p.data {
		off, n := int64(r.Start)*pages.Size, min(int64(r.N)*pages.Size, size-int64(r.Start)*pages.Size)
		if err := g.mapFixed(off, n, f, off); err != nil {
			return err
		}
	}
	return nil
}

func (p *pageCachePolicy) end() (*prefetch.Stats, error) {
	if p.job == nil {
		return nil, nil
	}
	st, err := p.job.Wait()
	p.job = nil
	return &st, err
}

func (p *pageCachePolicy) files(e *env) []string { return []string{e.mem} }

func (p *pageCachePolicy) cleanup() error { return nil }

// plainVM is guest memory that needs nothing but mapping.
type plainVM struct{ g *guestMem }

func (v *plainVM) memory() *guestMem { return v.g }
func (v *plainVM) ready(ctx context.Context, tl timeline) error {
	return sleepUntil(ctx, tl.t0.Add(tl.setup()))
}
func (v *plainVM) stats() vmStats  { return vmStats{} }
func (v *plainVM) userfault() bool { return false }
func (v *plainVM) close() error    { return v.g.unmap() }
