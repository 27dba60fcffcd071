package wset

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/snapbpf/snapbpf/internal/atomicfile"
)

// maxFileSize bounds what Read loads: far more than a set for the largest
// memory file needs (a fully fragmented 1 TiB file is not a working set).
const maxFileSize = 1 << 30

// Write stores s at path atomically: a temporary file in the same
// directory, fsync, rename over path, fsync of the directory. A crash
// leaves either the old file or the new one, never a torn one.
func Write(path string, s *Set) error {
	data, err := s.MarshalBinary()
	if err != nil {
		return fmt.Errorf("write working set %s: %w", path, err)
	}
	if err := atomicfile.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("working set: %w", err)
	}
	return nil
}

// Read loads the working set at path. A file that is not an intact working
// set of a known version is refused with an error wrapping ErrCorrupt that
// names the file and says what to do.
func Read(path string) (*Set, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read working set: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read working set %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("working set %s: %w: larger than %d bytes", path, ErrCorrupt, maxFileSize)
	}
	s := &Set{}
	if err := s.UnmarshalBinary(data); err != nil {
		hint := "record the working set again (snapbpf record)"
		if !errors.Is(err, ErrCorrupt) {
			hint = "check the file"
		}
		return nil, fmt.Errorf("working set %s: %w; %s", path, err, hint)
	}
	return s, nil
}
