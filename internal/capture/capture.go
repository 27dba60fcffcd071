// Package capture records which pages of a file a workload brings into the
// page cache: the working set of a microVM restored from a memory file.
//
// The default method is a CO-RE eBPF program (bpf/capture.c) on the
// filemap:mm_filemap_add_to_page_cache tracepoint, filtered in the kernel
// by the watched files' (device, inode), which streams every insertion in
// order. Without the privileges for BPF, the mincore method (FaaSnap's)
// reads residency after the run instead, readahead included.
package capture

import (
	"errors"
	"fmt"
	"time"

	"github.com/snapbpf/snapbpf/internal/wset"
)

// Methods of recording.
const (
	MethodEBPF    = "ebpf"    // page-cache insertions, in order, from the kernel
	MethodMincore = "mincore" // residency after the run; includes readahead
)

// ErrLostEvents is returned, with the capture, when the ring buffer
// overflowed: the capture misses Capture.Lost records.
var ErrLostEvents = errors.New("capture lost events: the ring buffer was full")

// File is a watched file.
type File struct {
	Path string
	Size int64 // bytes, when the recording started
}

// Access is one page-cache insertion into a watched file: a folio of NPages
// pages starting at page Page. Accesses are in insertion order.
type Access struct {
	File   int    // index into Capture.Files
	Page   uint64 // first page, in units of the system page size
	NPages uint32 // 1 << folio order; a large folio counts as all its pages
	TimeNs uint64 // CLOCK_MONOTONIC; 0 for the mincore method
	Pid    uint32 // thread group that caused the insertion; 0 for mincore
}

// Open is a watched file being opened by some other process while recording.
type Open struct {
	File    int
	Pid     int
	FD      int
	RAPages uint32 // readahead window the new struct file starts with; 0 = off
	TimeNs  uint64
}

// Capture is the result of a recording.
type Capture struct {
	Method   string
	Files    []File
	Accesses []Access
	Opens    []Open

	// NoOrder counts insertions whose folio order the program could not
	// read (this kernel's struct folio has no order field it knows): each
	// is counted as one page, so a large folio's other pages are missing.
	NoOrder uint64
	// Lost counts records the kernel could not queue (ring buffer full).
	// Non-zero means Accesses is incomplete; Stop also returns ErrLostEvents.
	Lost uint64
	// HolePagesDropped counts captured pages that lie in holes of the file
	// (SEEK_HOLE): reading a hole caches zeroes, which are never part of a
	// working set, so they were moved from Accesses to HoleAccesses.
	HolePagesDropped uint64
	// HoleAccesses are the captured pages that lie in holes, in time
	// order: touched, but zeroes that no read brings from storage.
	HoleAccesses []Access
	// Attributed says the capture holds only the recorded workload's
	// insertions (Recorder.Attribute). ForeignPages counts the pages
	// other processes brought in meanwhile, left out, and
	// ForeignProcesses those processes; UnattributedPages, of them, came
	// from processes that exited before they could be traced to the
	// workload (a short-lived descendant would be one).
	Attributed        bool
	ForeignPages      uint64
	ForeignProcesses  int
	UnattributedPages uint64
	// ResidentAtStart counts pages already cached when recording began:
	// touching them inserts nothing, so the recording cannot see them.
	ResidentAtStart uint64

	// IncludesReadahead says the capture may hold pages the workload never
	// touched but readahead brought in. Always true for mincore; for eBPF,
	// true when readahead windows were seen on the watched files.
	IncludesReadahead bool
	// ReadaheadChecked says ReadaheadWindows was measured (the kernel has
	// the page_cache_ra_order tracepoint).
	ReadaheadChecked bool
	// ReadaheadWindows and ReadaheadPages count readahead windows of more
	// than one page on the watched files during the recording, and the
	// pages they asked for (an upper bound on readahead in the capture).
	ReadaheadWindows uint64
	ReadaheadPages   uint64
	// DeviceReadaheadOff is how long record.Command held the disk's
	// read_ahead_kb at 0 for everyone (see record.Command).
	DeviceReadaheadOff time.Duration
	// ReadaheadWindowExpired is the window record.Command gave the command
	// to open the file, if it did not open it in time: the disk's value
	// was put back at the deadline, so its later opens started with
	// readahead, until the recording saw them and turned it off.
	ReadaheadWindowExpired time.Duration
}

// Pages returns the distinct pages of file in the capture, in the order
// they were first inserted. Holes are already removed from the capture.
func Pages(c *Capture, file int) []uint64 { return pagesOf(c.Accesses, file) }

// HolePages returns the distinct hole pages of file the capture saw, in the
// order they were first inserted.
func HolePages(c *Capture, file int) []uint64 { return pagesOf(c.HoleAccesses, file) }

// Warnings say what an eBPF capture holds beyond the pages the workload
// touched, or lacks of them; none for a clean one. Those about the kernel
// read the same for every capture on it. (Readahead in a mincore
// capture is its method, which IncludesReadahead says.)
func (c *Capture) Warnings() []string {
	if c.Method != MethodEBPF {
		return nil
	}
	var w []string
	if !c.ReadaheadChecked {
		w = append(w, "this kernel has no readahead:page_cache_ra_order tracepoint, so the capture could not check that it holds no readahead")
	}
	if c.ReadaheadWindowExpired > 0 {
		w = append(w, fmt.Sprintf("the command did not open the file within %v (the readahead window; --readahead-window sets it): the disk's readahead was put back, and the recording turned it off for each later open only once it saw it", c.ReadaheadWindowExpired))
	}
	if c.ReadaheadWindows > 0 {
		w = append(w, fmt.Sprintf("readahead reached the watched file during the recording (%d windows, %d pages): the capture includes pages the workload did not touch", c.ReadaheadWindows, c.ReadaheadPages))
	}
	if c.NoOrder > 0 {
		w = append(w, "no folio order readable on this kernel (its struct folio has neither _folio_order nor _flags_1): insertions are taken as one page each, so the other pages of any large folio among them are missing (insertions_without_order counts them)")
	}
	return w
}

// WorkingSet turns the capture of file into a working set of the memory
// file identified by id: the data pages in first-touch order, and the
// touched holes as its zero extents.
func (c *Capture) WorkingSet(file int, id wset.Identity, source string) *wset.Set {
	return &wset.Set{
		Mem:     id,
		Extents: wset.FromPages(Pages(c, file)),
		Zero:    wset.FromPages(HolePages(c, file)),
		Created: time.Now().UTC(),
		Source:  source,
	}
}

func pagesOf(accs []Access, file int) []uint64 {
	seen := make(map[uint64]struct{})
	var pages []uint64
	for _, a := range accs {
		if a.File != file {
			continue
		}
		for p := a.Page; p < a.Page+uint64(a.NPages); p++ {
			if _, ok := seen[p]; ok {
				continue
			}
			seen[p] = struct{}{}
			pages = append(pages, p)
		}
	}
	return pages
}
