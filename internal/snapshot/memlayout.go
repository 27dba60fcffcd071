package snapshot

import (
	"errors"
	"fmt"
	"os"

	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/zeroscan"
	"golang.org/x/sys/unix"
)

// Extent is a byte range of a file.
type Extent struct {
	Off int64 `json:"off"`
	Len int64 `json:"len"`
}

// MemLayout returns how many bytes of the file at path are data and how many
// are holes, using SEEK_DATA/SEEK_HOLE; it reads no file contents. On a
// filesystem without hole reporting the whole file counts as data.
func MemLayout(path string) (data, holes int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	return layout(f, fi.Size())
}

// DataExtents returns the data (non-hole) ranges of the file at path, in
// order, for callers that want to skip holes when reading guest memory.
func DataExtents(path string) ([]Extent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var ext []Extent
	err = walkData(f, fi.Size(), func(off, n int64) { ext = append(ext, Extent{off, n}) })
	return ext, err
}

func layout(f *os.File, size int64) (data, holes int64, err error) {
	err = walkData(f, size, func(_, n int64) { data += n })
	return data, size - data, err
}

// walkData calls fn for each data extent of f within [0, size). It moves
// f's file offset.
func walkData(f *os.File, size int64, fn func(off, n int64)) error {
	for off := int64(0); off < size; {
		start, err := f.Seek(off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole remains
		}
		if errors.Is(err, unix.EINVAL) && off == 0 {
			fn(0, size) // no SEEK_DATA support: treat all as data
			return nil
		}
		if err != nil {
			return fmt.Errorf("seek data in %s at %d: %w", f.Name(), off, err)
		}
		if start >= size {
			return nil
		}
		end, err := f.Seek(start, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("seek hole in %s at %d: %w", f.Name(), start, err)
		}
		if end > size { // the file grew meanwhile; measure what we were asked
			end = size
		}
		if end <= start {
			return fmt.Errorf("seek hole in %s at %d: went back to %d", f.Name(), start, end)
		}
		fn(start, end-start)
		off = end
	}
	return nil
}

// FillHoles writes zeroes into every hole of the file at path, so that it
// stores every page: the memory file a VMM's full memory dump would leave.
// Reading it back costs I/O for every page, free or not.
func FillHoles(path string) error {
	data, err := DataExtents(path)
	if err != nil {
		return fmt.Errorf("fill holes of %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("fill holes: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("fill holes of %s: %w", path, err)
	}
	zero := make([]byte, 1<<20)
	fill := func(off, end int64) error {
		for off < end {
			n := min(int64(len(zero)), end-off)
			if _, err := f.WriteAt(zero[:n], off); err != nil {
				return fmt.Errorf("fill holes of %s: %w", path, err)
			}
			off += n
		}
		return nil
	}
	var off int64
	for _, e := range append(data, Extent{Off: fi.Size()}) {
		if err := fill(off, e.Off); err != nil {
			return err
		}
		off = e.Off + e.Len
	}
	return f.Sync()
}

// ErrNoPunch says the filesystem cannot punch holes in a file.
var ErrNoPunch = errors.New("the filesystem cannot punch holes (fallocate PUNCH_HOLE unsupported)")

// PunchZeroPages turns every all-zero page of the file at path into a hole
// and returns how many pages it punched. A hole reads back as the same
// zeroes, so the guest sees the same memory; what changes is that a
// restore never reads those pages from storage and capture never puts them
// in a working set. Guests leave many such pages: memory zeroed on
// allocation (init_on_alloc) and freed again, which free page reporting
// has not handed back yet. Only for a file no VMM has mapped. On a
// filesystem that cannot punch holes it returns ErrNoPunch and leaves the
// file as it was.
func PunchZeroPages(path string) (int64, error) {
	zs, err := zeroscan.File(path, zeroscan.Options{KeepZeroRuns: true})
	if err != nil {
		return 0, fmt.Errorf("punch zero pages: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, fmt.Errorf("punch zero pages: %w", err)
	}
	defer f.Close()
	var punched int64
	for _, r := range zs.ZeroRuns {
		off, n := r.Start*pages.Size, r.Pages*pages.Size
		if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n); err != nil {
			if errors.Is(err, unix.EOPNOTSUPP) {
				return punched, fmt.Errorf("%s: %w", path, ErrNoPunch)
			}
			return punched, fmt.Errorf("punch zero pages of %s at %d+%d: %w", path, off, n, err)
		}
		punched += r.Pages
	}
	if err := f.Sync(); err != nil {
		return punched, fmt.Errorf("punch zero pages of %s: %w", path, err)
	}
	return punched, nil
}
