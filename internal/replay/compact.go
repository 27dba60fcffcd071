package replay

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// A compact file holds a working set's pages packed together, apart from
// the memory file: REAP's working-set file and FaaSnap's loading-set file.
// Layout, little-endian:
//
//	offset  size  field
//	0       8     magic "SNAPBPFC"
//	8       4     format version (1)
//	12      4     reserved (0)
//	16      8     data offset D (a multiple of the page size)
//	24      8     metadata length M
//	32      4     CRC-32C of the metadata
//	36      4     CRC-32C of bytes [0, 36)
//	40      M     metadata, JSON (compactMeta)
//	D       ...   the pages of the regions, in region order
//
// The metadata names the memory file the pages were copied from (size,
// snapshot ID, fingerprint): a compact file is never used with another.
const (
	compactMagic   = "SNAPBPFC"
	compactVersion = 1
	compactFixed   = 40
	maxCompactMeta = 64 << 20
)

// Compact file kinds.
const (
	kindREAP    = "reap"
	kindFaaSnap = "faasnap"
)

// ErrCompactMismatch is wrapped by errors for a compact file made from
// another memory file than the one being restored.
var ErrCompactMismatch = errors.New("compact file does not match the snapshot")

// ErrCompactCorrupt is wrapped by errors for a damaged compact file.
var ErrCompactCorrupt = errors.New("corrupt compact file")

// compactMeta describes a compact file.
type compactMeta struct {
	Kind string        `json:"kind"`
	Mem  wset.Identity `json:"mem"`
	// Regions are runs of guest pages, in the order their pages follow
	// each other in the file.
	Regions []pageRun `json:"regions"`
	// Layers are FaaSnap's access layers of the regions (same length).
	Layers  []int     `json:"layers,omitempty"`
	Pages   uint64    `json:"pages"`
	Created time.Time `json:"created"`
	Source  string    `json:"source,omitempty"`
}

// compactPath is where a policy's record phase wrote its compact file;
// policies that keep one embed it.
type compactPath struct{ path string }

// files lists the files whose page cache the policy's VMs use.
func (c compactPath) files(e *env) []string {
	if c.path == "" {
		return []string{e.mem}
	}
	return []string{e.mem, c.path}
}

// compactFile is an opened, checked compact file.
type compactFile struct {
	path    string
	meta    compactMeta
	dataOff int64
	// fileOff[i] is where region i's pages start in the file.
	fileOff []int64
}

// writeCompact copies the regions' pages from the memory file into a new
// compact file at path, atomically and synced (REAP fsyncs its file too).
func writeCompact(path, mem string, meta compactMeta) error {
	meta.Pages = 0
	for _, r := range meta.Regions {
		meta.Pages += r.N
	}
	mb, err := json.Marshal(meta)
	if err != nil {
		return fmt.Errorf("compact file: %w", err)
	}
	dataOff := (int64(compactFixed+len(mb)) + pages.Size - 1) / pages.Size * pages.Size
	hdr := make([]byte, dataOff)
	copy(hdr, compactMagic)
	le := binary.LittleEndian
	le.PutUint32(hdr[8:], compactVersion)
	le.PutUint64(hdr[16:], uint64(dataOff))
	le.PutUint64(hdr[24:], uint64(len(mb)))
	le.PutUint32(hdr[32:], crc32.Checksum(mb, crcTable))
	le.PutUint32(hdr[36:], crc32.Checksum(hdr[:36], crcTable))
	copy(hdr[compactFixed:], mb)

	src, err := os.Open(mem)
	if err != nil {
		return fmt.Errorf("compact file: %w", err)
	}
	defer src.Close()
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("compact file: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("compact file: %w", err)
	}
	if _, err := tmp.Write(hdr); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	buf := make([]byte, 1<<20)
	for _, r := range meta.Regions {
		off, n := int64(r.Start)*pages.Size, int64(r.N)*pages.Size
		for n > 0 {
			b := buf[:min(int64(len(buf)), n)]
			if _, err := src.ReadAt(b, off); err != nil && !(errors.Is(err, io.EOF)) {
				return fmt.Errorf("compact file: read %s at %d: %w", mem, off, err)
			}
			if _, err := tmp.Write(b); err != nil {
				return fmt.Errorf("write %s: %w", path, err)
			}
			off += int64(len(b))
			n -= int64(len(b))
		}
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("compact file: %w", err)
	}
	return nil
}

