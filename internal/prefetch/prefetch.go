// Package prefetch brings a working set into a file's page cache ahead of
// use, asynchronously: the I/O is in flight while the caller goes on (a
// restore starts its VMM meanwhile), and the pages land in the file's own
// page cache, where every process that maps the file shares them.
//
// The extents are ordered by offset, merged across small gaps, cut around
// holes (never read) and split to the size one readahead call honours,
// then handed to an engine: readahead through posix_fadvise from a pool of
// goroutines, io_uring, or plain reads as a reference. Once they are in,
// the job keeps them mapped until its Wait, so that reclaim of unmapped
// page cache does not take them before the VMs have touched them.
package prefetch

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// DefaultEngine is the engine used when Options leave it empty. All engines
// with enough concurrency finish at the device's speed; willneed did so
// with the least CPU (about 2/3 of io_uring's, 2/5 of pread's) and hands
// its requests over soonest, which matters when the prefetch shares the
// host with the VMM it runs beside (README.md has the numbers).
const DefaultEngine = "willneed"

// DefaultGapPages is the merge threshold used when Options leave it 0.
// Measured on the root disk: merging gaps of up to 4 pages cut requests by
// 7-42% for at most 9% more bytes with no slower completion and less CPU;
// from 8 pages on, completion grew with the bytes read. It matches the
// cost model: a request at queue depth 32 costs about as much device time
// as 3-4 pages of transfer (94K IOPS against 1.3-1.5 GB/s).
const DefaultGapPages = 4

// maxRequestCap bounds a request whatever the device says (io_uring
// lengths are 32 bits; nothing gains from more).
const maxRequestCap = 64 << 20

// Options tune a prefetch; the zero value is the measured default.
type Options struct {
	// Engine is one of Engines(); empty means DefaultEngine.
	Engine string
	// Workers is the concurrency: goroutines for willneed and pread, the
	// queue depth for io_uring. 0 means the engine's default.
	Workers int
	// GapPages merges extents separated by at most this many pages. 0 means
	// DefaultGapPages; negative means merge only touching extents.
	GapPages int
	// MaxRequestBytes caps one request; 0 means the device's largest I/O
	// (max_sectors_kb), which one readahead call always reads in full.
	MaxRequestBytes int64
	// OffsetOrder issues the requests in file order; by default they go in
	// the order the working set was first touched (see byFirstTouch).
	OffsetOrder bool
	// Zero are pages known to be holes that the workload touches
	// (wset.Set.Zero). They are brought in after the data: the kernel fills
	// a hole with zeroes without any I/O, so they cost CPU and page cache
	// but no storage bandwidth, and the workload's first touch of each then
	// finds it cached instead of taking a major fault.
	Zero []pages.Extent
}

// Stats describe a prefetch. Byte counts are of the file; durations run
// from Start.
type Stats struct {
	Engine  string `json:"engine"`
	Workers int    `json:"workers"`
	// Pages and Extents are the working set's.
	Pages   int64 `json:"ws_pages"`
	Extents int64 `json:"ws_extents"`
	// Requests is how many reads were issued after merging and splitting.
	Requests int64 `json:"requests"`
	// Bytes is what was asked of the kernel: the working set plus merged
	// gaps, minus holes.
	Bytes int64 `json:"bytes"`
	// GapBytes is how much of Bytes merging added beyond the working set
	// (gaps that were data).
	GapBytes int64 `json:"gap_bytes"`
	// HoleBytesSkipped is how much of the merged plan lay in holes of the
	// file and was not read.
	HoleBytesSkipped int64 `json:"hole_bytes_skipped"`
	// ZeroBytes is how much was filled with zeroes for Options.Zero (not
	// part of Bytes: no I/O).
	ZeroBytes int64 `json:"zero_bytes"`
	// PlanDur is the time to order, merge and cut the requests.
	PlanDur time.Duration `json:"plan_ns"`
	// IssueDur is the time until every request was handed to the kernel.
	IssueDur time.Duration `json:"issue_ns"`
	// CompleteDur is the time until every requested page was in the page
	// cache and up to date (zero if the job did not complete).
	CompleteDur time.Duration `json:"complete_ns"`
}

