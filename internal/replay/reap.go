package replay

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/prefetch"
	"github.com/snapbpf/snapbpf/internal/procfs"
	"github.com/snapbpf/snapbpf/internal/replay/uffd"
)

// reapPolicy is REAP (ASPLOS'21, vHive's memory manager) in the harness.
type reapPolicy struct {
	compactPath // written by prepare
	cf          *compactFile
	// shared is the working set read once for all VMs (REAPSharedRead),
	// at sharedAt.
	shared   *wsBuffer
	sharedAt time.Time
}

func (p *reapPolicy) prepare(ctx context.Context, e *env) (*PrepareReport, error) {
	rep := &PrepareReport{}
	touched, err := p.record(ctx, e, rep)
	if err != nil {
		return nil, err
	}
	// The working set in guest-offset order, merged into contiguous
	// regions, packed into its own file.
	slices.Sort(touched)
	var regions []pageRun
	for _, pg := range touched {
		if k := len(regions); k > 0 && regions[k-1].end() == pg {
			regions[k-1].N++
			continue
		}
		regions = append(regions, pageRun{Start: pg, N: 1})
	}
	p.path = filepath.Join(e.opts.WorkDir, "reap.ws")
	t := time.Now()
	meta := compactMeta{Kind: kindREAP, Mem: e.id, Regions: regions, Created: time.Now().UTC(),
		Source: "REAP record of " + e.trace.Meta.Source}
	if err := writeCompact(p.path, e.mem, meta); err != nil {
		return nil, err
	}
	rep.CompactWriteMs = ms(time.Since(t))
	rep.WorkingSetPages, rep.WorkingSetExtents = int64(len(touched)), len(regions)
	rep.CompactFile, rep.CompactBytes = p.path, int64(len(touched))*pages.Size
	return rep, nil
}

// record is REAP's record phase: guest memory is anonymous and registered
// with userfaultfd; the handler serves each fault with a one-page
// UFFDIO_COPY from a private mapping of the (cold) memory file and logs
// its page. It returns the logged pages.
func (p *reapPolicy) record(ctx context.Context, e *env, rep *PrepareReport) ([]uint64, error) {
	if _, err := pagecache.Drop(e.mem); err != nil {
		return nil, err
	}
	var mu sync.Mutex
	var logged []uint64
	v, err := newUffdVM(e, func(pg uint64) {
		mu.Lock()
		logged = append(logged, pg)
		mu.Unlock()
	})
	if err != nil {
		return nil, err
	}
	read0, _ := procfs.ReadBytes(procfs.Self)
	var st replayStats
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		st = replay(v.g.bytes(), e.sched, e.opts.Compute, !v.userfault())
		close(done)
	}()
	<-done
	read1, _ := procfs.ReadBytes(procfs.Self)
	rep.RecordMs, rep.RecordStallMs = ms(st.replay), ms(st.stall)
	rep.RecordFaults, rep.RecordHandlerMs = v.h.Faults(), ms(v.h.Busy())
	rep.RecordReadBytes = read1 - read0
	if err := v.close(); err != nil {
		return nil, fmt.Errorf("reap record: %w", err)
	}
	return logged, nil
}

// begin checks the working-set file; with a shared read it reads it now,
// once for all VMs.
func (p *reapPolicy) begin(ctx context.Context, e *env) error {
	// A restore refuses a working-set file made from another snapshot.
	cf, err := openCompact(p.path, kindREAP, e.id)
	if err != nil {
		return err
	}
	p.cf, p.shared = cf, nil
	if e.opts.REAPSharedRead {
		if p.shared, err = readWorkingSet(cf); err != nil {
			return err
		}
		p.sharedAt = time.Now()
	}
	return nil
}

// newVM registers the VM's anonymous guest memory with a userfaultfd,
// starts serving faults from the memory file and reads the working set:
// the whole file in one read (O_DIRECT). ready installs it.
func (p *reapPolicy) newVM(ctx context.Context, e *env) (vm, error) {
	v, err := newUffdVM(e, nil)
	if err != nil {
		return nil, err
	}
	v.cf, v.overlap = p.cf, e.opts.REAPOverlap
	v.fetched = make(chan struct{})
	if p.shared != nil {
		v.buf, v.readAt = p.shared, p.sharedAt
		close(v.fetched)
		return v, nil
	}
	v.ownBuf = true
	go func() {
		defer close(v.fetched)
		v.buf, v.fetchErr = readWorkingSet(p.cf)
		v.readAt = time.Now()
	}()
	return v, nil
}

