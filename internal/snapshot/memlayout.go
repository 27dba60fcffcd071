package snapshot

import (
	"errors"
	"fmt"
	"os"

	"github.com/snapbpf/snapbpf/internal/pages"
	"golang.org/x/sys/unix"
)

// MemLayout returns how many bytes of the file at path are data and how many
// are holes (pages.Data); it reads no file contents. On a filesystem without
// hole reporting the whole file counts as data.
func MemLayout(path string) (data, holes int64, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0, err
	}
	ext, err := pages.Data(path)
	if err != nil {
		return 0, 0, err
	}
	for _, e := range ext {
		data += min(int64(e.End())*pages.Size, fi.Size()) - int64(e.Page)*pages.Size
	}
	return data, fi.Size() - data, nil
}

// FillHoles writes zeroes into every hole of the file at path, so that it
// stores every page: the memory file a VMM's full memory dump would leave.
// Reading it back costs I/O for every page, free or not.
func FillHoles(path string) error {
	data, err := pages.Data(path)
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
	for _, e := range append(data, pages.Extent{Page: pages.Count(fi.Size())}) {
		if err := fill(off, min(int64(e.Page)*pages.Size, fi.Size())); err != nil {
			return err
		}
		off = int64(e.End()) * pages.Size
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
	zero, err := pages.Zero(path)
	if err != nil {
		return 0, fmt.Errorf("punch zero pages: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, fmt.Errorf("punch zero pages: %w", err)
	}
	defer f.Close()
	var punched int64
	for _, r := range zero {
		off, n := int64(r.Page)*pages.Size, int64(r.N)*pages.Size
		if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n); err != nil {
			if errors.Is(err, unix.EOPNOTSUPP) {
				return punched, fmt.Errorf("%s: %w", path, ErrNoPunch)
			}
			return punched, fmt.Errorf("punch zero pages of %s at %d+%d: %w", path, off, n, err)
		}
		punched += int64(r.N)
	}
	if err := f.Sync(); err != nil {
		return punched, fmt.Errorf("punch zero pages of %s: %w", path, err)
	}
	return punched, nil
}