// Job is a prefetch in flight.
type Job struct {
	issued chan struct{}
	done   chan struct{}

	mu    sync.Mutex
	stats Stats
	err   error
	// held keeps the prefetched pages mapped from completion until Wait
	// (see hold).
	held *hold
}

// Start begins prefetching extents of file and returns at once; the plan
// and the I/O proceed in the background. Cancelling ctx stops issuing new
// requests (reads already issued still complete into the cache).
func Start(ctx context.Context, file string, extents []pages.Extent, o Options) (*Job, error) {
	t0 := time.Now()
	name := o.Engine
	if name == "" {
		name = DefaultEngine
	}
	eng, ok := engines[name]
	if !ok {
		return nil, fmt.Errorf("prefetch: unknown engine %q (have %v)", name, Engines())
	}
	workers := o.Workers
	if workers <= 0 {
		workers = eng.defaultWorkers()
	}
	f, size, err := openSized(file)
	if err != nil {
		return nil, err
	}
	j := &Job{issued: make(chan struct{}), done: make(chan struct{})}
	j.stats.Engine, j.stats.Workers = name, workers
	go j.run(ctx, t0, f, size, extents, eng, workers, o)
	return j, nil
}

// dataRequests are the reads of extents' data in f, merged across o's gap,
// holes cut out, split at the longest request one call reads, in issue
// order. It also returns the bytes of holes left out and that length.
func dataRequests(f *os.File, size int64, extents []pages.Extent, o Options) (reqs []request, holes, maxLen int64, err error) {
	gap := uint64(DefaultGapPages)
	if o.GapPages > 0 {
		gap = uint64(o.GapPages)
	} else if o.GapPages < 0 {
		gap = 0
	}
	maxLen = o.MaxRequestBytes
	if maxLen <= 0 {
		maxLen = maxRequestBytes(f)
	}
	maxLen = min(max(maxLen, pages.Size)/pages.Size*pages.Size, maxRequestCap)
	reqs, holes, err = toRequests(f, Plan(extents, gap), size)
	if err != nil {
		return nil, 0, 0, err
	}
	reqs = split(reqs, maxLen)
	if !o.OffsetOrder {
		reqs = byFirstTouch(reqs, extents)
	}
	return reqs, holes, maxLen, nil
}

// Request is one read of a file, in bytes.
type Request struct{ Off, Len int64 }