func (p *reapPolicy) end() (*prefetch.Stats, error) {
	if p.shared != nil {
		p.shared.free()
		p.shared = nil
	}
	return nil, nil
}

func (p *reapPolicy) cleanup() error {
	if p.shared != nil {
		p.shared.free()
	}
	return nil
}

// wsBuffer is a working-set file's pages in memory, page-aligned for
// O_DIRECT.
type wsBuffer struct{ b []byte }

func (w *wsBuffer) free() {
	if w.b != nil {
		unix.Munmap(w.b)
		w.b = nil
	}
}

// readWorkingSet reads all pages of the compact file in one pass,
// bypassing the page cache as vHive's REAP does (O_DIRECT where the file
// system allows it).
func readWorkingSet(cf *compactFile) (*wsBuffer, error) {
	n := int(cf.meta.Pages) * pages.Size
	w := &wsBuffer{}
	if n == 0 {
		return w, nil
	}
	f, err := os.OpenFile(cf.path, os.O_RDONLY|unix.O_DIRECT, 0)
	if errors.Is(err, unix.EINVAL) {
		f, err = os.Open(cf.path)
	}
	if err != nil {
		return nil, fmt.Errorf("reap: %w", err)
	}
	defer f.Close()
	// Anonymous memory is page-aligned and is given back at once.
	if w.b, err = unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS); err != nil {
		return nil, fmt.Errorf("reap: working-set buffer: %w", err)
	}
	for done := 0; done < n; {
		k, err := unix.Pread(int(f.Fd()), w.b[done:], cf.dataOff+int64(done))
		if err != nil {
			w.free()
			return nil, fmt.Errorf("reap: read %s: %w", cf.path, err)
		}
		if k == 0 {
			w.free()
			return nil, fmt.Errorf("reap: read %s: %w", cf.path, ErrCompactCorrupt)
		}
		done += k
	}
	return w, nil
}

// uffdVM is guest memory served through userfaultfd from the memory file.
type uffdVM struct {
	g   *guestMem
	u   *uffd.FD
	h   *uffd.Handler
	src []byte // private mapping of the memory file, the handler's source

	// REAP's restore: the working-set file, read into buf (by readAt),
	// then installed when the VMM starts loading.
	cf       *compactFile
	overlap  bool
	fetched  chan struct{}
	fetchErr error
	buf      *wsBuffer
	ownBuf   bool
	readAt   time.Time

	closing   atomic.Bool
	closeUffd sync.Once
	uffdErr   error
}

// closeFD closes the userfaultfd once: threads still waiting on a fault
// wake up and find zero pages.
func (v *uffdVM) closeFD() error {
	v.closeUffd.Do(func() { v.uffdErr = v.u.Close() })
	return v.uffdErr
}

