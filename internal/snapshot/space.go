package snapshot

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// CheckFreeSpace refuses, before any work, when the filesystem holding dir
// has less than need bytes available to the caller: running out midway
// costs the work done so far, and a VMM whose file-backed guest RAM cannot
// grow dies of SIGBUS. what names what the space is for.
func CheckFreeSpace(dir string, need int64, what string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("check free space for %s in %s: %w", what, dir, err)
	}
	if free := int64(st.Bavail) * st.Bsize; free < need {
		return &Error{Path: dir, Kind: ErrNoSpace,
			Problem: fmt.Sprintf("its filesystem has %d MiB free, %s needs up to %d MiB", free>>20, what, (need+1<<20-1)>>20),
			Fix:     "free space there, or use a directory on another filesystem"}
	}
	return nil
}
