// Package replay replays page-access traces (package trace) against a
// snapshot's memory file under each restore policy, in this process, the
// way each policy's VMM maps guest memory:
//
//   - lazy, nora: the memory file mapped private, readahead on (with
//     QEMU's MADV_HUGEPAGE by default) or off.
//   - snapbpf: lazy, plus the working set prefetched into the memory
//     file's page cache, once for all VMs, from the start of the restore
//     (nora plus the prefetch with Options.SnapBPFNoReadahead).
//   - reap: a record phase serving every fault through userfaultfd from
//     the memory file and logging it; the working set packed into a compact
//     file in page order; each restore reads that file in one pass
//     (O_DIRECT), installs every page with UFFDIO_COPY before the first
//     touch and serves the rest on demand through userfaultfd.
//   - faasnap: a record run with mincore scans giving each page a layer;
//     non-zero pages found by scanning the file; a compact loading-set file
//     ordered by layer; guest memory mapped per region (zero regions
//     anonymous, loading-set regions from the compact file, the rest from
//     the memory file); a loader reading the compact file while the guest
//     runs.
//
// A replay touches the trace's pages in order, computing between touches
// for the recorded gaps (scaled: the recording guest ran under TCG), and
// measures completion time, time stalled on memory, faults, bytes read and
// memory used, for N concurrent VMs of one snapshot.
package replay

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/snapbpf/snapbpf/internal/logging"
	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/prefetch"
	"github.com/snapbpf/snapbpf/internal/procfs"
	"github.com/snapbpf/snapbpf/internal/trace"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// policyImpl is one restore policy in the harness.
type policyImpl interface {
	// prepare does the offline work (record phase, compact file).
	prepare(ctx context.Context, e *env) (*PrepareReport, error)
	// begin runs once as a restore of all VMs starts (snapbpf's prefetch).
	begin(ctx context.Context, e *env) error
	// newVM maps one VM's guest memory and starts its own work.
	newVM(ctx context.Context, e *env) (vm, error)
	// end waits for begin's work.
	end() (*prefetch.Stats, error)
	// files are the files whose page cache the policy reads.
	files(e *env) []string
	// cleanup releases what prepare holds.
	cleanup() error
}

// vm is one VM's guest memory under a policy.
type vm interface {
	memory() *guestMem
	// ready blocks until the guest may run: the VMM's setup is over and
	// the policy's own work before the first touch is done.
	ready(ctx context.Context, tl timeline) error
	stats() vmStats
	// userfault reports whether a goroutine of this process serves the
	// guest memory's faults (userfaultfd), so that the touching thread
	// must take the Go runtime's preemption signal (see replay).
	userfault() bool
	close() error
}

// vmStats are a policy's counters for one VM.
type vmStats struct {
	uffdFaults int64
}

// env is what the policies share in one replay.
type env struct {
	opts  Options
	mem   string
	id    wset.Identity
	size  int64
	trace *trace.Trace
	sched schedule

	nz   *bitmap
	data *bitmap
}

// nonZero is the memory file's non-zero pages (read once).
func (e *env) nonZero() (*bitmap, error) {
	if e.nz == nil {
		b, _, err := scanNonZero(e.mem)
		if err != nil {
			return nil, err
		}
		e.nz = b
	}
	return e.nz, nil
}

// dataPages is the memory file's pages that are not holes.
func (e *env) dataPages() (*bitmap, error) {
	if e.data == nil {
		ext, err := pages.Data(e.mem)
		if err != nil {
			return nil, err
		}
		b := newBitmap(pages.Count(e.size))
		for _, x := range ext {
			for p := x.Page; p < x.End(); p++ {
				b.set(p)
			}
		}
		e.data = b
	}
	return e.data, nil
}

func newPolicy(name string, o Options) (policyImpl, error) {
	if err := CheckPolicy(name); err != nil {
		return nil, err
	}
	switch name {
	case policy.Lazy:
		return &pageCachePolicy{name: name, readahead: true, hugepage: !o.NoHugepage}, nil
	case policy.NoRA:
		return &pageCachePolicy{name: name}, nil
	case policy.SnapBPF:
		ra := !o.SnapBPFNoReadahead
		return &pageCachePolicy{name: name, prefetch: true, holesAnon: o.SnapBPFHolesAnon, readahead: ra, hugepage: ra && !o.NoHugepage}, nil
	case FaaSnap:
		return &faasnapPolicy{}, nil
	case REAP:
		return &reapPolicy{}, nil
	}
	return nil, fmt.Errorf("policy %q: listed in Policies but not implemented", name)
}

// CheckPolicy returns nil for a policy Run knows and an error naming the
// known ones otherwise.
func CheckPolicy(name string) error {
	if slices.Contains(Policies(), name) {
		return nil
	}
	return fmt.Errorf("unknown policy %q: want one of %v", name, Policies())
}

