package guest

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ulikunitz/xz"
)

// arMagic starts every ar archive; a .deb is one.
const arMagic = "!<arch>\n"

// arMember is one member header of an ar archive.
type arMember struct {
	Name string
	Size int64
}

// arReader walks the members of an ar archive (the common format used by
// .deb files: no symbol table, short names, optionally ending in "/").
type arReader struct {
	r         *bufio.Reader
	remaining int64 // unread bytes of the current member
	pad       bool  // current member is followed by a padding byte
}

func newArReader(r io.Reader) (*arReader, error) {
	br := bufio.NewReader(r)
	magic := make([]byte, len(arMagic))
	if _, err := io.ReadFull(br, magic); err != nil {
		return nil, fmt.Errorf("read ar magic: %w", err)
	}
	if string(magic) != arMagic {
		return nil, errors.New("not an ar archive (bad magic)")
	}
	return &arReader{r: br}, nil
}

// Next skips to the next member and returns its header; io.EOF at the end.
func (a *arReader) Next() (*arMember, error) {
	skip := a.remaining
	if a.pad {
		skip++
	}
	if _, err := io.CopyN(io.Discard, a.r, skip); err != nil {
		return nil, fmt.Errorf("skip ar member: %w", err)
	}
	a.remaining, a.pad = 0, false

	var hdr [60]byte
	n, err := io.ReadFull(a.r, hdr[:])
	if err == io.EOF || (err == io.ErrUnexpectedEOF && n == 0) {
		return nil, io.EOF
	}
	if err != nil {
		return nil, fmt.Errorf("read ar header: %w", err)
	}
	if hdr[58] != '`' || hdr[59] != '\n' {
		return nil, errors.New("bad ar member header")
	}
	name := strings.TrimRight(strings.TrimSpace(string(hdr[0:16])), "/")
	size, err := strconv.ParseInt(strings.TrimSpace(string(hdr[48:58])), 10, 64)
	if err != nil || size < 0 {
		return nil, fmt.Errorf("bad ar size for member %q", name)
	}
	a.remaining, a.pad = size, size%2 == 1
	return &arMember{Name: name, Size: size}, nil
}

// Read reads from the current member.
func (a *arReader) Read(p []byte) (int, error) {
	if a.remaining <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > a.remaining {
		p = p[:a.remaining]
	}
	n, err := a.r.Read(p)
	a.remaining -= int64(n)
	if err == io.EOF && a.remaining > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// errNeedDpkg reports a data member compression this package cannot read.
var errNeedDpkg = errors.New("unsupported data.tar compression")

// extractDeb unpacks the data archive of the .deb at debPath into dir (which
// must exist). It reads data.tar, data.tar.gz and data.tar.xz itself; for
// other compressions (zstd) it falls back to dpkg-deb if that is installed.
func extractDeb(ctx context.Context, debPath, dir string) error {
	err := extractDebGo(ctx, debPath, dir)
	if !errors.Is(err, errNeedDpkg) {
		return err
	}
	dpkg, lerr := exec.LookPath("dpkg-deb")
	if lerr != nil {
		return fmt.Errorf("extract %s: %w and dpkg-deb is not installed (apt-get install dpkg)", debPath, err)
	}
	out, xerr := exec.CommandContext(ctx, dpkg, "-x", debPath, dir).CombinedOutput()
	if xerr != nil {
		return fmt.Errorf("dpkg-deb -x %s: %w: %s", debPath, xerr, bytes.TrimSpace(out))
	}
	return nil
}

func extractDebGo(ctx context.Context, debPath, dir string) error {
	f, err := os.Open(debPath)
	if err != nil {
		return fmt.Errorf("open %s: %w", debPath, err)
	}
	defer f.Close()
	ar, err := newArReader(f)
	if err != nil {
		return fmt.Errorf("read %s: %w", debPath, err)
	}
	for {
		m, err := ar.Next()
		if err == io.EOF {
			return fmt.Errorf("read %s: no data.tar member", debPath)
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", debPath, err)
		}
		if !strings.HasPrefix(m.Name, "data.tar") {
			continue
		}
		var r io.Reader
		switch m.Name {
		case "data.tar":
			r = ar
		case "data.tar.gz":
			zr, err := gzip.NewReader(ar)
			if err != nil {
				return fmt.Errorf("read %s: %s: %w", debPath, m.Name, err)
			}
			r = zr
		case "data.tar.xz":
			zr, err := xz.NewReader(bufio.NewReaderSize(ar, 1<<20))
			if err != nil {
				return fmt.Errorf("read %s: %s: %w", debPath, m.Name, err)
			}
			r = zr
		default:
			return fmt.Errorf("%s: %w (%s)", debPath, errNeedDpkg, m.Name)
		}
		if err := extractTar(ctx, r, dir); err != nil {
			return fmt.Errorf("extract %s from %s: %w", m.Name, debPath, err)
		}
		return nil
	}
}

// extractTar writes the directories, regular files and symlinks of a tar
// stream under dir. Names that would land outside dir are refused: the
// package is digest-checked, but a tar should still never write elsewhere.
func extractTar(ctx context.Context, r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		rel, err := safeRel(h.Name)
		if err != nil {
			return err
		}
		if rel == "" {
			continue // the archive root "./"
		}
		dst := filepath.Join(dir, rel)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := writeFileFrom(dst, tr, os.FileMode(h.Mode).Perm()); err != nil {
				return err
			}
		case tar.TypeSymlink:
			// Absolute links point into the host once extracted, and a later
			// member written through one would land outside dir: skip them
			// (kernel packages carry none that matter here).
			target := h.Linkname
			if path.IsAbs(target) {
				continue
			}
			if _, err := safeRel(path.Join(path.Dir(rel), target)); err != nil {
				return fmt.Errorf("symlink %s -> %s leaves the tree", h.Name, target)
			}
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			if err := os.Symlink(target, dst); err != nil {
				return err
			}
		default:
			// Hard links, devices and fifos do not occur in kernel packages
			// and nothing here needs them.
		}
	}
}

// safeRel cleans an archive member name into a relative path, refusing names
// that climb out of the extraction root.
func safeRel(name string) (string, error) {
	clean := path.Clean("/" + name)
	if clean == "/" {
		return "", nil
	}
	rel := strings.TrimPrefix(clean, "/")
	for _, part := range strings.Split(strings.TrimPrefix(path.Clean(name), "./"), "/") {
		if part == ".." {
			return "", fmt.Errorf("archive member %q leaves the tree", name)
		}
	}
	return rel, nil
}

func writeFileFrom(dst string, r io.Reader, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm|0o200)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", dst, err)
	}
	return f.Close()
}
