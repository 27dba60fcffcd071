package readahead

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/procfs"
)

// ErrNoDescriptor means the process holds no file descriptor for the file,
// so its struct file cannot be reached from outside (it may still map it).
var ErrNoDescriptor = errors.New("process holds no descriptor for the file")

// DisableForProcess turns readahead off for every file descriptor of pid
// that refers to path's (device, inode), and returns how many it changed.
// Mappings made through those descriptors share their struct file, so
// faults in them stop reading around.
//
// How: pidfd_getfd gives us the process's struct file; with the disk's
// read_ahead_kb at 0 for a moment (Suspend), POSIX_FADV_NORMAL on our copy
// sets the shared struct file's window to 0; then the disk's value is put
// back. Waiting for another window on the disk ends with ctx. Side
// effects: the process's POSIX_FADV_RANDOM/NOREUSE on those descriptors
// are cleared too.
func DisableForProcess(ctx context.Context, pid int, path string) (n int, retErr error) {
	var want unix.Stat_t
	if err := unix.Stat(path, &want); err != nil {
		return 0, fmt.Errorf("stat %s: %w", path, err)
	}
	fds, err := procfs.FDs(pid, procfs.File{Dev: want.Dev, Ino: want.Ino})
	if err != nil {
		return 0, err
	}
	if len(fds) == 0 {
		return 0, fmt.Errorf("pid %d, %s: %w", pid, path, ErrNoDescriptor)
	}

	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return 0, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(pidfd)

	var copies []int
	defer func() {
		for _, c := range copies {
			unix.Close(c)
		}
	}()
	for _, fd := range fds {
		c, err := unix.PidfdGetfd(pidfd, fd, 0)
		if errors.Is(err, unix.EBADF) {
			continue // closed since we listed it
		}
		if err != nil {
			return 0, fmt.Errorf("pidfd_getfd %d/%d: %w", pid, fd, err)
		}
		copies = append(copies, c)
	}
	if len(copies) == 0 {
		return 0, fmt.Errorf("pid %d, %s: %w", pid, path, ErrNoDescriptor)
	}

	w, err := Suspend(ctx, path, briefWindow, fmt.Sprintf("readahead off for pid %d's %s", pid, path))
	if err != nil {
		return 0, err // names the disk and its holder; callers name pid
	}
	defer func() { retErr = errors.Join(retErr, w.Close()) }()
	for _, c := range copies {
		if err := unix.Fadvise(c, 0, 0, unix.FADV_NORMAL); err != nil {
			return n, fmt.Errorf("fadvise pid %d: %w", pid, err)
		}
		n++
	}
	return n, nil
}
