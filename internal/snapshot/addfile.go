package snapshot

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/snapbpf/snapbpf/internal/atomicfile"
)

// AddFile atomically adds or replaces the auxiliary file name (slash
// separated, relative, e.g. "wset/hello.ws") in the snapshot directory dir.
// write produces the contents; they go to a temporary file in the same
// directory, which is fsynced and renamed over the target, and the directory
// is fsynced. If write fails, or the process crashes, the previous contents
// (or absence) of the file remain. The core files (manifest, state, mem) are
// never writable this way.
func AddFile(dir, name string, write func(w io.Writer) error) error {
	if err := checkAuxName(name); err != nil {
		return err
	}
	mpath := filepath.Join(dir, ManifestName)
	if fi, err := os.Lstat(mpath); err != nil || !fi.Mode().IsRegular() {
		return &Error{Path: mpath, Kind: ErrMissing, Problem: "not a snapshot directory (no manifest)",
			Fix: "pass a directory made by snapbpf snapshot create", Err: err}
	}
	target := filepath.Join(dir, filepath.FromSlash(name))
	if err := mkdirAllSync(dir, path.Dir(name)); err != nil {
		return err
	}
	return writeAtomic(filepath.Dir(target), filepath.Base(target), write)
}

// checkAuxName refuses names that escape the directory, hit a core file, or
// could collide with temporary names (which start with a dot).
func checkAuxName(name string) error {
	bad := func(why string) error {
		return fmt.Errorf("snapshot file name %q: %s", name, why)
	}
	if name == "" || !filepath.IsLocal(name) || path.Clean(name) != name || strings.Contains(name, `\`) {
		return bad("must be a clean relative path inside the snapshot")
	}
	switch strings.Split(name, "/")[0] {
	case ManifestName, StateName, MemName:
		return bad("is a core snapshot file, which is never modified")
	}
	for _, c := range strings.Split(name, "/") {
		if strings.HasPrefix(c, ".") {
			return bad("components may not start with '.' (reserved for temporary files)")
		}
	}
	return nil
}

// mkdirAllSync creates dir/rel and fsyncs each parent of a directory it
// creates, so that the new directory survives a crash along with the file.
func mkdirAllSync(dir, rel string) error {
	if rel == "." {
		return nil
	}
	cur := dir
	for _, c := range strings.Split(rel, "/") {
		next := filepath.Join(cur, c)
		err := os.Mkdir(next, 0o700)
		switch {
		case err == nil:
			if err := atomicfile.SyncDir(cur); err != nil {
				return err
			}
		case errors.Is(err, os.ErrExist):
			if fi, err := os.Lstat(next); err != nil || !fi.IsDir() {
				return fmt.Errorf("%s exists and is not a directory", next)
			}
		default:
			return err
		}
		cur = next
	}
	return nil
}

// writeAtomic writes dir/base via a locked temporary file .base.tmp-<hex>,
// fsync, rename and directory fsync. Stale temporaries of base from crashed
// writers are removed first.
func writeAtomic(dir, base string, write func(w io.Writer) error) (err error) {
	cleanStaleFiles(dir, base)
	name, err := newTempName("." + base)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, name)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	renamed := false
	defer func() {
		// Also runs if write panics, so a failed write never leaves a
		// temporary behind in the common case.
		f.Close()
		if !renamed {
			os.Remove(tmp)
		}
	}()
	// The lock tells cleanStaleFiles of a concurrent writer that this
	// temporary is live.
	if ok, err := tryLock(f); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("lock %s: held by another process", tmp)
	}
	bw := bufio.NewWriterSize(f, 1<<16)
	if err := write(bw); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Join(dir, base), err)
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	target := filepath.Join(dir, base)
	if err := os.Rename(tmp, target); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp, target, err)
	}
	renamed = true
	return atomicfile.SyncDir(dir)
}
