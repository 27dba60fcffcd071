package trace

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// The file layout, little-endian:
//
//	offset  size  field
//	0       8     magic "SNAPBPFT"
//	8       4     format version (1)
//	12      4     flags (0; reserved)
//	16      8     payload length L
//	24      L     payload
//	24+L    4     CRC-32C of bytes [0, 24+L)
//
// The payload is the metadata as a length-prefixed JSON object (fields can
// be added without a version bump), then the event count and per event:
// the signed time since the previous event (ns), the signed distance of its
// page from the previous event's page, the op, the flags and the stall
// (ns), as varints and bytes. Consecutive touches are close in time and
// often in page, so most events take 5 to 8 bytes.
const (
	magic       = "SNAPBPFT"
	headerSize  = 24
	trailerSize = 4
	// maxMetaSize bounds the metadata JSON; a real one is under 1 KiB.
	maxMetaSize = 1 << 20
	// minEventSize is the smallest encoded event.
	minEventSize = 5
	// MaxFileSize bounds what Read accepts: a trace of every page of a
	// 64 GiB guest.
	MaxFileSize = 1 << 30
)

// Version is the format version Write produces.
const Version = 1

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt is wrapped by every error for a file that is not a readable
// trace (bad magic, unknown version, truncated, checksum, contents).
var ErrCorrupt = errors.New("corrupt trace")

// MarshalBinary encodes the trace in the current format.
func (t *Trace) MarshalBinary() ([]byte, error) {
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("encode trace: %w", err)
	}
	meta, err := json.Marshal(t.Meta)
	if err != nil {
		return nil, fmt.Errorf("encode trace metadata: %w", err)
	}
	if len(meta) > maxMetaSize {
		return nil, fmt.Errorf("encode trace: metadata of %d bytes exceeds %d", len(meta), maxMetaSize)
	}
	p := make([]byte, 0, 16+len(meta)+8*len(t.Events))
	p = binary.AppendUvarint(p, uint64(len(meta)))
	p = append(p, meta...)
	p = binary.AppendUvarint(p, uint64(len(t.Events)))
	var prevT int64
	var prevP uint64
	for _, e := range t.Events {
		p = binary.AppendVarint(p, e.TimeNs-prevT)
		// Two's-complement difference read as signed: exact for page
		// indexes below 2^63, which Validate guarantees.
		p = binary.AppendVarint(p, int64(e.Page-prevP))
		p = append(p, byte(e.Op), e.Flags)
		p = binary.AppendUvarint(p, uint64(e.StallNs))
		prevT, prevP = e.TimeNs, e.Page
	}
	out := make([]byte, headerSize, headerSize+len(p)+trailerSize)
	copy(out, magic)
	binary.LittleEndian.PutUint32(out[8:], Version)
	binary.LittleEndian.PutUint64(out[16:], uint64(len(p)))
	out = append(out, p...)
	return binary.LittleEndian.AppendUint32(out, crc32.Checksum(out, crcTable)), nil
}