// Run replays o.Trace under o.Policy.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Trace == nil {
		return nil, errors.New("replay: no trace")
	}
	o.Concurrency = max(o.Concurrency, 1)
	o.Runs = max(o.Runs, 1)
	if o.WorkDir == "" {
		o.WorkDir = os.TempDir()
	}
	pol, err := newPolicy(o.Policy, o)
	if err != nil {
		return nil, err
	}
	defer pol.cleanup()
	id, err := wset.IdentifyFile(o.Mem, o.SnapshotID)
	if err != nil {
		return nil, err
	}
	if err := sameMem(o.Trace.Meta.Mem, id); err != nil {
		return nil, fmt.Errorf("replay: trace was recorded on another memory file: %w", errors.Unwrap(err))
	}
	e := &env{opts: o, mem: o.Mem, id: id, size: id.Size, trace: o.Trace}
	if !o.IncludeLate {
		e.trace = o.Trace.WithoutLate()
	}
	rep := &Report{
		Policy: o.Policy, Function: o.Trace.Meta.Function, Input: o.Trace.Meta.Input,
		Concurrency: o.Concurrency, Slowdown: o.Trace.Slowdown(), Scatter: o.Scatter,
	}
	if o.Scatter > 0 {
		nz, err := e.nonZero()
		if err != nil {
			return nil, err
		}
		if e.trace, rep.ScatteredPages, err = scatter(e.trace, o.Scatter, o.ScatterSeed, nz); err != nil {
			return nil, err
		}
	}
	rep.GapScale = o.GapScale
	if rep.GapScale <= 0 {
		rep.GapScale = 1
		if rep.Slowdown > 0 {
			rep.GapScale = 1 / rep.Slowdown
		}
	}
	e.sched = newSchedule(e.trace, rep.GapScale)
	if e.opts.VMMStart < 0 {
		e.opts.VMMStart = time.Duration(o.Trace.Meta.VMMStartNs)
	}
	if e.opts.StateLoad < 0 {
		e.opts.StateLoad = time.Duration(o.Trace.Meta.StateLoadNs)
	}
	rep.VMMStartMs, rep.StateLoadMs = ms(e.opts.VMMStart), ms(e.opts.StateLoad)
	switch e.opts.Compute {
	case ComputeSpin, ComputeSleep:
	case "":
		e.opts.Compute = ComputeSpin
		if o.Concurrency >= runtime.NumCPU() {
			e.opts.Compute = ComputeSleep
		}
	default:
		return nil, fmt.Errorf("replay: compute mode %q: want %s or %s", e.opts.Compute, ComputeSpin, ComputeSleep)
	}
	rep.Compute = e.opts.Compute
	rep.ComputeMs = ms(time.Duration(e.sched.computeNs))
	rep.Touches, rep.Pages = len(e.sched.steps), len(pagesOf(e.trace))

	// Faulting goroutines hold their Ps while the kernel blocks them (a
	// fault is no system call), and REAP's handlers need a P to answer
	// them: have more Ps than replays.
	defer runtime.GOMAXPROCS(max(runtime.GOMAXPROCS(0), 2*o.Concurrency+4))

	if rep.Prepare, err = pol.prepare(ctx, e); err != nil {
		return nil, fmt.Errorf("replay %s: prepare: %w", o.Policy, err)
	}
	for i := range o.Runs {
		r, err := runOnce(ctx, e, pol)
		if err != nil {
			return nil, fmt.Errorf("replay %s: run %d: %w", o.Policy, i+1, err)
		}
		rep.Runs = append(rep.Runs, *r)
		logging.Or(o.Log).Debug("replay: run done", "policy", o.Policy, "run", i+1, "runs", o.Runs, "vms", o.Concurrency)
	}
	rep.summarise()
	return rep, nil
}

