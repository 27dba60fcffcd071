// Package lazymem serves the directory of a snapshot a node does not have
// yet through FUSE, its memory file fetched lazily from the snapshot store.
//
// The mount looks like any snapshot directory (manifest.json, state, mem,
// the working set), so it passes snapshot.Open and restores like a local
// snapshot; a VMM maps its mem. A read of mem waits until the chunks
// holding the pages it asks for have been fetched and checked against
// their digests (snapstore.Reader): a guest never sees a page that has not
// arrived. Holes read as zeroes without any fetch. The working set's pages
// are fetched first, in the order the guest first touched them, and the
// file keeps its page cache across opens (FOPEN_KEEP_CACHE), so the
// prefetch a restore runs on it fills one page cache every VM on the node
// shares. The rest of the file streams in behind them into a local copy;
// when it is complete the copy becomes a snapshot of the node's own
// (atomic rename) and the mount is no longer needed.
//
// Mounts are made with mount(2) directly (root, no fusermount). Clean
// unmounts what a killed process left under a directory: a stale FUSE
// mount answers every access with ENOTCONN and would block the next mount.
package lazymem

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/snapbpf/snapbpf/internal/logging"
	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/snapstore"
)

// FSType is the mounts' file system type as /proc/self/mountinfo shows it.
const FSType = "fuse." + fsName

const fsName = "snapbpf-lazymem"

// ReadAheadKB is the mounts' readahead window. FUSE's default is 128 KiB,
// and one readahead call (a prefetch request, a fault's read-around) reads
// at most that much of a FUSE file; a chunk is 512 KiB, so a window of two
// chunks lets one request cover what one fetch brings.
const ReadAheadKB = 1024

// DefaultBackgroundDelay is how long the rest of the file waits after the
// early pages before it streams in. The stream (a get, a SHA-256 and a
// write per chunk) competes for CPU with the guest that was just restored
// from the mount: on 2 vCPUs under TCG a cold start took 2.41x a local one
// with the stream at once and 1.49x with it held back 30 s (medians of 3,
// load average 15-23, TestMeasure in internal/remotesnap). A few seconds
// cover a cold start and its first invocation here.
const DefaultBackgroundDelay = 5 * time.Second

// Source hands out a published snapshot's chunks, checked against their
// digests; *snapstore.Reader is one.
type Source interface {
	Manifest() *snapstore.Manifest
	Chunk(ctx context.Context, o *snapstore.Object, k int) ([]byte, error)
	Stream(ctx context.Context, o *snapstore.Object, fn func(k int, b []byte) error) error
	NewCopy(ctx context.Context, out string) (*snapstore.Copy, error)
}

// Options tune Mount.
type Options struct {
	// NoBackground leaves the pages outside the early set to be fetched
	// when read, and no local copy is completed.
	NoBackground bool
	// BackgroundDelay holds the rest back this long after the early
	// pages (reads still fetch what they need at once); 0 means
	// DefaultBackgroundDelay, negative none.
	BackgroundDelay time.Duration
	// Log receives diagnostics; nil discards them.
	Log *slog.Logger
}

// Stats describe a mount's fetching so far.
type Stats struct {
	// EarlyDone is when the early pages were all in, from the mount.
	EarlyDone time.Duration `json:"early_done_ns"`
	// Complete is when the local copy was committed, from the mount.
	Complete time.Duration `json:"complete_ns"`
	// DemandChunks counts chunks fetched because a read waited for them
	// before the early or background fetch reached them.
	DemandChunks int64 `json:"demand_chunks"`
	// ReadWaits counts reads that had to wait for a fetch.
	ReadWaits int64 `json:"read_waits"`
}

// Mount is one mounted snapshot directory.
type Mount struct {
	path string // the mount point: the snapshot directory VMMs use
	out  string // where the complete local copy is committed
	man  *snapstore.Manifest
	src  Source
	cp   *snapstore.Copy
	log  *slog.Logger
	t0   time.Time

	memPack, earlyPack *snapstore.Packing

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	server *fuse.Server

	mu    sync.Mutex
	mem   []*fetch // by chunk of the Mem object
	early []*fetch // by chunk of the Early object

	earlyDone, complete atomic.Int64 // durations
	demandChunks, waits atomic.Int64
	done                chan struct{} // closed when the copy was committed or given up
	local               string        // committed copy, once done
	copyErr             error
	closeOnce           sync.Once
	closeErr            error
}

// fetch is one chunk being fetched or fetched.
type fetch struct {
	done chan struct{}
	err  error
}

