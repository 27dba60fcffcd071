package snapshot

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/owner"
)

// Temporary names are NAME.tmp-<owner>-<16 hex> for directories being
// created and .NAME.tmp-<owner>-<16 hex> for files being written inside a
// snapshot, where <owner> is the creating process ("PID-START", package
// owner); names of earlier versions lack the owner. The exact shape matters:
// cleanup only ever touches names of this shape, so data that merely looks
// similar is never deleted.
const (
	tmpInfix  = ".tmp-"
	tmpHexLen = 16
	// lockName is a file inside a directory being created. Its creator holds
	// an exclusive flock on it for the directory's whole life as a temporary,
	// so a dead creator (lock released by the kernel) is told apart from a
	// live one running concurrently.
	lockName = ".snapbpf-creating"
	// staleEmptyAge is how old an empty temporary directory must be before
	// cleanup removes it: a creator between mkdir and creating its lock file
	// has an empty directory for an instant and must not lose it.
	staleEmptyAge = time.Minute
)

func randHex(nbytes int) (string, error) {
	b := make([]byte, nbytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("read random bytes: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// newID returns a random 128-bit snapshot ID.
func newID() (string, error) { return randHex(16) }

// newTempName returns prefix + ".tmp-" + this process + "-" + 16 random
// hex digits.
func newTempName(prefix string) (string, error) {
	h, err := randHex(tmpHexLen / 2)
	if err != nil {
		return "", err
	}
	me, err := owner.Self()
	if err != nil {
		return "", fmt.Errorf("name a temporary file: %w", err)
	}
	return prefix + tmpInfix + me.String() + "-" + h, nil
}

// isTempFor reports whether name is a temporary name made by newTempName(prefix).
func isTempFor(name, prefix string) bool {
	rest, ok := strings.CutPrefix(name, prefix+tmpInfix)
	return ok && isTempSuffix(rest)
}

// isTempName reports whether name has the shape of any temporary name.
func isTempName(name string) bool {
	i := strings.LastIndex(name, tmpInfix)
	return i > 0 && isTempSuffix(name[i+len(tmpInfix):])
}

// isTempSuffix reports whether s is what follows ".tmp-" in a temporary
// name: 16 hex digits, after the owner and a dash in current names.
func isTempSuffix(s string) bool {
	if len(s) < tmpHexLen || !isHex(s[len(s)-tmpHexLen:], tmpHexLen) {
		return false
	}
	o, ok := strings.CutSuffix(s[:len(s)-tmpHexLen], "-")
	if !ok {
		return o == "" // an older name: the hex digits alone
	}
	_, rest, ok := owner.Parse(o)
	return ok && rest == ""
}

// tryLock takes a non-blocking exclusive flock on f. It reports false,
// without error, if another open file description holds the lock.
func tryLock(f *os.File) (bool, error) {
	err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("flock %s: %w", f.Name(), err)
	}
	return true, nil
}

// cleanStaleDirs removes temporary directories left in parent by creations
// that crashed, of any --out in parent: NAME.tmp-* whose lock file is not
// held by a live process. It also removes an old snapshot displaced by an
// interrupted replacing Commit (a temporary directory holding a manifest but
// no lock file) and empty temporary directories older than staleEmptyAge.
func cleanStaleDirs(parent string) error {
	_, err := removeStaleDirs(parent)
	return err
}

// staleDirs lists the abandoned temporary directories in parent (see
// cleanStaleDirs).
func staleDirs(parent string) ([]string, error) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return nil, err
	}
	var stale []string
	var errs []error
	for _, e := range entries {
		// DirEntry types come from readdir without following symlinks, so a
		// symlink named like a temporary never leads cleanup elsewhere.
		if !e.IsDir() || !isTempName(e.Name()) {
			continue
		}
		p := filepath.Join(parent, e.Name())
		ok, err := staleDir(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ok {
			stale = append(stale, p)
		}
	}
	return stale, errors.Join(errs...)
}

// removeStaleDirs removes what staleDirs finds and returns what it removed.
func removeStaleDirs(parent string) ([]string, error) {
	stale, err := staleDirs(parent)
	errs := []error{err}
	var removed []string
	for _, p := range stale {
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, &Error{Path: p, Kind: ErrExists, Problem: "cannot remove stale temporary directory of an interrupted snapshot creation",
				Fix: "remove it by hand", Err: err})
			continue
		}
		removed = append(removed, p)
	}
	return removed, errors.Join(errs...)
}

// staleDir decides whether the temporary directory p is abandoned.
func staleDir(p string) (bool, error) {
	lock, err := os.OpenFile(filepath.Join(p, lockName), os.O_RDWR|unix.O_NOFOLLOW, 0)
	switch {
	case err == nil:
		defer lock.Close()
		// The lock is dropped again before the caller removes p; that is
		// safe because only a directory's own creator ever locks it, and a
		// creator that lost its lock is dead.
		return tryLock(lock)
	case errors.Is(err, os.ErrNotExist):
		if _, err := os.Lstat(filepath.Join(p, ManifestName)); err == nil {
			return true, nil // an old snapshot displaced by a replacing Commit
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return false, nil // gone meanwhile
		}
		ents, err := os.ReadDir(p)
		return err == nil && len(ents) == 0 && time.Since(fi.ModTime()) > staleEmptyAge, nil
	default:
		return false, err
	}
}

// cleanStaleFiles removes temporary files .base.tmp-<hex> in dir left by an
// AddFile that crashed; files still locked by a live writer are kept.
func cleanStaleFiles(dir, base string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return // the write that follows reports the real problem
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || !isTempFor(e.Name(), "."+base) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		f, err := os.OpenFile(p, os.O_RDWR|unix.O_NOFOLLOW, 0)
		if err != nil {
			continue
		}
		if ok, _ := tryLock(f); ok {
			// Best effort: a leftover temporary file wastes space but
			// never affects the snapshot, so failing to remove it is not
			// worth failing the caller's write.
			_ = os.Remove(p)
		}
		f.Close()
	}
}

// staleFiles lists the temporary files under dir (at any depth, symbolic
// links not followed) that no live writer holds: leftovers of an AddFile
// that crashed.
func staleFiles(dir string) []string {
	var stale []string
	filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() || !isTempName(e.Name()) {
			return nil
		}
		f, err := os.OpenFile(p, os.O_RDWR|unix.O_NOFOLLOW, 0)
		if err != nil {
			return nil
		}
		defer f.Close()
		if ok, _ := tryLock(f); ok {
			stale = append(stale, p)
		}
		return nil
	})
	return stale
}

// Leftovers lists what interrupted work left in and next to the snapshot
// directory path and no live process owns: temporary files inside it and
// temporary directories of snapshot creations in its parent.
func Leftovers(path string) ([]string, error) {
	path = filepath.Clean(path)
	dirs, err := staleDirs(filepath.Dir(path))
	return append(staleFiles(path), dirs...), err
}

// RemoveLeftovers removes what Leftovers lists and returns what it removed.
func RemoveLeftovers(path string) ([]string, error) {
	path = filepath.Clean(path)
	var removed []string
	var errs []error
	for _, p := range staleFiles(path) {
		if err := os.Remove(p); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, p)
	}
	dirs, err := removeStaleDirs(filepath.Dir(path))
	return append(removed, dirs...), errors.Join(append(errs, err)...)
}
