package snapshot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/atomicfile"
)

// CreateOptions tune Create.
type CreateOptions struct {
	// Replace allows OUT to exist already as a snapbpf snapshot, which
	// Commit then replaces atomically (RENAME_EXCHANGE): at every instant
	// OUT is the complete old or the complete new snapshot. A directory that
	// is neither a snapshot nor empty is never replaced.
	Replace bool
}

// Builder is a snapshot under construction in a temporary directory. The VMM
// writes StatePath and MemPath; Commit then publishes the directory at OUT.
// Callers should `defer b.Abort()`, which is a no-op after a successful Commit.
type Builder struct {
	out  string
	tmp  string
	opts CreateOptions
	lock *os.File // flock held while tmp is a temporary; see lockName
	done bool
}

// Create starts a snapshot that Commit will publish at out. It refuses an
// existing out (unless it is an empty directory, or opts.Replace is set and
// it is a snapshot), then makes a temporary directory OUT.tmp-<hex> next to
// it, on the same filesystem so that the final rename is atomic.
//
// Temporary directories left in out's parent by earlier creations that
// crashed, of any out (their creator no longer holds the lock), are removed
// here, so a crash costs disk space only until the next creation there.
func Create(out string, opts CreateOptions) (*Builder, error) {
	out = filepath.Clean(out)
	base := filepath.Base(out)
	if base == "." || base == ".." || base == string(filepath.Separator) {
		return nil, &Error{Path: out, Kind: ErrForeign, Problem: "not usable as a snapshot directory name", Fix: "pass a path such as ./snapshots/NAME to --out"}
	}
	parent := filepath.Dir(out)
	if fi, err := os.Stat(parent); err != nil || !fi.IsDir() {
		return nil, &Error{Path: parent, Kind: ErrMissing, Problem: "parent directory of the snapshot does not exist", Fix: "create it first (mkdir -p " + parent + ")", Err: err}
	}
	if err := checkOut(out, opts); err != nil {
		return nil, err
	}
	if err := cleanStaleDirs(parent); err != nil {
		return nil, err
	}

	b := &Builder{out: out, opts: opts}
	for attempt := 0; ; attempt++ {
		name, err := newTempName(base)
		if err != nil {
			return nil, err
		}
		b.tmp = filepath.Join(parent, name)
		err = os.Mkdir(b.tmp, 0o700) // guest memory may hold secrets
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrExist) || attempt >= 10 {
			return nil, fmt.Errorf("create temporary snapshot directory: %w", err)
		}
	}
	lock, err := os.OpenFile(filepath.Join(b.tmp, lockName), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		var ok bool
		if ok, err = tryLock(lock); err == nil && !ok {
			err = errors.New("lock held by another process")
		}
		if err != nil {
			lock.Close()
		}
	}
	if err != nil {
		os.RemoveAll(b.tmp)
		return nil, fmt.Errorf("lock temporary snapshot directory %s: %w", b.tmp, err)
	}
	b.lock = lock
	return b, nil
}

// checkOut refuses an out that Commit could not or should not take over.
func checkOut(out string, opts CreateOptions) error {
	fi, err := os.Lstat(out)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		if ents, err := os.ReadDir(out); err == nil && len(ents) == 0 {
			return nil
		}
	}
	if !opts.Replace {
		return &Error{Path: out, Kind: ErrExists, Problem: "already exists",
			Fix: "choose another --out, or remove it first (snapbpf snapshot inspect " + out + " shows what it is)"}
	}
	if !fi.IsDir() || !looksLikeSnapshot(out) {
		return &Error{Path: out, Kind: ErrExists, Problem: "exists and is not a snapbpf snapshot; refusing to replace it",
			Fix: "choose another --out, or move it away"}
	}
	return nil
}

// looksLikeSnapshot reports whether dir holds a manifest of our kind, of any
// format version and whatever the state of the other files: a damaged
// snapshot is exactly what a user wants to replace.
func looksLikeSnapshot(dir string) bool {
	f, err := os.Open(filepath.Join(dir, ManifestName))
	if err != nil {
		return false
	}
	defer f.Close()
	var head struct {
		Kind string `json:"kind"`
	}
	err = json.NewDecoder(io.LimitReader(f, maxManifestSize)).Decode(&head)
	return err == nil && head.Kind == Kind
}

// Dir returns the temporary directory the VMM writes into.
func (b *Builder) Dir() string { return b.tmp }

// Out returns the final path of the snapshot.
func (b *Builder) Out() string { return b.out }

// StatePath returns where the VMM must write the device state.
func (b *Builder) StatePath() string { return filepath.Join(b.tmp, StateName) }

// MemPath returns where the VMM must write the guest memory.
func (b *Builder) MemPath() string { return filepath.Join(b.tmp, MemName) }