// New mounts the snapshot src describes at the empty directory path and
// starts fetching: the early pages at once, then (unless
// o.NoBackground) the rest into a local copy that is committed as the
// snapshot directory out once complete (Done). Close unmounts.
func New(ctx context.Context, path, out string, src Source, o Options) (_ *Mount, retErr error) {
	man := src.Manifest()
	m := &Mount{
		path: path, out: out, man: man, src: src, log: logging.Or(o.Log), t0: time.Now(),
		memPack: snapstore.NewPacking(man.Data), earlyPack: snapstore.NewPacking(man.EarlyExtents),
		mem: make([]*fetch, man.Mem.Chunks()), early: make([]*fetch, man.Early.Chunks()),
		done: make(chan struct{}),
	}
	// The small files come whole before the mount, checked: a restore
	// reads them at once, and the copy needs them too.
	cp, err := src.NewCopy(ctx, out)
	if err != nil {
		return nil, err
	}
	m.cp = cp
	defer func() {
		if retErr != nil {
			cp.Abort()
		}
	}()
	files, err := m.smallFiles()
	if err != nil {
		return nil, err
	}
	m.ctx, m.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if err := m.mount(files); err != nil {
		m.cancel()
		return nil, err
	}
	delay := o.BackgroundDelay
	if delay == 0 {
		delay = DefaultBackgroundDelay
	}
	m.wg.Add(1)
	go m.run(!o.NoBackground, max(delay, 0))
	return m, nil
}

// smallFiles reads back what NewCopy wrote: manifest.json is served as the
// snapshot's own, state and the working set as fetched and checked.
func (m *Mount) smallFiles() (map[string][]byte, error) {
	files := map[string][]byte{snapshot.ManifestName: m.man.Snapshot}
	state, err := os.ReadFile(m.cp.Dir() + "/" + snapshot.StateName)
	if err != nil {
		return nil, fmt.Errorf("lazymem: %w", err)
	}
	files[snapshot.StateName] = state
	if m.man.WorkingSet != nil {
		ws, err := os.ReadFile(m.cp.Dir() + "/" + m.man.WorkingSetAux)
		if err != nil {
			return nil, fmt.Errorf("lazymem: %w", err)
		}
		files[m.man.WorkingSetAux] = ws
	}
	return files, nil
}

// Path is the snapshot directory to restore from while the mount lasts.
func (m *Mount) Path() string { return m.path }

// Done is closed when the local copy has been committed (Local) or given
// up (Err).
func (m *Mount) Done() <-chan struct{} { return m.done }

// Local is the committed local copy's directory, once Done and Err is nil.
func (m *Mount) Local() string { return m.local }

// Err says why the local copy was not committed, once Done.
func (m *Mount) Err() error { return m.copyErr }

// Stats returns the mount's fetch statistics so far.
func (m *Mount) Stats() Stats {
	return Stats{
		EarlyDone: time.Duration(m.earlyDone.Load()), Complete: time.Duration(m.complete.Load()),
		DemandChunks: m.demandChunks.Load(), ReadWaits: m.waits.Load(),
	}
}

// run fetches the early chunks in order, then the rest, then commits.
func (m *Mount) run(background bool, delay time.Duration) {
	defer m.wg.Done()
	err := m.stream(m.early, &m.man.Early, m.earlyPack)
	m.earlyDone.Store(int64(time.Since(m.t0)))
	if err != nil {
		m.log.Warn("lazymem: early pages not all fetched; reads fetch them on demand", "snapshot", m.man.ID, "err", err)
	}
	if !background {
		m.finish(errors.New("background fetch disabled"))
		return
	}
	select {
	case <-time.After(delay):
	case <-m.ctx.Done():
		m.finish(m.ctx.Err())
		return
	}
	if err := m.stream(m.mem, &m.man.Mem, m.memPack); err != nil {
		m.finish(err)
		return
	}
	d, err := m.cp.Commit()
	if err == nil {
		m.local = d.Path
		d.Close()
		m.complete.Store(int64(time.Since(m.t0)))
		m.log.Info("lazymem: snapshot complete locally", "snapshot", m.man.ID, "dir", m.local, "ms", time.Since(m.t0).Milliseconds())
	}
	m.finish(err)
}

func (m *Mount) finish(err error) {
	m.copyErr = err
	close(m.done)
}

// stream fetches the chunks of tab in order with one streaming get, but
// for those reads fetched already or are fetching, then waits for all of
// tab. What the stream did not bring (it broke off) is fetched chunk by
// chunk.
func (m *Mount) stream(tab []*fetch, o *snapstore.Object, p *snapstore.Packing) error {
	err := m.src.Stream(m.ctx, o, func(k int, b []byte) error {
		m.mu.Lock()
		f := tab[k]
		mine := f == nil
		if mine {
			f = &fetch{done: make(chan struct{})}
			tab[k] = f
		}
		m.mu.Unlock()
		if mine {
			f.err = m.cp.WriteChunk(p, int64(k)*m.man.ChunkSize, b)
			close(f.done)
		}
		return nil
	})
	if err != nil && m.ctx.Err() != nil {
		return err
	}
	var errs []error
	for k := range tab {
		f, _ := m.start(tab, o, p, k) // a failed or missing chunk again
		select {
		case <-f.done:
			errs = append(errs, f.err)
		case <-m.ctx.Done():
			return m.ctx.Err()
		}
	}
	return errors.Join(errs...)
}

