package record

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/pages"
)

// coldCopy is a private, byte-identical copy of a memory file, out of the
// page cache, for a recording's VMMs to map instead of the file itself.
//
// Capture sees a page when it enters the page cache. On the shared file a
// page another process has cached (a VM restored from the same snapshot,
// a prefetch) never enters it again, so the recorded VMM's first touch of
// it would go unseen. Nobody else has the copy, so every page the VMM
// touches enters its cache once, and page offsets are the file's: the
// copy holds the same bytes at the same offsets, holes where it has holes.
//
// The copy is an unnamed file (O_TMPFILE) on the memory file's own
// filesystem: it vanishes when closed or when this process dies, however
// it dies, and no other process can open it by a name. The VMM inherits
// its descriptor (funcvm.RestoreOptions.MemFile); capture and the policy
// hooks reach it as /proc/PID/fd/N of this process.
type coldCopy struct {
	// File is the copy, Path where capture and the VMM's hooks find it
	// (this process's descriptor, /proc/PID/fd/N).
	File *os.File
	Path string
	// DataBytes is how much data was copied (holes are not); Took is how
	// long copying, syncing and dropping the copy's cache took.
	DataBytes int64
	Took      time.Duration
}

// newColdCopy copies mem, data ranges only, into an unnamed file in dir
// (on mem's filesystem), syncs it and drops it from the page cache.
func newColdCopy(mem, dir string) (_ *coldCopy, retErr error) {
	start := time.Now()
	src, err := os.Open(mem)
	if err != nil {
		return nil, fmt.Errorf("private copy of the memory file: %w", err)
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return nil, fmt.Errorf("private copy of the memory file: %w", err)
	}
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EISDIR) {
		return nil, fmt.Errorf("private copy of %s: the filesystem of %s has no unnamed temporary files (O_TMPFILE), which a recording's private copy of the memory file needs; keep snapshots on ext4 or xfs: %w", mem, dir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("private copy of %s: create an unnamed file in %s: %w", mem, dir, err)
	}
	dst := os.NewFile(uintptr(fd), fmt.Sprintf("private copy of %s", mem))
	defer func() {
		if retErr != nil {
			dst.Close()
		}
	}()
	data, err := pages.Data(mem)
	if err != nil {
		return nil, fmt.Errorf("private copy of %s: %w", mem, err)
	}
	var copied int64
	for _, e := range data {
		// Same offsets in both files: what is not written stays a hole.
		off := int64(e.Page) * pages.Size
		dstOff := off
		for end := min(int64(e.End())*pages.Size, fi.Size()); off < end; {
			n, err := unix.CopyFileRange(int(src.Fd()), &off, fd, &dstOff, int(min(end-off, 1<<30)), 0)
			if err != nil {
				return nil, fmt.Errorf("private copy of %s: copy bytes %d-%d: %w (is there free space on its filesystem?)", mem, off, end, err)
			}
			if n == 0 {
				return nil, fmt.Errorf("private copy of %s: it shrank while being copied (at byte %d)", mem, off)
			}
			copied += int64(n)
		}
	}
	if err := unix.Ftruncate(fd, fi.Size()); err != nil {
		return nil, fmt.Errorf("private copy of %s: size it: %w", mem, err)
	}
	// Clean pages only can be dropped: write the copy out first, then
	// take it out of the cache so the first recorded run starts cold.
	if err := unix.Fsync(fd); err != nil {
		return nil, fmt.Errorf("private copy of %s: fsync: %w", mem, err)
	}
	if err := pagecache.Evict(dst, 0, 0); err != nil {
		return nil, fmt.Errorf("private copy of %s: %w", mem, err)
	}
	c := &coldCopy{File: dst, Path: fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), fd), DataBytes: copied}
	// The recorded offsets are only the file's if the copy has its
	// layout: same data ranges, same holes.
	got, err := pages.Data(c.Path)
	if err != nil {
		return nil, fmt.Errorf("private copy of %s: %w", mem, err)
	}
	if !slices.Equal(data, got) {
		return nil, fmt.Errorf("private copy of %s: its data ranges differ from the file's (%d ranges, file %d): the filesystem did not keep holes", mem, len(got), len(data))
	}
	c.Took = time.Since(start)
	return c, nil
}

// Close removes the copy (its last reference).
func (c *coldCopy) Close() error { return c.File.Close() }
