package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// Dir is a validated snapshot directory. The directory and its core files
// are opened once, without following symbolic links, and checked through
// those descriptors; MemFile and OpenState hand out the very files that
// were checked, so a file renamed over a checked one afterwards is never
// used. Close releases the descriptors.
type Dir struct {
	Path     string
	Manifest Manifest

	dir   *os.File // the directory itself
	mem   *os.File // the memory file, read-only
	state *os.File // the device state, read-only
}

// StatePath returns the path of the device state file. It is for messages
// and measurements; a VMM loads the state from OpenState.
func (d *Dir) StatePath() string { return filepath.Join(d.Path, StateName) }

// MemPath returns the path of the guest memory file. It is for page cache
// operations and measurements; a VMM maps MemFile.
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

// MemFile is the checked memory file, open read-only. It stays owned by d.
func (d *Dir) MemFile() *os.File { return d.mem }

// OpenState returns a new read-only descriptor of the checked device state,
// positioned at its start. Each VMM needs its own: a shared descriptor
// shares its file offset. The caller closes it.
func (d *Dir) OpenState() (*os.File, error) { return reopen(d.state) }

// OpenFile opens the auxiliary file name (e.g. "wset/f.ws") read-only inside
// the directory d was opened from, refusing symbolic links anywhere on the
// way and a file another user could have written. The caller closes it.
func (d *Dir) OpenFile(name string) (*os.File, error) {
	f, err := openBeneath(d.dir, filepath.FromSlash(name))
	if err != nil {
		return nil, err
	}
	if err := checkTrusted(f, "file"); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Close releases the descriptors Open holds.
func (d *Dir) Close() error {
	var errs []error
	for _, f := range []*os.File{d.mem, d.state, d.dir} {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	return errors.Join(errs...)
}

// Open reads and validates the snapshot in path: the directory and its
// files must be owned by root (or the caller) and writable by no one else,
// none of them a symbolic link; the manifest must parse and be of a format
// this build understands, the state file must match its recorded size and
// SHA-256, and the memory file must exist with its recorded size. The
// memory file's contents are never read, so opening keeps a cold restore
// cold. Errors are *Error values naming the file and the fix.
func Open(path string) (_ *Dir, retErr error) {
	// Absolute, so the paths a Dir hands out match what a VMM's
	// /proc/PID/smaps and fd links show.
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	dirf, err := os.OpenFile(path, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, openDirError(path, err)
	}
	d := &Dir{Path: path, dir: dirf}
	defer func() {
		if retErr != nil {
			d.Close()
		}
	}()
	if err := checkTrusted(dirf, "snapshot directory"); err != nil {
		return nil, err
	}

	fix := "recreate it with " + createHint("", path, 0)
	if isTempName(filepath.Base(path)) {
		fix = "this is an unfinished snapshot left by an interrupted creation; delete it, or run snapbpf snapshot create again with the same --out"
	}
	mf, err := d.openCore(ManifestName, "manifest", fix)
	if err != nil {
		return nil, err
	}
	m, err := readManifest(mf, fix)
	mf.Close()
	if err != nil {
		return nil, err
	}
	d.Manifest = *m
	// From here on the manifest is good, so the fix can be exact.
	fix = fmt.Sprintf("the snapshot is damaged; delete %s and recreate it with %s", path, createHint(m.Function, path, m.MemMiB))
	if d.state, err = d.openCore(StateName, "device state", fix); err != nil {
		return nil, err
	}
	if err := checkState(d.state, m, fix); err != nil {
		return nil, err
	}
	if d.mem, err = d.openCore(MemName, "memory file", fix); err != nil {
		return nil, err
	}
	if err := checkSize(d.mem, "memory file", m.MemSize, fix); err != nil {
		return nil, err
	}
	return d, nil
}

// openDirError explains why the snapshot directory did not open.
func openDirError(path string, err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist):
		return &Error{Path: path, Kind: ErrMissing, Problem: "snapshot directory does not exist",
			Fix: "check the path, or create it with " + createHint("", path, 0), Err: unwrapPath(err)}
	case errors.Is(err, unix.ELOOP) || isSymlink(path):
		return &Error{Path: path, Kind: ErrUnsafe, Problem: "snapshot directory is a symbolic link, which snapbpf does not follow",
			Fix: "pass the directory it points to"}
	case errors.Is(err, unix.ENOTDIR):
		return &Error{Path: path, Kind: ErrForeign, Problem: "not a directory; a snapshot is a directory",
			Fix: "pass the snapshot directory given to --out of snapbpf snapshot create"}
	}
	return &Error{Path: path, Kind: ErrMissing, Problem: "cannot open snapshot directory", Err: unwrapPath(err)}
}

// isSymlink reports whether path itself is a symbolic link.
func isSymlink(path string) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.Mode().Type() == fs.ModeSymlink
}

