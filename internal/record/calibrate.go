package record

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/trace"
)

// calibrationSamples bounds the touches timed per kind: enough for a
// stable median, few enough to take tens of milliseconds.
const calibrationSamples = 500

// calibrate times faults on the memory file the way the recording VMM took
// them (a private mapping, readahead off, cold), on pages the trace touched.
// It leaves the file's pages out of the page cache.
func calibrate(mem string, events []trace.Event) (trace.StallModel, error) {
	var data, holes []uint64
	for _, e := range events {
		if e.Op == trace.OpUpgrade || e.Flags&trace.FlagPreexisting != 0 {
			continue
		}
		if e.Flags&trace.FlagHole != 0 {
			holes = append(holes, e.Page)
		} else {
			data = append(data, e.Page)
		}
	}
	data, holes = spread(data, calibrationSamples), spread(holes, calibrationSamples)
	f, err := os.Open(mem)
	if err != nil {
		return trace.StallModel{}, fmt.Errorf("calibrate: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return trace.StallModel{}, fmt.Errorf("calibrate: %w", err)
	}
	drop := func() { _ = pagecache.Evict(f, 0, 0) }
	drop()
	defer drop()
	m, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE)
	if err != nil {
		return trace.StallModel{}, fmt.Errorf("calibrate: map %s: %w", mem, err)
	}
	defer unix.Munmap(m)
	// One page per fault, as the recording VMM had with readahead off.
	if err := unix.Madvise(m, unix.MADV_RANDOM); err != nil {
		return trace.StallModel{}, fmt.Errorf("calibrate: madvise: %w", err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	read := func(p uint64) { atomic.LoadUint32((*uint32)(unsafe.Pointer(&m[p*pages.Size]))) }
	write := func(p uint64) { atomic.AddUint32((*uint32)(unsafe.Pointer(&m[p*pages.Size])), 0) }
	out := trace.StallModel{
		MajorNs: medianTouch(data, read),
		HoleNs:  medianTouch(holes, read),
		// The pages are mapped now; the first write copies each.
		CopyNs:  medianTouch(append(slices.Clone(data), holes...), write),
		Samples: max(len(data), len(holes)),
	}
	return out, nil
}

// spread picks at most n of pages, evenly over the slice.
func spread(pages []uint64, n int) []uint64 {
	if len(pages) <= n {
		return pages
	}
	out := make([]uint64, 0, n)
	for i := range n {
		out = append(out, pages[i*len(pages)/n])
	}
	return out
}

// medianTouch times touch on each page and returns the median in ns.
func medianTouch(pages []uint64, touch func(uint64)) int64 {
	if len(pages) == 0 {
		return 0
	}
	d := make([]int64, 0, len(pages))
	for _, p := range pages {
		t := time.Now()
		touch(p)
		d = append(d, time.Since(t).Nanoseconds())
	}
	slices.Sort(d)
	return d[len(d)/2]
}