// openCompact reads and checks the compact file at path: header,
// checksums, kind, size, regions inside the memory file, and that it was
// made from the memory file identified by mem.
func openCompact(path, kind string, mem wset.Identity) (*compactFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open compact file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("open compact file: %w", err)
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("compact file %s: %w: %s", path, ErrCompactCorrupt, fmt.Sprintf(format, a...))
	}
	hdr := make([]byte, compactFixed)
	if _, err := io.ReadFull(f, hdr); err != nil {
		return nil, bad("header: %v", err)
	}
	le := binary.LittleEndian
	switch {
	case string(hdr[:8]) != compactMagic:
		return nil, bad("not a snapbpf compact file (bad magic)")
	case le.Uint32(hdr[36:]) != crc32.Checksum(hdr[:36], crcTable):
		return nil, bad("header checksum")
	case le.Uint32(hdr[8:]) != compactVersion:
		return nil, bad("format version %d, this build reads %d", le.Uint32(hdr[8:]), compactVersion)
	}
	dataOff, metaLen := int64(le.Uint64(hdr[16:])), le.Uint64(hdr[24:])
	if metaLen > maxCompactMeta || dataOff%pages.Size != 0 || dataOff < compactFixed+int64(metaLen) || dataOff > st.Size() {
		return nil, bad("metadata of %d bytes, data at %d, file of %d", metaLen, dataOff, st.Size())
	}
	mb := make([]byte, metaLen)
	if _, err := io.ReadFull(f, mb); err != nil {
		return nil, bad("metadata: %v", err)
	}
	if crc32.Checksum(mb, crcTable) != le.Uint32(hdr[32:]) {
		return nil, bad("metadata checksum")
	}
	c := &compactFile{path: path, dataOff: dataOff}
	if err := json.Unmarshal(mb, &c.meta); err != nil {
		return nil, bad("metadata: %v", err)
	}
	if c.meta.Kind != kind {
		return nil, fmt.Errorf("compact file %s is a %s file, not %s", path, c.meta.Kind, kind)
	}
	if err := sameMem(c.meta.Mem, mem); err != nil {
		return nil, fmt.Errorf("compact file %s: %w", path, err)
	}
	if c.meta.Layers != nil && len(c.meta.Layers) != len(c.meta.Regions) {
		return nil, bad("%d layers for %d regions", len(c.meta.Layers), len(c.meta.Regions))
	}
	memPages := uint64(mem.Size+pages.Size-1) / pages.Size
	seen := newBitmap(memPages)
	var total uint64
	off := dataOff
	for i, r := range c.meta.Regions {
		if r.N == 0 || r.Start >= memPages || r.N > memPages-r.Start {
			return nil, bad("region %d (pages %d+%d) outside the memory file's %d pages", i, r.Start, r.N, memPages)
		}
		for p := r.Start; p < r.end(); p++ {
			if seen.has(p) {
				return nil, bad("page %d in two regions", p)
			}
			seen.set(p)
		}
		c.fileOff = append(c.fileOff, off)
		off += int64(r.N) * pages.Size
		total += r.N
	}
	if total != c.meta.Pages || off != st.Size() {
		return nil, bad("%d pages in regions, %d in metadata, file of %d bytes for data at %d (truncated?)", total, c.meta.Pages, st.Size(), dataOff)
	}
	return c, nil
}

// sameMem refuses a compact file made from another memory file. Fields
// empty on either side are not compared.
func sameMem(made, now wset.Identity) error {
	var why string
	switch {
	case made.Size != now.Size:
		why = "sizes differ"
	case made.SnapshotID != "" && now.SnapshotID != "" && made.SnapshotID != now.SnapshotID:
		why = "snapshot IDs differ"
	case made.Fingerprint != "" && now.Fingerprint != "" && made.Fingerprint != now.Fingerprint:
		why = "contents differ"
	default:
		return nil
	}
	return fmt.Errorf("%w: %s: it was made from a memory file of %s, this one has %s; prepare it again for this snapshot",
		ErrCompactMismatch, why, made, now)
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)