// runOnce restores Concurrency VMs at once from a cold page cache and
// replays the schedule in each.
func runOnce(ctx context.Context, e *env, pol policyImpl) (_ *RunResult, retErr error) {
	for _, f := range pol.files(e) {
		if _, err := pagecache.Drop(f); err != nil {
			return nil, err
		}
	}
	read0, err := procfs.ReadBytes(procfs.Self)
	if err != nil {
		return nil, err
	}
	n := e.opts.Concurrency
	vms := make([]vm, n)
	res := make([]VMResult, n)
	errs := make([]error, n)
	defer func() {
		for _, v := range vms {
			if v != nil {
				retErr = errors.Join(retErr, v.close())
			}
		}
	}()

	t0 := time.Now()
	if err := pol.begin(ctx, e); err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			v, err := pol.newVM(ctx, e)
			if err != nil {
				errs[i] = err
				return
			}
			vms[i] = v
			tl := timeline{t0: t0, vmmStart: e.opts.VMMStart, stateLoad: e.opts.StateLoad}
			if err := v.ready(ctx, tl); err != nil {
				errs[i] = err
				return
			}
			start := time.Since(t0)
			wait := max(0, start-tl.setup())
			res[i].StartMs = ms(start)
			st := replay(v.memory().bytes(), e.sched, e.opts.Compute, !v.userfault())
			res[i].CompletionMs = ms(time.Since(t0))
			res[i].ReadyWaitMs, res[i].ReplayMs = ms(wait), ms(st.replay)
			res[i].StallMs = ms(st.stall + wait)
			res[i].MajorFaults, res[i].MinorFaults = st.major, st.minor
		})
	}
	wg.Wait()
	pst, perr := pol.end()
	if err := errors.Join(append(errs, perr)...); err != nil {
		return nil, err
	}
	read1, err := procfs.ReadBytes(procfs.Self)
	if err != nil {
		return nil, err
	}
	r := &RunResult{VMs: res, Measures: Measures{ReadBytes: read1 - read0, PageCache: map[string]int64{}}, Prefetch: pst}

	// Memory, before anything else reads a file.
	ranges := make([]addrRange, n)
	for i, v := range vms {
		g := v.memory()
		ranges[i] = addrRange{uint64(g.addr(0)), uint64(g.addr(int64(g.size)))}
		res[i].Mappings = g.vmas
		res[i].UffdFaults = v.stats().uffdFaults
	}
	anon, err := anonBytes(ranges)
	if err != nil {
		return nil, err
	}
	for i := range res {
		res[i].AnonBytes = anon[i]
		r.AnonBytes += anon[i]
	}
	r.TotalBytes = r.AnonBytes
	for _, f := range pol.files(e) {
		n, err := pagecache.Cached(f)
		if err != nil {
			return nil, err
		}
		r.PageCache[f] = n * pages.Size
		r.TotalBytes += n * pages.Size
	}
	if e.opts.Verify {
		touched := pagesOf(e.trace)
		for i, v := range vms {
			bad, memSum, fileSum, err := verify(v.memory().bytes(), e.mem, touched)
			if err != nil {
				return nil, err
			}
			res[i].Mismatches, res[i].Digest = bad, memSum
			r.FileDigest = fileSum
			r.Mismatches += bad
			r.VerifiedPages += int64(len(touched))
		}
	}
	for _, v := range res {
		r.CompletionMs += v.CompletionMs / float64(n)
		r.MaxCompletionMs = max(r.MaxCompletionMs, v.CompletionMs)
		r.StallMs += v.StallMs / float64(n)
		r.MajorFaults += float64(v.MajorFaults) / float64(n)
		r.MinorFaults += float64(v.MinorFaults) / float64(n)
		r.UffdFaults += float64(v.UffdFaults) / float64(n)
	}
	return r, nil
}

// timeline is a restore's schedule. Every VMM takes vmmStart to start and
// stateLoad to load the device state before the guest runs; what a policy
// does meanwhile follows its code:
//
//   - snapbpf starts its prefetch before the VMM process exists (the
//     restore's Begin hook), so the I/O overlaps both.
//   - FaaSnap's daemon starts its loader first thing in LoadSnapshot,
//     before taking a VMM: the same overlap.
//   - REAP (vHive's LoadSnapshot) reads the whole working-set file
//     (FetchState) before it starts the VMM's snapshot load, and installs
//     the pages on the first fault, which the VMM takes while loading: the
//     read delays everything, the install overlaps the state load.
type timeline struct {
	t0        time.Time
	vmmStart  time.Duration
	stateLoad time.Duration
}

// setup is the VMM's own part.
func (tl timeline) setup() time.Duration { return tl.vmmStart + tl.stateLoad }

// sleepUntil waits until t.
func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// verify compares the touched pages of guest memory with the memory file,
// page by page, and returns SHA-256 digests of both (the pages in the
// order given).
func verify(mem []byte, path string, touched []uint64) (bad int64, memSum, fileSum string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", "", fmt.Errorf("verify: %w", err)
	}
	defer f.Close()
	hm, hf := sha256.New(), sha256.New()
	buf := make([]byte, pages.Size)
	for _, p := range touched {
		if _, err := f.ReadAt(buf, int64(p)*pages.Size); err != nil {
			return bad, "", "", fmt.Errorf("verify: read %s page %d: %w", path, p, err)
		}
		got := mem[p*pages.Size : (p+1)*pages.Size]
		if !bytes.Equal(got, buf) {
			bad++
		}
		hm.Write(got)
		hf.Write(buf)
	}
	return bad, hex.EncodeToString(hm.Sum(nil)), hex.EncodeToString(hf.Sum(nil)), nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