// Commit completes the manifest from the files the VMM wrote (Kind,
// FormatVersion, StateSize and StateSHA256, MemSize, MemDataBytes and
// MemHoleBytes; ID and Created when empty), fsyncs the files, writes the
// manifest and atomically renames the temporary directory to OUT. The caller
// fills in the rest: Function, MemMiB, digests, VMM, Agent, FreePages.
//
// On error before the rename, the temporary directory stays for inspection
// until Abort. The returned Dir describes the published snapshot.
func (b *Builder) Commit(m Manifest) (*Dir, error) {
	if b.done {
		return nil, fmt.Errorf("commit snapshot %s: builder already committed or aborted", b.out)
	}
	vmmFix := "the VMM did not finish saving the snapshot; check its output and run snapbpf snapshot create again"

	stateSHA, stateSize, err := syncAndHash(b.StatePath())
	if err != nil {
		return nil, &Error{Path: b.StatePath(), Kind: ErrMissing, Problem: "cannot read device state", Fix: vmmFix, Err: err}
	}
	if stateSize == 0 {
		return nil, &Error{Path: b.StatePath(), Kind: ErrTruncated, Problem: "device state is empty", Fix: vmmFix}
	}
	memSize, data, holes, err := syncAndLayout(b.MemPath())
	if err != nil {
		return nil, &Error{Path: b.MemPath(), Kind: ErrMissing, Problem: "cannot read memory file", Fix: vmmFix, Err: err}
	}
	if memSize == 0 {
		return nil, &Error{Path: b.MemPath(), Kind: ErrTruncated, Problem: "memory file is empty", Fix: vmmFix}
	}

	m.Kind = Kind
	m.FormatVersion = FormatVersion
	if m.ID == "" {
		if m.ID, err = newID(); err != nil {
			return nil, err
		}
	}
	if m.Created.IsZero() {
		m.Created = time.Now().UTC()
	}
	m.StateSize, m.StateSHA256 = stateSize, stateSHA
	m.MemSize, m.MemDataBytes, m.MemHoleBytes = memSize, data, holes
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("commit snapshot %s: invalid manifest: %w", b.out, err)
	}
	enc, err := m.encode()
	if err != nil {
		return nil, err
	}
	if err := writeAtomic(b.tmp, ManifestName, func(w io.Writer) error {
		_, err := w.Write(enc)
		return err
	}); err != nil {
		return nil, err
	}
	if err := b.install(); err != nil {
		return nil, err
	}
	b.done = true
	// The lock file went to OUT with the rename; it is no longer needed.
	// Leaving it after a crash here is harmless (Open ignores it).
	os.Remove(filepath.Join(b.out, lockName))
	b.lock.Close()
	if err := atomicfile.SyncDir(b.out); err != nil {
		return nil, err
	}
	// Opened like any snapshot, so the Dir holds checked descriptors.
	return Open(b.out)
}

// install renames the temporary directory to OUT and makes that durable.
func (b *Builder) install() error {
	parent := filepath.Dir(b.out)
	if err := checkOut(b.out, b.opts); err != nil {
		return err // OUT changed since Create
	}
	fi, err := os.Lstat(b.out)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	case fi.IsDir() && isEmptyDir(b.out):
		// rmdir only succeeds on an empty directory, so this cannot drop data.
		if err := os.Remove(b.out); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove empty %s: %w", b.out, err)
		}
	default: // an existing snapshot and opts.Replace, checked by checkOut
		if err := unix.Renameat2(unix.AT_FDCWD, b.tmp, unix.AT_FDCWD, b.out, unix.RENAME_EXCHANGE); err != nil {
			return &Error{Path: b.out, Kind: ErrExists, Problem: "cannot atomically replace the existing snapshot",
				Fix: "remove it first and run snapbpf snapshot create again", Err: err}
		}
		if err := atomicfile.SyncDir(parent); err != nil {
			return err
		}
		// b.tmp now holds the old snapshot. If we crash before it is gone,
		// the next Create of OUT removes it (see staleDir).
		if err := os.RemoveAll(b.tmp); err != nil {
			return fmt.Errorf("remove replaced snapshot %s: %w", b.tmp, err)
		}
		return atomicfile.SyncDir(parent)
	}

	// RENAME_NOREPLACE: if something appeared at OUT since the check, fail
	// rather than silently replace it (plain rename replaces empty dirs).
	err = unix.Renameat2(unix.AT_FDCWD, b.tmp, unix.AT_FDCWD, b.out, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		// The filesystem lacks the flag; rename(2) still never replaces a
		// non-empty directory, which is all that can hold data here.
		err = os.Rename(b.tmp, b.out)
	}
	if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) {
		return &Error{Path: b.out, Kind: ErrExists, Problem: "appeared while the snapshot was being created",
			Fix: "choose another --out, or remove it and run snapbpf snapshot create again", Err: err}
	}
	if err != nil {
		return fmt.Errorf("rename %s to %s: %w", b.tmp, b.out, err)
	}
	return atomicfile.SyncDir(parent)
}

// Abort removes the temporary directory. It is safe to call more than once
// and after Commit, where it does nothing.
func (b *Builder) Abort() error {
	if b.done {
		return nil
	}
	b.done = true
	err := os.RemoveAll(b.tmp)
	b.lock.Close()
	if err != nil {
		return fmt.Errorf("remove temporary snapshot directory %s: %w", b.tmp, err)
	}
	return nil
}

func isEmptyDir(p string) bool {
	ents, err := os.ReadDir(p)
	return err == nil && len(ents) == 0
}

// syncAndHash fsyncs a file written by another process and returns its
// SHA-256 and size. fsync through a read-only descriptor flushes the whole
// inode, whoever dirtied it.
func syncAndHash(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return "", 0, err
	}
	return hashFile(f)
}

// syncAndLayout fsyncs the memory file and measures it without reading it.
func syncAndLayout(path string) (size, data, holes int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, 0, err
	}
	if !fi.Mode().IsRegular() {
		return 0, 0, 0, fmt.Errorf("%s is not a regular file", path)
	}
	if err := f.Sync(); err != nil {
		return 0, 0, 0, err
	}
	data, holes, err = MemLayout(path)
	return fi.Size(), data, holes, err
}
