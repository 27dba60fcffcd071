package guest

import (
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
)

// Mode bits of the newc format (the same values as Linux st_mode).
const (
	cpioModeDir  = 0o040000
	cpioModeReg  = 0o100000
	cpioModeChar = 0o020000
)

// cpioEntry is one member of an initramfs.
type cpioEntry struct {
	Name   string // path without a leading slash, e.g. "etc/snapbpf/modules"
	Mode   uint32 // type and permission bits (cpioModeReg|0o755, ...)
	Data   []byte // contents of a regular file
	RdevMj uint32 // device major, for device nodes
	RdevMn uint32 // device minor, for device nodes
}

// cpioArchive collects entries and writes them as a deterministic newc
// ("070701") archive, the format the kernel unpacks into its rootfs.
type cpioArchive struct {
	entries map[string]cpioEntry
}

func newCpioArchive() *cpioArchive {
	return &cpioArchive{entries: make(map[string]cpioEntry)}
}

// Dir adds a directory (and its parents).
func (a *cpioArchive) Dir(name string, perm uint32) {
	a.add(cpioEntry{Name: name, Mode: cpioModeDir | perm})
}

// File adds a regular file (and its parent directories).
func (a *cpioArchive) File(name string, perm uint32, data []byte) {
	a.add(cpioEntry{Name: name, Mode: cpioModeReg | perm, Data: data})
}

// CharDev adds a character device node (and its parent directories).
func (a *cpioArchive) CharDev(name string, perm, major, minor uint32) {
	a.add(cpioEntry{Name: name, Mode: cpioModeChar | perm, RdevMj: major, RdevMn: minor})
}

func (a *cpioArchive) add(e cpioEntry) {
	e.Name = strings.TrimPrefix(path.Clean("/"+e.Name), "/")
	// The kernel creates files with open(O_CREAT), not mkdir -p: every
	// parent must be in the archive, ahead of its children.
	for dir := path.Dir(e.Name); dir != "." && dir != "/"; dir = path.Dir(dir) {
		if _, ok := a.entries[dir]; !ok {
			a.entries[dir] = cpioEntry{Name: dir, Mode: cpioModeDir | 0o755}
		}
	}
	a.entries[e.Name] = e
}

// WriteTo writes the archive in name order, which puts every directory
// before its contents, with fixed inode numbers, owners and mtimes so the
// same entries always give the same bytes.
func (a *cpioArchive) WriteTo(w io.Writer) (int64, error) {
	names := make([]string, 0, len(a.entries))
	for n := range a.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	cw := &countWriter{w: w}
	for i, n := range names {
		if err := writeCpioEntry(cw, uint32(i+1), a.entries[n]); err != nil {
			return cw.n, err
		}
	}
	if err := writeCpioEntry(cw, 0, cpioEntry{Name: cpioTrailer}); err != nil {
		return cw.n, err
	}
	return cw.n, nil
}

// cpioTrailer names the entry that ends a newc archive.
const cpioTrailer = "TRAILER!!!"

func writeCpioEntry(w io.Writer, ino uint32, e cpioEntry) error {
	nlink := uint32(1)
	if e.Mode&0o170000 == cpioModeDir {
		nlink = 2
	}
	// Fields: magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
	// devminor, rdevmajor, rdevminor, namesize (with its NUL), check.
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, e.Mode, 0, 0, nlink, 0, len(e.Data), 0, 0, e.RdevMj, e.RdevMn, len(e.Name)+1, 0)
	buf := make([]byte, 0, len(hdr)+len(e.Name)+4)
	buf = append(buf, hdr...)
	buf = append(buf, e.Name...)
	buf = append(buf, 0)
	buf = append(buf, make([]byte, pad4(len(buf)))...)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("write cpio header %s: %w", e.Name, err)
	}
	if len(e.Data) == 0 {
		return nil
	}
	if _, err := w.Write(e.Data); err != nil {
		return fmt.Errorf("write cpio data %s: %w", e.Name, err)
	}
	if _, err := w.Write(make([]byte, pad4(len(e.Data)))); err != nil {
		return fmt.Errorf("write cpio padding %s: %w", e.Name, err)
	}
	return nil
}

// pad4 is the padding that brings n up to a multiple of four.
func pad4(n int) int { return (4 - n%4) % 4 }

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
