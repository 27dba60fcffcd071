package rootfs

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/snapbpf/snapbpf/internal/atomicfile"
	"github.com/snapbpf/snapbpf/internal/guest"
)

// digestStamp remembers the digest of an image file together with what
// would change if the file did: its inode, size and change time (which no
// write or chmod leaves as it was, and which cannot be set back).
type digestStamp struct {
	Dev, Ino   uint64
	Size       int64
	CtimeNs    int64
	MtimeNs    int64
	SHA256     string
	StampedFor string // the path it was computed for
}

// StampDir holds the digest stamps of image files (Digest); a variable so
// tests can move it.
var StampDir = filepath.Join(guest.DefaultCacheDir, "rootfs", "stamps")

// Digest returns the SHA256 of the image file at p. Hashing 200 MiB on
// every restore would cost more than the restore, so the digest is kept in
// a stamp file in StampDir, named for p's absolute path, and reused while
// the file's inode, size, mtime and ctime are unchanged.
func Digest(p string) (string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("runtime image: %w", err)
	}
	cur := stampOf(p, st)
	name := sha256.Sum256([]byte(cur.StampedFor))
	stampPath := filepath.Join(StampDir, hex.EncodeToString(name[:16])+".json")
	if b, err := os.ReadFile(stampPath); err == nil {
		var old digestStamp
		if json.Unmarshal(b, &old) == nil && old.SHA256 != "" {
			sum := old.SHA256
			old.SHA256 = ""
			if old == cur {
				return sum, nil
			}
		}
	}
	sum, _, err := fileDigest(p)
	if err != nil {
		return "", fmt.Errorf("runtime image: %w", err)
	}
	// The stamp is valid only if the file did not change while it was read.
	if st2, err := os.Stat(p); err == nil && stampOf(p, st2) == cur {
		cur.SHA256 = sum
		if b, err := json.Marshal(cur); err == nil && os.MkdirAll(StampDir, 0o755) == nil {
			// Best effort: without a stamp the next caller hashes again.
			atomicfile.WriteFile(stampPath, b, 0o644)
		}
	}
	return sum, nil
}

func stampOf(p string, st os.FileInfo) digestStamp {
	s := digestStamp{Size: st.Size(), MtimeNs: st.ModTime().UnixNano()}
	if abs, err := filepath.Abs(p); err == nil {
		s.StampedFor = abs
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		s.Dev, s.Ino = sys.Dev, sys.Ino
		s.CtimeNs = sys.Ctim.Nano()
	}
	return s
}

// ErrChanged means an image file's digest is not the recorded one.
var ErrChanged = errors.New("runtime image changed")

// Verify checks that the image file at p has digest want (ErrChanged,
// naming both, when it does not).
func Verify(p, want string) error {
	got, err := Digest(p)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("%w: %s has sha256 %s, recorded %s", ErrChanged, p, got, want)
	}
	return nil
}
