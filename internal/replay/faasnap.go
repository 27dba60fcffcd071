package replay

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/prefetch"
	"github.com/snapbpf/snapbpf/internal/procfs"
)

// FaaSnap's thresholds, as its evaluation ran them: zero gaps shorter than
// 32 pages are merged into the regions around them, both when mapping
// non-zero regions and when building loading-set regions; no region is too
// small to keep.
const faasnapGap = 32

// DefaultFaaSnapScan is the interval of the record run's mincore scans.
// FaaSnap scans a real VM every few milliseconds of a run that lasts
// seconds; a replay at native speed is shorter, so it scans more often to
// keep a comparable number of layers.
const DefaultFaaSnapScan = time.Millisecond

// faasnapPolicy is FaaSnap (EuroSys'22) in the harness.
type faasnapPolicy struct {
	overlay     []pageRun // non-zero regions, mapped from the memory file
	compactPath           // written by prepare
	cf          *compactFile
	loader      *loader
}

func (p *faasnapPolicy) prepare(ctx context.Context, e *env) (*PrepareReport, error) {
	rep := &PrepareReport{}
	t := time.Now()
	nz, err := e.nonZero()
	if err != nil {
		return nil, err
	}
	rep.ZeroScanMs = ms(time.Since(t))
	p.overlay = mergeRuns(nz, faasnapGap)
	rep.OverlayRegions = len(p.overlay)

	layers, layerCount, err := p.record(ctx, e, rep)
	if err != nil {
		return nil, err
	}
	rep.RecordLayers = layerCount
	regions, regionLayers := faasnapRegions(layers, nz)
	p.path = filepath.Join(e.opts.WorkDir, "faasnap.ls")
	t = time.Now()
	meta := compactMeta{Kind: kindFaaSnap, Mem: e.id, Regions: regions, Layers: regionLayers,
		Created: time.Now().UTC(), Source: "loading set of " + e.trace.Meta.Source}
	if err := writeCompact(p.path, e.mem, meta); err != nil {
		return nil, err
	}
	rep.CompactWriteMs = ms(time.Since(t))
	for _, r := range regions {
		rep.WorkingSetPages += int64(r.N)
	}
	rep.WorkingSetExtents = len(regions)
	rep.CompactFile = p.path
	rep.CompactBytes = rep.WorkingSetPages * pages.Size
	return rep, nil
}

// record is FaaSnap's record run: the memory file cold, mapped as a plain
// Firecracker restore maps it (private, readahead on), the trace replayed,
// and meanwhile the file's residency scanned with mincore; a page first
// seen resident in scan k gets layer k. Readahead is part of what it sees,
// as in FaaSnap, unless Options.FaaSnapRecordNoRA.
func (p *faasnapPolicy) record(ctx context.Context, e *env, rep *PrepareReport) ([]uint32, int, error) {
	if _, err := pagecache.Drop(e.mem); err != nil {
		return nil, 0, err
	}
	g, err := reserveGuestMem(e.size)
	if err != nil {
		return nil, 0, err
	}
	defer g.unmap()
	f, err := os.Open(e.mem)
	if err != nil {
		return nil, 0, fmt.Errorf("faasnap record: %w", err)
	}
	defer f.Close()
	if err := g.mapFixed(0, e.size, f, 0); err != nil {
		return nil, 0, err
	}
	if e.opts.FaaSnapRecordNoRA {
		if err := g.madvise(unix.MADV_RANDOM); err != nil {
			return nil, 0, err
		}
	}
	sc, err := newResidencyScanner(f, e.size)
	if err != nil {
		return nil, 0, err
	}
	defer sc.close()
	interval := e.opts.FaaSnapScan
	if interval <= 0 {
		interval = DefaultFaaSnapScan
	}
	stop := make(chan struct{})
	scanned := make(chan error, 1)
	go func() { scanned <- sc.run(interval, stop) }()

	read0, _ := procfs.ReadBytes(procfs.Self)
	var st replayStats
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		st = replay(g.bytes(), e.sched, e.opts.Compute, true)
		close(done)
	}()
	<-done
	close(stop)
	if err := <-scanned; err != nil {
		return nil, 0, err
	}
	read1, _ := procfs.ReadBytes(procfs.Self)
	rep.RecordMs, rep.RecordStallMs = ms(st.replay), ms(st.stall)
	rep.RecordFaults, rep.RecordReadBytes = st.major, read1-read0
	return sc.layers, sc.scans, nil
}

// residencyScanner assigns mincore layers to a file's pages.
type residencyScanner struct {
	m      *pagecache.Mapping
	vec    []byte
	layers []uint32
	scans  int
}

func newResidencyScanner(f *os.File, size int64) (*residencyScanner, error) {
	m, err := pagecache.Map(f, 0, size)
	if err != nil {
		return nil, fmt.Errorf("faasnap scanner: %w", err)
	}
	n := m.Pages()
	return &residencyScanner{m: m, vec: make([]byte, n), layers: make([]uint32, n)}, nil
}

func (s *residencyScanner) scan() error {
	if err := s.m.Residency(s.vec); err != nil {
		return fmt.Errorf("faasnap scanner: %w", err)
	}
	s.scans++
	fresh := false
	for i, v := range s.vec {
		if v&1 != 0 && s.layers[i] == 0 {
			s.layers[i] = uint32(s.scans)
			fresh = true
		}
	}
	if !fresh {
		s.scans-- // an empty layer is no layer
	}
	return nil
}