// UnmarshalBinary decodes a trace, checking everything it can: header,
// checksum, lengths, and the invariants Validate states.
func (t *Trace) UnmarshalBinary(b []byte) error {
	if len(b) < headerSize+trailerSize {
		return fmt.Errorf("%w: %d bytes is shorter than a header", ErrCorrupt, len(b))
	}
	if string(b[:8]) != magic {
		return fmt.Errorf("%w: not a snapbpf trace (bad magic)", ErrCorrupt)
	}
	le := binary.LittleEndian
	v := le.Uint32(b[8:])
	if v == 0 || v > Version {
		return fmt.Errorf("%w: format version %d, this build reads up to %d", ErrCorrupt, v, Version)
	}
	if f := le.Uint32(b[12:]); f != 0 {
		return fmt.Errorf("%w: unknown flags %#x", ErrCorrupt, f)
	}
	n := le.Uint64(b[16:])
	if n != uint64(len(b)-headerSize-trailerSize) {
		return fmt.Errorf("%w: payload length %d, file has %d bytes for it (truncated or extended)", ErrCorrupt, n, len(b)-headerSize-trailerSize)
	}
	end := headerSize + int(n)
	if got, want := crc32.Checksum(b[:end], crcTable), le.Uint32(b[end:]); got != want {
		return fmt.Errorf("%w: checksum %08x, file says %08x", ErrCorrupt, got, want)
	}
	d := decoder{b: b[headerSize:end]}
	metaLen := d.uvarint()
	if d.err == nil && metaLen > maxMetaSize {
		d.fail("metadata of %d bytes", metaLen)
	}
	meta := d.bytes(metaLen)
	var out Trace
	if d.err == nil {
		if err := json.Unmarshal(meta, &out.Meta); err != nil {
			d.fail("metadata: %v", err)
		}
	}
	count := d.uvarint()
	if d.err == nil && count > uint64(len(d.b))/minEventSize {
		d.fail("%d events cannot fit in %d bytes", count, len(d.b))
	}
	if d.err == nil {
		out.Events = make([]Event, 0, count)
	}
	var prevT int64
	var prevP uint64
	for i := uint64(0); i < count && d.err == nil; i++ {
		e := Event{TimeNs: prevT + d.varint(), Page: prevP + uint64(d.varint())}
		e.Op, e.Flags = Op(d.byte()), d.byte()
		stall := d.uvarint()
		if stall > 1<<32-1 {
			d.fail("event %d: stall %d ns", i, stall)
		}
		e.StallNs = uint32(stall)
		out.Events = append(out.Events, e)
		prevT, prevP = e.TimeNs, e.Page
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d bytes after the last event", len(d.b))
	}
	if d.err != nil {
		return d.err
	}
	if err := out.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	out.Version = int(v)
	*t = out
	return nil
}

// Validate checks the invariants every stored trace keeps: events in time
// order, known ops and flags, pages inside the memory file, one first touch
// per page, an upgrade only after a read.
func (t *Trace) Validate() error {
	size := t.Meta.Mem.Size
	if size <= 0 || size > wset.MaxMemSize {
		return fmt.Errorf("memory file size %d out of range (1..%d)", size, int64(wset.MaxMemSize))
	}
	pages := uint64(size+pages.Size-1) / pages.Size
	state := make(map[uint64]Op, len(t.Events))
	late := false
	for i, e := range t.Events {
		if late && e.Flags&FlagLate == 0 {
			return fmt.Errorf("event %d is part of the invocation but follows a touch after its result", i)
		}
		late = e.Flags&FlagLate != 0
		if i > 0 && e.TimeNs < t.Events[i-1].TimeNs {
			return fmt.Errorf("event %d goes back in time (%d ns after %d)", i, e.TimeNs, t.Events[i-1].TimeNs)
		}
		if e.Page >= pages {
			return fmt.Errorf("event %d: page %d beyond the memory file's %d pages", i, e.Page, pages)
		}
		if e.Flags&^knownFlags != 0 {
			return fmt.Errorf("event %d: unknown flags %#x", i, e.Flags)
		}
		prev, seen := state[e.Page]
		switch e.Op {
		case OpRead, OpWrite:
			if seen {
				return fmt.Errorf("event %d: page %d touched first twice", i, e.Page)
			}
		case OpUpgrade:
			if !seen || prev != OpRead {
				return fmt.Errorf("event %d: upgrade of page %d, whose first touch was not a read", i, e.Page)
			}
		default:
			return fmt.Errorf("event %d: unknown op %d", i, e.Op)
		}
		state[e.Page] = e.Op
	}
	return nil
}

// decoder reads varints and bytes, remembering the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, a ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, a...))
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad or truncated number")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad or truncated number")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("truncated event")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) bytes(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("truncated: %d bytes wanted, %d left", n, len(d.b))
		return nil
	}
	out := d.b[:n]
	d.b = d.b[n:]
	return out
}

// Read reads and checks the trace file at path.
func Read(path string) (*Trace, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read trace: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read trace %s: %w", path, err)
	}
	if st.Size() > MaxFileSize {
		return nil, fmt.Errorf("read trace %s: %w: %d bytes is larger than any trace (%d)", path, ErrCorrupt, st.Size(), MaxFileSize)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read trace %s: %w", path, err)
	}
	var t Trace
	if err := t.UnmarshalBinary(b); err != nil {
		return nil, fmt.Errorf("read trace %s: %w", path, err)
	}
	return &t, nil
}

// Write stores the trace at path atomically: a crash leaves the old file
// or the new one, never half of one.
func Write(path string, t *Trace) error {
	b, err := t.MarshalBinary()
	if err != nil {
		return err
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("write trace: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write trace %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write trace %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write trace %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write trace %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
