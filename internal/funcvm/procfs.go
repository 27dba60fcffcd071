package funcvm

import (
	"fmt"
	"syscall"

	"github.com/snapbpf/snapbpf/internal/procfs"
)

// allocated is the disk space a file uses: data, not holes.
func allocated(path string) (int64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("stat %s: %w", path, err)
	}
	return st.Blocks * 512, nil
}

// mappingUsage sums, over the process's mappings of path, the resident
// bytes (guest memory touched, shared or private) and the anonymous bytes
// (guest pages written since restore, private copies).
func mappingUsage(pid int, path string) (rss, anon int64, err error) {
	ms, err := fileMappings(pid, path, procfs.Smaps)
	for _, m := range ms {
		rss, anon = rss+m.Rss, anon+m.Anon
	}
	return rss, anon, err
}

// mappingRange is the address range of the process's mappings of path
// (lowest start to highest end; a VMM maps guest RAM once).
func mappingRange(pid int, path string) (start, end uint64, err error) {
	ms, err := fileMappings(pid, path, procfs.Maps)
	if err != nil {
		return 0, 0, err
	}
	if len(ms) == 0 {
		return 0, 0, fmt.Errorf("process %d does not map %s", pid, path)
	}
	start, end = ms[0].Lo, ms[0].Hi
	for _, m := range ms[1:] {
		start, end = min(start, m.Lo), max(end, m.Hi)
	}
	return start, end, nil
}

// fileMappings lists the process's mappings of the file at path, read with
// read (procfs.Maps or procfs.Smaps).
func fileMappings(pid int, path string, read func(int) ([]procfs.Mapping, error)) ([]procfs.Mapping, error) {
	f, err := procfs.FileOf(path)
	if err != nil {
		return nil, err
	}
	ms, err := read(pid)
	return procfs.Of(ms, f), err
}