// start returns chunk k of tab's fetch, starting it unless it is under way
// or done; a failed fetch is started again. It reports whether it started
// one.
func (m *Mount) start(tab []*fetch, o *snapstore.Object, p *snapstore.Packing, k int) (*fetch, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if f := tab[k]; f != nil {
		select {
		case <-f.done:
			if f.err == nil {
				return f, false
			}
		default:
			return f, false
		}
	}
	f := &fetch{done: make(chan struct{})}
	tab[k] = f
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(f.done)
		b, err := m.src.Chunk(m.ctx, o, k)
		if err == nil {
			err = m.cp.WriteChunk(p, int64(k)*m.man.ChunkSize, b)
		}
		f.err = err
	}()
	return f, true
}

// started returns chunk k of tab's fetch if one was started.
func (m *Mount) started(tab []*fetch, k int) *fetch {
	m.mu.Lock()
	defer m.mu.Unlock()
	return tab[k]
}

// read fills dest from offset off of the memory file once every data page
// in it has arrived, and returns how many bytes it filled.
func (m *Mount) read(ctx context.Context, dest []byte, off int64) (int, error) {
	if off >= m.man.MemSize {
		return 0, nil
	}
	end := min(off+int64(len(dest)), m.man.MemSize)
	for p := uint64(off / pages.Size); p < pages.Count(end); {
		i, in := pages.Search(m.man.Data, p)
		if !in {
			if i == len(m.man.Data) {
				break
			}
			p = m.man.Data[i].Page // a hole: the local copy has it too
			continue
		}
		next, err := m.await(ctx, p)
		if err != nil {
			return 0, err
		}
		p = next
	}
	// Every data page in range is in the local copy now, and its holes
	// are the published file's.
	n, err := m.cp.MemFile().ReadAt(dest[:end-off], off)
	if err != nil && n != int(end-off) {
		return 0, fmt.Errorf("read local copy at %d: %w", off, err)
	}
	return n, nil
}

// await waits until data page p is in the local copy and returns the first
// page after p that the same fetch covers. A page of the early set waits
// for its early chunk, started now if the early fetch has not reached it
// (a prefetch runs ahead of it): fetching the Mem chunk instead would
// bring 512 KiB for the few working-set pages a scattered set has in it.
// Other pages fetch their Mem chunk.
func (m *Mount) await(ctx context.Context, p uint64) (uint64, error) {
	memOff, _ := m.memPack.Offset(p)
	mk := int(memOff / m.man.ChunkSize)
	if f := m.started(m.mem, mk); f != nil && m.wait(ctx, f) == nil {
		return m.chunkEnd(m.memPack, &m.man.Mem, mk, p), nil
	}
	if off, ok := m.earlyPack.Offset(p); ok {
		ek := int(off / m.man.ChunkSize)
		f, started := m.start(m.early, &m.man.Early, m.earlyPack, ek)
		if started {
			m.demandChunks.Add(1)
		}
		if m.wait(ctx, f) == nil {
			return m.chunkEnd(m.earlyPack, &m.man.Early, ek, p), nil
		}
	}
	f, started := m.start(m.mem, &m.man.Mem, m.memPack, mk)
	if started {
		m.demandChunks.Add(1)
	}
	if err := m.wait(ctx, f); err != nil {
		return 0, err
	}
	return m.chunkEnd(m.memPack, &m.man.Mem, mk, p), nil
}

// chunkEnd is the page after p's run in chunk k of o: the pages up to it
// arrived with p.
func (m *Mount) chunkEnd(pk *snapstore.Packing, o *snapstore.Object, k int, p uint64) uint64 {
	next := p + 1
	pk.Runs(int64(k)*m.man.ChunkSize, o.ChunkLen(k, m.man.ChunkSize), func(page uint64, _ int64, n uint64) {
		if page <= p && p < page+n {
			next = page + n
		}
	})
	return next
}

// wait waits for f, counting the reads that had to.
func (m *Mount) wait(ctx context.Context, f *fetch) error {
	select {
	case <-f.done:
		return f.err
	default:
	}
	m.waits.Add(1)
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	case <-m.ctx.Done():
		return m.ctx.Err()
	}
}

// Close stops fetching, unmounts and removes the local copy unless it was
// committed. A VMM must not have the memory file mapped any more.
func (m *Mount) Close() error {
	m.closeOnce.Do(func() {
		m.cancel()
		err := m.unmount()
		m.wg.Wait()
		m.closeErr = errors.Join(err, m.cp.Abort())
	})
	return m.closeErr
}
