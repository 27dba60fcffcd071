package prefetch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/pages"
)

// hold is the prefetched pages kept mapped until the job's Wait: a
// shared, read-only mapping of the file with every request's pages
// populated.
//
// Page cache that no process maps is what reclaim takes first, and what
// proactive reclaim takes at all: the host's DAMON pageout scheme filters
// on "unmapped" page cache, and it evicted freshly prefetched pages before
// the guest touched them, each then a major fault that reads megabytes
// with readahead (issue 16's python replays at N=1: 1 to 11 such faults in
// 4 of 40 runs, up to 27 MiB read for a set of 12). Mapped, they are
// skipped until the VMs have touched them and map them themselves;
// FaaSnap's loader keeps its loading set mapped the same way, and REAP's
// copy is anonymous memory.
type hold struct{ m []byte }

// release unmaps the hold: the pages stay cached, now as any others.
func (h *hold) release() {
	if h != nil && h.m != nil {
		unix.Munmap(h.m)
		h.m = nil
	}
}

// holdResident returns once every request's pages are in f's page cache
// and up to date, and keeps them mapped (see hold) until released.
//
// It maps the file read-only and populates each request's range with
// MADV_POPULATE_READ: a fault on a page whose read is in flight sleeps
// until the read completes, and a page the kernel chose not to read (its
// readahead gives up under memory pressure) is read then, so the wait is
// both exact and self-repairing, without polling and without copying the
// data. MADV_RANDOM keeps those faults from reading around. cachestat(2)
// alone would not do: it counts pages as cached from the moment they are
// added, before their read completes (verified on 6.18). For engines that
// complete their reads themselves it only maps what is cached.
func holdResident(ctx context.Context, f *os.File, size int64, reqs []request) (_ *hold, retErr error) {
	if len(reqs) == 0 || size == 0 {
		return &hold{}, nil
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map %s to wait for it: %w", f.Name(), err)
	}
	h := &hold{m: m}
	defer func() {
		if retErr != nil {
			h.release()
		}
	}()
	if err := unix.Madvise(m, unix.MADV_RANDOM); err != nil {
		return nil, fmt.Errorf("madvise %s: %w", f.Name(), err)
	}
	fd := int(f.Fd())
	populate := populateRead
	for _, r := range reqs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		// Pages whose readahead the kernel skipped would each be read by
		// a fault of its own below; ask for them again in one call first.
		// cachestat counts pages in the cache whether or not their read
		// has completed, so it tells skipped pages from pending ones.
		// Without cachestat count them all, so nothing is re-issued.
		if n, err := pagecache.CachedIn(f, r.off, r.len); err == nil && n < (r.len+pages.Size-1)/pages.Size {
			_ = unix.Fadvise(fd, r.off, r.len, unix.FADV_WILLNEED)
		}
		err := populate(m[r.off:r.end()])
		if errors.Is(err, unix.EINVAL) {
			// Kernels before 5.14 have no MADV_POPULATE_READ.
			populate = touchPages
			err = populate(m[r.off:r.end()])
		}
		if err != nil {
			return nil, fmt.Errorf("wait for %s at %d+%d: %w", f.Name(), r.off, r.len, err)
		}
	}
	return h, nil
}

func populateRead(b []byte) error { return unix.Madvise(b, unix.MADV_POPULATE_READ) }

// touchPages loads a word of every page of b (b is page-aligned): each
// load of a page whose read is in flight waits for it, as
// MADV_POPULATE_READ does, one fault per page. Atomic loads, so the
// compiler cannot drop them.
func touchPages(b []byte) error {
	for i := 0; i < len(b); i += pages.Size {
		atomic.LoadUint32((*uint32)(unsafe.Pointer(&b[i])))
	}
	return nil
}