// newUffdVM maps anonymous guest memory, registers it and serves its
// faults from the memory file; logPage, if set, sees every served page.
func newUffdVM(e *env, logPage func(uint64)) (_ *uffdVM, retErr error) {
	v := &uffdVM{}
	defer func() {
		if retErr != nil {
			v.close()
		}
	}()
	var err error
	if v.g, err = reserveGuestMem(e.size); err != nil {
		return nil, err
	}
	if err := v.g.mapFixed(0, e.size, nil, 0); err != nil {
		return nil, err
	}
	f, err := os.Open(e.mem)
	if err != nil {
		return nil, fmt.Errorf("reap: %w", err)
	}
	defer f.Close()
	// Readahead as the OS does it: vHive maps the file plainly.
	if v.src, err = unix.Mmap(int(f.Fd()), 0, int(e.size), unix.PROT_READ, unix.MAP_PRIVATE); err != nil {
		return nil, fmt.Errorf("reap: map %s: %w", e.mem, err)
	}
	if v.u, err = uffd.New(); err != nil {
		return nil, err
	}
	if err := v.u.Register(v.g.addr(0), v.g.size); err != nil {
		return nil, err
	}
	base, src := v.g.addr(0), uintptr(unsafe.Pointer(&v.src[0]))
	v.h, err = uffd.Serve(v.u, func(addr uintptr, _ bool) error {
		off := addr - base
		_, err := v.u.Copy(addr, src+off, pages.Size, false)
		if errors.Is(err, uffd.ErrExist) {
			// Installed meanwhile: only the waiter needs waking.
			return v.u.Wake(addr, pages.Size)
		}
		if err == nil && logPage != nil {
			logPage(uint64(off / pages.Size))
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	// A handler that fails would leave the guest waiting forever: release
	// it (its pages read as zeroes; close reports the handler's error).
	go func() {
		<-v.h.Done()
		if !v.closing.Load() {
			v.closeFD()
		}
	}()
	return v, nil
}

// install copies the working set's regions into guest memory without
// waking anyone, then wakes the whole range once.
func (v *uffdVM) install(cf *compactFile, buf *wsBuffer) error {
	base := v.g.addr(0)
	var off uintptr
	for _, r := range cf.meta.Regions {
		dst, n := base+uintptr(r.Start)*pages.Size, uintptr(r.N)*pages.Size
		src := uintptr(unsafe.Pointer(&buf.b[off]))
		for done := uintptr(0); done < n; {
			k, err := v.u.Copy(dst+done, src+done, n-done, true)
			done += k
			if errors.Is(err, uffd.ErrExist) {
				done += pages.Size // served on demand meanwhile; skip it
				continue
			}
			if err != nil {
				return fmt.Errorf("reap: install working set: %w", err)
			}
		}
		off += n
	}
	runtime.KeepAlive(buf)
	return v.u.Wake(base, v.g.size)
}

func (v *uffdVM) memory() *guestMem { return v.g }

// ready follows vHive's LoadSnapshot: the working set is read before the
// VMM starts loading (unless overlap), the VMM's first fault while loading
// installs it, and the guest runs when both the load and the install are
// done.
func (v *uffdVM) ready(ctx context.Context, tl timeline) error {
	if v.fetched == nil {
		return sleepUntil(ctx, tl.t0.Add(tl.setup()))
	}
	select {
	case <-v.fetched:
	case <-ctx.Done():
		return ctx.Err()
	}
	if v.fetchErr != nil {
		return v.fetchErr
	}
	load := v.readAt.Add(tl.vmmStart)
	if v.overlap {
		load = tl.t0.Add(tl.vmmStart)
		if v.readAt.After(load) {
			load = v.readAt
		}
	}
	if err := sleepUntil(ctx, load); err != nil {
		return err
	}
	err := v.install(v.cf, v.buf)
	if v.ownBuf {
		v.buf.free()
	}
	v.buf = nil
	if err != nil {
		return err
	}
	return sleepUntil(ctx, load.Add(tl.stateLoad))
}

func (v *uffdVM) userfault() bool { return true }

func (v *uffdVM) stats() vmStats {
	if v.h == nil {
		return vmStats{}
	}
	return vmStats{uffdFaults: v.h.Faults()}
}

// close stops the handler cleanly, then unregisters and frees everything.
func (v *uffdVM) close() error {
	var errs []error
	v.closing.Store(true)
	if v.fetched != nil {
		<-v.fetched
		if v.ownBuf && v.buf != nil {
			v.buf.free()
			v.buf = nil
		}
	}
	if v.h != nil {
		errs = append(errs, v.h.Stop())
	}
	if v.u != nil {
		if v.g != nil && v.g.base != nil {
			// Fails harmlessly if the descriptor was closed already.
			_ = v.u.Unregister(v.g.addr(0), v.g.size)
		}
		errs = append(errs, v.closeFD())
	}
	if v.src != nil {
		errs = append(errs, unix.Munmap(v.src))
		v.src = nil
	}
	if v.g != nil {
		errs = append(errs, v.g.unmap())
	}
	return errors.Join(errs...)
}
