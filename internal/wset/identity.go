package wset

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/pages"
)

// Identity names the memory file a working set was recorded on.
type Identity struct {
	// Size is the memory file's size in bytes.
	Size int64 `json:"size"`
	// SnapshotID is the snapshot's ID, where the file belongs to one.
	SnapshotID string `json:"snapshot_id,omitempty"`
	// Fingerprint is a cheap content fingerprint (see IdentifyFile).
	Fingerprint string `json:"fingerprint,omitempty"`
}

func (id Identity) String() string {
	s := fmt.Sprintf("%d bytes", id.Size)
	if id.SnapshotID != "" {
		s += ", snapshot " + id.SnapshotID
	}
	if id.Fingerprint != "" {
		s += ", fingerprint " + id.Fingerprint
	}
	return s
}

// ErrMismatch is wrapped by errors for a working set applied to a memory
// file other than the one it was recorded on.
var ErrMismatch = errors.New("working set does not match the memory file")

// Check refuses a set recorded for another memory file. Fields empty on
// either side (an older snapshot without an ID) are not compared.
func (s *Set) Check(id Identity) error {
	var why string
	switch {
	case s.Mem.Size != id.Size:
		why = "sizes differ"
	case s.Mem.SnapshotID != "" && id.SnapshotID != "" && s.Mem.SnapshotID != id.SnapshotID:
		why = "snapshot IDs differ"
	case s.Mem.Fingerprint != "" && id.Fingerprint != "" && s.Mem.Fingerprint != id.Fingerprint:
		why = "contents differ"
	default:
		return nil
	}
	return fmt.Errorf("%w: %s: the set was recorded on a file of %s, this file has %s; record the working set again for this snapshot",
		ErrMismatch, why, s.Mem, id)
}

// CheckFile identifies the memory file at path and checks the set against
// it; the error names the file.
func (s *Set) CheckFile(path, snapshotID string) error {
	id, err := IdentifyFile(path, snapshotID)
	if err != nil {
		return err
	}
	if err := s.Check(id); err != nil {
		return fmt.Errorf("memory file %s: %w", path, err)
	}
	return nil
}

// fingerprintSamples is how many 4 KiB blocks the fingerprint reads.
const fingerprintSamples = 64

// IdentifyFile computes the identity of the memory file at path.
//
// The fingerprint hashes the size and 64 blocks of 4 KiB spread evenly over
// the file. That is cheap (256 KiB read, 8 blocks at a time: 3 ms on the
// loaded virtual disk of the development machines) where hashing the
// whole file would read all of guest memory, and it still tells apart
// snapshots of different functions or boots, whose kernel data and heaps
// differ nearly everywhere. The file's hole layout is deliberately left
// out: a sparse and a non-sparse copy of a snapshot hold the same memory
// and must match. It is not a content hash: an in-place edit between
// samples goes unseen, which the snapshot ID is there to catch.
//
// The samples are read with O_DIRECT so identifying a file does not warm
// its page cache (a cold-cache restore must stay cold); where O_DIRECT is
// refused (tmpfs) they are read buffered and dropped again unless they
// were cached before.
func IdentifyFile(path, snapshotID string) (Identity, error) {
	f, direct, err := openForSampling(path)
	if err != nil {
		return Identity{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Identity{}, err
	}
	if !st.Mode().IsRegular() {
		return Identity{}, fmt.Errorf("memory file %s is not a regular file", path)
	}
	size := st.Size()
	h := sha256.New()
	var hdr [16]byte
	copy(hdr[:8], "snapws1\x00")
	binary.LittleEndian.PutUint64(hdr[8:], uint64(size))
	h.Write(hdr[:])
	samples, err := readSamples(f, direct, SampleOffsets(size))
	if err != nil {
		return Identity{}, fmt.Errorf("read %s: %w", path, err)
	}
	for _, b := range samples {
		h.Write(b)
	}
	return Identity{
		Size:        size,
		SnapshotID:  snapshotID,
		Fingerprint: "s64:" + hex.EncodeToString(h.Sum(nil)[:16]),
	}, nil
}

// SampleOffsets are the offsets of the blocks IdentifyFile reads from a
// file of the given size: fingerprintSamples page-aligned offsets spread
// over it, first and last page included, without repeats. A memory file
// served from a remote store fetches these first, so identifying it costs
// no wait on the rest.
func SampleOffsets(size int64) []int64 {
	n := (size + pages.Size - 1) / pages.Size
	if n == 0 {
		return nil
	}
	var offs []int64
	last := int64(-1)
	for i := int64(0); i < fingerprintSamples; i++ {
		p := i * (n - 1) / (fingerprintSamples - 1)
		if p != last {
			offs = append(offs, p*pages.Size)
			last = p
		}
	}
	return offs
}

func openForSampling(path string) (*os.File, bool, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_DIRECT, 0)
	if err == nil {
		return f, true, nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return nil, false, fmt.Errorf("open memory file: %w", err)
	}
	f, err = os.Open(path)
	if err != nil {
		return nil, false, fmt.Errorf("open memory file: %w", err)
	}
	// Without it a read at offset 0 starts a readahead window of several
	// pages, which readSample would not know to drop.
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_RANDOM)
	return f, false, nil
}

// sampleReaders is how many samples are read at once: a restore pays for
// identifying the file before its prefetch starts. 16 measured no faster.
const sampleReaders = 8

// readSamples reads the blocks at offs concurrently and returns them in
// order.
func readSamples(f *os.File, direct bool, offs []int64) ([][]byte, error) {
	out := make([][]byte, len(offs))
	errs := make([]error, len(offs))
	var wg sync.WaitGroup
	for w := range sampleReaders {
		wg.Go(func() {
			buf := alignedBlock()
			for i := w; i < len(offs); i += sampleReaders {
				n, err := readSample(f, direct, buf, offs[i])
				if err != nil {
					errs[i] = fmt.Errorf("at %d: %w", offs[i], err)
					continue
				}
				out[i] = append([]byte(nil), buf[:n]...)
			}
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// alignedBlock returns a pages.Size buffer aligned for O_DIRECT.
func alignedBlock() []byte {
	raw := make([]byte, 2*pages.Size)
	skip := (pages.Size - int(uintptr(unsafe.Pointer(&raw[0]))%pages.Size)) % pages.Size
	return raw[skip : skip+pages.Size]
}

// readSample reads the block at off into buf. A buffered read drops the
// block from the page cache afterwards unless it was already cached.
func readSample(f *os.File, direct bool, buf []byte, off int64) (int, error) {
	if direct {
		// One pread, not ReadAt: after a short read at the end of the file
		// ReadAt would retry at an unaligned offset, which O_DIRECT refuses.
		n, err := unix.Pread(int(f.Fd()), buf, off)
		if err == nil {
			return n, nil
		}
		if !errors.Is(err, unix.EINVAL) {
			return 0, err
		}
		// Some file systems accept O_DIRECT at open but not on read.
	}
	// Without cachestat(2) count the block as cached, so nothing that
	// might have been cached is dropped.
	cached, err := pagecache.CachedIn(f, off, pages.Size)
	if err != nil {
		cached = 1
	}
	n, err := f.ReadAt(buf, off)
	if n == 0 && err != nil {
		return 0, err
	}
	if cached == 0 {
		_ = pagecache.Evict(f, off, pages.Size)
	}
	return n, nil
}