// Requests are the reads a prefetch of extents from file issues for their
// data, in its order, with o's gap, request length and order applied as
// Start applies them (o.Zero's fills read nothing and are left out): to
// replay the same I/O with another tool.
func Requests(file string, extents []pages.Extent, o Options) ([]Request, error) {
	f, size, err := openSized(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	reqs, _, _, err := dataRequests(f, size, extents, o)
	if err != nil {
		return nil, err
	}
	out := make([]Request, len(reqs))
	for i, r := range reqs {
		out[i] = Request{r.off, r.len}
	}
	return out, nil
}

// openSized opens file for reading and returns its size.
func openSized(file string) (*os.File, int64, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, 0, fmt.Errorf("prefetch: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("prefetch: %w", err)
	}
	return f, st.Size(), nil
}

// Prefetch runs a prefetch to completion.
func Prefetch(ctx context.Context, file string, extents []pages.Extent, o Options) (Stats, error) {
	j, err := Start(ctx, file, extents, o)
	if err != nil {
		return Stats{}, err
	}
	return j.Wait()
}

// Issued is closed once every request has been handed to the kernel (or
// the job ended early).
func (j *Job) Issued() <-chan struct{} { return j.issued }

// Done is closed when the job has ended: the working set is in the page
// cache (or the job failed or was cancelled). The pages stay held until
// Wait.
func (j *Job) Done() <-chan struct{} { return j.done }

// WaitIssued waits until every request is issued and returns the stats so
// far: enough for a command that only starts the prefetch and exits (the
// kernel finishes reads issued by readahead on its own).
func (j *Job) WaitIssued() (Stats, error) {
	<-j.issued
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.stats, j.err
}

// Wait waits until the working set is in the page cache (or the job
// failed or was cancelled) and returns its stats. Until Wait the job keeps
// the pages it brought in mapped, so that reclaim of unmapped page cache
// leaves them for the VMs (see hold); call it once the VMs have touched
// them (a restore calls it after the first invocation). Later calls return
// the same.
func (j *Job) Wait() (Stats, error) {
	<-j.done
	j.mu.Lock()
	defer j.mu.Unlock()
	j.held.release()
	j.held = nil
	return j.stats, j.err
}

func (j *Job) run(ctx context.Context, t0 time.Time, f *os.File, size int64, extents []pages.Extent, eng engine, workers int, o Options) {
	var issueOnce sync.Once
	markIssued := func() {
		issueOnce.Do(func() {
			j.mu.Lock()
			j.stats.IssueDur = time.Since(t0)
			j.mu.Unlock()
			close(j.issued)
		})
	}
	held, complete, err := j.prefetch(ctx, t0, f, size, extents, eng, workers, o, markIssued)
	f.Close()
	j.mu.Lock()
	if err != nil {
		j.err = fmt.Errorf("prefetch %s: %w", f.Name(), err)
	} else {
		j.stats.CompleteDur, j.held = complete, held
	}
	j.mu.Unlock()
	markIssued()
	close(j.done)
}

// prefetch plans and issues the requests, waits for them and holds their
// pages; it returns the hold and the time from t0 until the pages were in
// the cache.
func (j *Job) prefetch(ctx context.Context, t0 time.Time, f *os.File, size int64, extents []pages.Extent, eng engine, workers int, o Options, issued func()) (*hold, time.Duration, error) {
	reqs, holes, maxLen, err := dataRequests(f, size, extents, o)
	if err != nil {
		return nil, 0, err
	}
	exact := Plan(extents, 0) // the working set itself, deduplicated
	var bytes, longest int64
	for _, r := range reqs {
		bytes += r.len
		longest = max(longest, r.len)
	}
	// Zero fills go last: the data's I/O is what a restore waits for.
	zero := split(pageRequests(Plan(o.Zero, 0), size), maxLen)
	if !o.OffsetOrder {
		zero = byFirstTouch(zero, o.Zero)
	}
	var zeroBytes int64
	for _, r := range zero {
		zeroBytes += r.len
		longest = max(longest, r.len)
	}
	reqs = append(reqs, zero...)
	// What merging added is what is read beyond the working set's own data.
	wsData, err := dataBytes(f, exact, size)
	if err != nil {
		return nil, 0, err
	}
	j.mu.Lock()
	j.stats.Pages, j.stats.Extents = wset.PageCount(exact), int64(len(extents))
	j.stats.Requests, j.stats.Bytes, j.stats.HoleBytesSkipped = int64(len(reqs)), bytes, holes
	j.stats.GapBytes = bytes - wsData
	j.stats.ZeroBytes = zeroBytes
	j.stats.PlanDur = time.Since(t0)
	j.mu.Unlock()

	// Reads on our descriptor must read what is asked and no more: without
	// FMODE_RANDOM a buffered read grows a readahead window past the request.
	// The flag is per open file, so the VMM's own descriptor is untouched.
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_RANDOM); err != nil {
		return nil, 0, fmt.Errorf("fadvise RANDOM: %w", err)
	}
	t := &task{f: f, reqs: reqs, maxLen: longest, workers: workers, issued: issued}
	if err := eng.run(ctx, t); err != nil {
		return nil, 0, err
	}
	// An engine that completes its reads is done now; for the others the
	// hold is the wait.
	complete := time.Since(t0)
	h, err := holdResident(ctx, f, size, reqs)
	if err != nil {
		return nil, 0, err
	}
	if !eng.completes() {
		complete = time.Since(t0)
	}
	return h, complete, nil
}

// dataBytes is how many bytes of a sorted, disjoint plan are file data.
func dataBytes(f *os.File, plan []pages.Extent, size int64) (int64, error) {
	reqs, _, err := toRequests(f, plan, size)
	var n int64
	for _, r := range reqs {
		n += r.len
	}
	return n, err
}
