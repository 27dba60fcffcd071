package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Dir is a validated snapshot directory.
type Dir struct {
	Path     string
	Manifest Manifest
}

// StatePath returns the path of the device state file.
func (d *Dir) StatePath() string { return filepath.Join(d.Path, StateName) }

// MemPath returns the path of the guest memory file.
func (d *Dir) MemPath() string { return filepath.Join(d.Path, MemName) }

// ManifestPath returns the path of the manifest.
func (d *Dir) ManifestPath() string { return filepath.Join(d.Path, ManifestName) }

// File returns the path of an auxiliary file (see AddFile), e.g. "wset/f.ws".
func (d *Dir) File(name string) string { return filepath.Join(d.Path, filepath.FromSlash(name)) }

// AddFile atomically adds or replaces an auxiliary file in the snapshot; see
// the package-level AddFile.
func (d *Dir) AddFile(name string, write func(w io.Writer) error) error {
	return AddFile(d.Path, name, write)
}

// Open reads and validates the snapshot in path: the manifest must parse and
// be of a format this build understands, the state file must match its
// recorded size and SHA-256, and the memory file must exist with its recorded
// size. The memory file's contents are never read, so opening keeps a cold
// restore cold. Errors are *Error values naming the file and the fix.
func Open(path string) (*Dir, error) {
	// Absolute, so the paths a Dir hands out match what a VMM's
	// /proc/PID/smaps and fd links show.
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, &Error{Path: path, Kind: ErrMissing, Problem: "snapshot directory does not exist",
				Fix: "check the path, or create it with " + createHint("", path, 0), Err: err}
		}
		return nil, &Error{Path: path, Kind: ErrMissing, Problem: "cannot access snapshot directory", Err: err}
	}
	if !fi.IsDir() {
		return nil, &Error{Path: path, Kind: ErrForeign, Problem: "not a directory; a snapshot is a directory",
			Fix: "pass the snapshot directory given to --out of snapbpf snapshot create"}
	}

	fix := "recreate it with " + createHint("", path, 0)
	if isTempName(filepath.Base(path)) {
		fix = "this is an unfinished snapshot left by an interrupted creation; delete it, or run snapbpf snapshot create again with the same --out"
	}
	m, err := readManifest(filepath.Join(path, ManifestName), fix)
	if err != nil {
		return nil, err
	}
	d := &Dir{Path: path, Manifest: *m}
	// From here on the manifest is good, so the fix can be exact.
	fix = fmt.Sprintf("the snapshot is damaged; delete %s and recreate it with %s", path, createHint(m.Function, path, m.MemMiB))
	if err := checkState(d.StatePath(), m, fix); err != nil {
		return nil, err
	}
	if err := checkSize(d.MemPath(), "memory file", m.MemSize, fix); err != nil {
		return nil, err
	}
	return d, nil
}

// createHint renders the command that (re)creates a snapshot.
func createHint(function, out string, memMiB int) string {
	if function == "" {
		function = "NAME"
	}
	s := fmt.Sprintf("snapbpf snapshot create --function %s --out %s", function, out)
	if memMiB > 0 {
		s += fmt.Sprintf(" --mem-mib %d", memMiB)
	}
	return s
}

// checkSize checks that path is a regular file of exactly want bytes.
func checkSize(path, what string, want int64, fix string) error {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return &Error{Path: path, Kind: ErrMissing, Problem: what + " is missing", Fix: fix}
		}
		return &Error{Path: path, Kind: ErrMissing, Problem: "cannot access " + what, Fix: fix, Err: err}
	}
	if !fi.Mode().IsRegular() {
		return &Error{Path: path, Kind: ErrForeign, Problem: fmt.Sprintf("%s is not a regular file (%s)", what, fi.Mode().Type()), Fix: fix}
	}
	if got := fi.Size(); got != want {
		problem := fmt.Sprintf("%s is truncated: %d bytes, manifest says %d", what, got, want)
		if got > want {
			problem = fmt.Sprintf("%s is larger than the manifest says: %d bytes, want %d", what, got, want)
		}
		return &Error{Path: path, Kind: ErrTruncated, Problem: problem, Fix: fix}
	}
	return nil
}

// checkState checks the device state file's size and SHA-256. The state is
// small (KiBs to a few MiB), so hashing it on every open is cheap and catches
// a state file swapped in from another snapshot.
func checkState(path string, m *Manifest, fix string) error {
	if err := checkSize(path, "device state", m.StateSize, fix); err != nil {
		return err
	}
	sum, n, err := fileSHA256(path)
	if err != nil {
		return &Error{Path: path, Kind: ErrCorrupt, Problem: "cannot read device state", Fix: fix, Err: err}
	}
	if n != m.StateSize {
		return &Error{Path: path, Kind: ErrTruncated, Problem: fmt.Sprintf("device state changed while reading: %d bytes, manifest says %d", n, m.StateSize), Fix: fix}
	}
	if sum != m.StateSHA256 {
		return &Error{Path: path, Kind: ErrCorrupt,
			Problem: fmt.Sprintf("device state sha256 %s does not match manifest %s (corrupt, or from another snapshot)", sum, m.StateSHA256), Fix: fix}
	}
	return nil
}

// FileSHA256 returns the lowercase hex SHA-256 of a file, the form used for
// the digests in a Manifest.
func FileSHA256(path string) (string, error) {
	sum, _, err := fileSHA256(path)
	return sum, err
}

func fileSHA256(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	return hashFile(f)
}

func hashFile(f *os.File) (string, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", n, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