// openCore opens the core file name of d without following a symbolic
// link and checks who can write it. what names the file in messages.
func (d *Dir) openCore(name, what, fix string) (*os.File, error) {
	f, err := openBeneath(d.dir, name)
	if err != nil {
		p := filepath.Join(d.Path, name)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return nil, &Error{Path: p, Kind: ErrMissing, Problem: what + " is missing", Fix: fix}
		case errors.Is(err, ErrUnsafe):
			return nil, err
		}
		return nil, &Error{Path: p, Kind: ErrMissing, Problem: "cannot open " + what, Fix: fix, Err: unwrapPath(err)}
	}
	if err := checkTrusted(f, what); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// openBeneath opens name read-only relative to dir, resolving no symbolic
// link on the way and never leaving dir, so a link planted in the snapshot
// cannot lead to a file elsewhere. Symbolic links are refused with ErrUnsafe.
func openBeneath(dir *os.File, name string) (*os.File, error) {
	p := filepath.Join(dir.Name(), name)
	fd, err := unix.Openat2(int(dir.Fd()), name, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	switch {
	case errors.Is(err, unix.ELOOP):
		return nil, &Error{Path: p, Kind: ErrUnsafe, Problem: "is a symbolic link (or passes through one), which snapbpf does not follow",
			Fix: "replace it with the file itself, or recreate the snapshot"}
	case errors.Is(err, unix.EXDEV):
		return nil, &Error{Path: p, Kind: ErrUnsafe, Problem: "leads outside the snapshot directory", Fix: "recreate the snapshot"}
	case err != nil:
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}

// checkTrusted refuses a file or directory that someone other than root or
// the caller could have written: a snapshot runs as guest memory and device
// state in a VMM started by root, so whoever can write it controls that VMM.
func checkTrusted(f *os.File, what string) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return &Error{Path: f.Name(), Kind: ErrMissing, Problem: "cannot stat " + what, Err: err}
	}
	euid := uint32(os.Geteuid())
	owner := "root"
	if euid != 0 {
		owner = strconv.Itoa(int(euid))
	}
	switch {
	case st.Uid != 0 && st.Uid != euid:
		return &Error{Path: f.Name(), Kind: ErrUnsafe,
			Problem: fmt.Sprintf("%s is owned by uid %d, not by %s: its owner could change it under a running VM", what, st.Uid, owner),
			Fix:     fmt.Sprintf("if you trust its contents: chown %s: %s && chmod go-w %s", owner, f.Name(), f.Name())}
	case st.Mode&0o022 != 0:
		return &Error{Path: f.Name(), Kind: ErrUnsafe,
			Problem: fmt.Sprintf("%s is writable by group or others (mode %04o): they could change it under a running VM", what, st.Mode&0o7777),
			Fix:     fmt.Sprintf("if you trust its contents: chmod go-w %s", f.Name())}
	}
	return nil
}

// reopen returns a new open file description of the file f refers to,
// through /proc/self/fd: the same inode, whatever now has its name.
func reopen(f *os.File) (*os.File, error) {
	fd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("reopen %s: %w", f.Name(), err)
	}
	g := os.NewFile(uintptr(fd), f.Name())
	var a, b unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &a); err != nil {
		g.Close()
		return nil, fmt.Errorf("reopen %s: %w", f.Name(), err)
	}
	if err := unix.Fstat(fd, &b); err != nil || a.Dev != b.Dev || a.Ino != b.Ino {
		g.Close()
		return nil, fmt.Errorf("reopen %s: /proc/self/fd/%d led to another file", f.Name(), f.Fd())
	}
	return g, nil
}

// unwrapPath strips the *fs.PathError around err: the errors of this
// package name the path themselves, and repeating it makes messages like
// "X: open X: ...".
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
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

// checkSize checks that f is a regular file of exactly want bytes.
func checkSize(f *os.File, what string, want int64, fix string) error {
	path := f.Name()
	fi, err := f.Stat()
	if err != nil {
		return &Error{Path: path, Kind: ErrMissing, Problem: "cannot access " + what, Fix: fix, Err: unwrapPath(err)}
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
// a state file swapped in from another snapshot. It reads f with pread, so
// f's offset stays at the start.
func checkState(f *os.File, m *Manifest, fix string) error {
	path := f.Name()
	if err := checkSize(f, "device state", m.StateSize, fix); err != nil {
		return err
	}
	sum, n, err := hashReader(io.NewSectionReader(f, 0, m.StateSize+1))
	if err != nil {
		return &Error{Path: path, Kind: ErrCorrupt, Problem: "cannot read device state", Fix: fix, Err: unwrapPath(err)}
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
	sum, n, err := hashReader(f)
	if err != nil {
		return "", n, fmt.Errorf("read %s: %w", f.Name(), unwrapPath(err))
	}
	return sum, n, nil
}

func hashReader(r io.Reader) (string, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return "", n, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