// run scans every interval until stop, then once more.
func (s *residencyScanner) run(interval time.Duration, stop <-chan struct{}) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return s.scan()
		case <-tick.C:
			if err := s.scan(); err != nil {
				return err
			}
		}
	}
}

func (s *residencyScanner) close() { s.m.Close() }

// faasnapRegions builds the loading-set regions FaaSnap's way: runs of
// pages that were resident in the record run and are non-zero, merged
// across gaps of fewer than faasnapGap other pages (which come along);
// each run takes the earliest layer in it, a merge the later of the two;
// then ordered by layer and offset, roughly the order of first access.
func faasnapRegions(layers []uint32, nz *bitmap) ([]pageRun, []int) {
	type region struct {
		run   pageRun
		layer uint32
	}
	var rs []region
	for pg := range uint64(len(layers)) {
		if layers[pg] == 0 || !nz.has(pg) {
			continue
		}
		if k := len(rs); k > 0 && rs[k-1].run.end() == pg {
			rs[k-1].run.N++
			rs[k-1].layer = min(rs[k-1].layer, layers[pg])
			continue
		}
		rs = append(rs, region{run: pageRun{Start: pg, N: 1}, layer: layers[pg]})
	}
	var merged []region
	for _, r := range rs {
		if k := len(merged); k > 0 && r.run.Start-merged[k-1].run.end() < faasnapGap {
			merged[k-1].run.N = r.run.end() - merged[k-1].run.Start
			merged[k-1].layer = max(merged[k-1].layer, r.layer)
			continue
		}
		merged = append(merged, r)
	}
	slices.SortStableFunc(merged, func(a, b region) int {
		if a.layer != b.layer {
			return int(a.layer) - int(b.layer)
		}
		return int(int64(a.run.Start) - int64(b.run.Start))
	})
	runs := make([]pageRun, len(merged))
	ls := make([]int, len(merged))
	for i, r := range merged {
		runs[i], ls[i] = r.run, int(r.layer)
	}
	return runs, ls
}

// begin starts the loader: FaaSnap's daemon starts it first thing in
// LoadSnapshot, once per snapshot (a sync.Once), so concurrent VMs of one
// snapshot share one loader.
func (p *faasnapPolicy) begin(ctx context.Context, e *env) error {
	// A restore refuses a loading-set file made from another snapshot.
	cf, err := openCompact(p.path, kindFaaSnap, e.id)
	if err != nil {
		return err
	}
	p.cf = cf
	p.loader, err = startLoader(cf)
	return err
}

// newVM maps guest memory in FaaSnap's three layers.
func (p *faasnapPolicy) newVM(ctx context.Context, e *env) (vm, error) {
	g, err := reserveGuestMem(e.size)
	if err != nil {
		return nil, err
	}
	v := &plainVM{g: g}
	fail := func(err error) (vm, error) {
		v.close()
		return nil, err
	}
	if err := v.g.mapFixed(0, e.size, nil, 0); err != nil {
		return fail(err)
	}
	memf, err := os.Open(e.mem)
	if err != nil {
		return fail(fmt.Errorf("faasnap: %w", err))
	}
	defer memf.Close()
	for _, r := range p.overlay {
		if err := v.g.mapFixed(int64(r.Start)*pages.Size, int64(r.N)*pages.Size, memf, int64(r.Start)*pages.Size); err != nil {
			return fail(err)
		}
	}
	lsf, err := os.Open(p.cf.path)
	if err != nil {
		return fail(fmt.Errorf("faasnap: %w", err))
	}
	defer lsf.Close()
	for i, r := range p.cf.meta.Regions {
		if err := v.g.mapFixed(int64(r.Start)*pages.Size, int64(r.N)*pages.Size, lsf, p.cf.fileOff[i]); err != nil {
			return fail(err)
		}
	}
	return v, nil
}

// end waits for the loader: it runs to the end of the loading set, as
// FaaSnap's does, and its reads and pages count.
func (p *faasnapPolicy) end() (*prefetch.Stats, error) {
	if p.loader != nil {
		p.loader.wait()
		p.loader = nil
	}
	return nil, nil
}

func (p *faasnapPolicy) cleanup() error {
	if p.loader != nil {
		p.loader.stop.Store(true)
		p.loader.wait()
	}
	return nil
}

// loader reads the loading-set file into the page cache.
type loader struct {
	m    []byte
	stop atomic.Bool
	done sync.WaitGroup
}

// startLoader maps the loading-set file and reads one byte of each page in
// file order in a goroutine: the pages enter the page cache, shared by
// every VM that maps the file, while the VMs restore and run.
func startLoader(cf *compactFile) (*loader, error) {
	f, err := os.Open(cf.path)
	if err != nil {
		return nil, fmt.Errorf("faasnap loader: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("faasnap loader: %w", err)
	}
	l := &loader{}
	if st.Size() <= cf.dataOff {
		return l, nil
	}
	l.m, err = unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("faasnap loader: map %s: %w", cf.path, err)
	}
	l.done.Go(func() {
		var acc byte
		for off := cf.dataOff; off < int64(len(l.m)) && !l.stop.Load(); off += pages.Size {
			acc += l.m[off]
		}
		sink.Add(uint32(acc))
	})
	return l, nil
}

// wait waits for the loader and unmaps the file.
func (l *loader) wait() {
	l.done.Wait()
	if l.m != nil {
		unix.Munmap(l.m)
		l.m = nil
	}
}
