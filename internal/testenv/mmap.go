package testenv

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// MapPrivate maps the whole of the file at path private and read-only, the
// way a VMM maps guest memory, for the workload processes of the capture,
// record and readahead tests. It returns the file too, open: a VMM keeps
// its descriptor, and the tests find the process's pages through it; the
// caller closes it.
func MapPrivate(path string) ([]byte, *os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_PRIVATE)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("mmap %s: %w", path, err)
	}
	return mem, f, nil
}
