package wset

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"time"

	"github.com/snapbpf/snapbpf/internal/pages"
)

// The file layout, little-endian:
//
//	offset  size  field
//	0       8     magic "SNAPBPFW"
//	8       4     format version (3; 1 and 2 are still read)
//	12      4     flags (0; reserved)
//	16      8     payload length L
//	24      L     payload
//	24+L    4     CRC-32C of bytes [0, 24+L)
//
// The payload is a sequence of varints (strings are a length then bytes):
// page size, memory size, snapshot ID, fingerprint, created (Unix ns),
// source, then the extents: page count, extent count, then per extent the
// signed distance of its first page from the end of the previous extent and
// its length. Distances keep a first-touch-ordered set small: neighbours in
// touch order are usually near each other in the file. Version 2 adds the
// zero extents (touched holes), encoded the same way, after the extents.
// Version 3 adds per-page counts after them: the number of recordings the
// set unites (0: no counts, every page counts once, as in older files),
// and if not 0, the count runs: how many runs, then per run its length in
// pages and its count (Set.Counts).
const (
	magic         = "SNAPBPFW"
	headerSize    = 24
	trailerSize   = 4
	maxStringLen  = 4096
	minExtentSize = 2 // bytes of the smallest encoded extent
)

// Version is the format version Write produces.
const Version = 3

// minVersion is the oldest format version Read accepts. Version 1 sets have
// no zero extents.
const minVersion = 1

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt is wrapped by every error for a file that is not a readable
// working set (bad magic, unknown version, truncated, checksum, contents).
var ErrCorrupt = errors.New("corrupt working set")

// MarshalBinary encodes the set in the current format.
func (s *Set) MarshalBinary() ([]byte, error) {
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("encode working set: %w", err)
	}
	for _, str := range []string{s.Mem.SnapshotID, s.Mem.Fingerprint, s.Source} {
		if len(str) > maxStringLen {
			return nil, fmt.Errorf("encode working set: string of %d bytes exceeds %d", len(str), maxStringLen)
		}
	}
	p := make([]byte, 0, 64+len(s.Source)+len(s.Mem.SnapshotID)+len(s.Mem.Fingerprint)+4*len(s.Extents)+2*len(s.Counts))
	p = binary.AppendUvarint(p, pages.Size)
	p = binary.AppendUvarint(p, uint64(s.Mem.Size))
	p = appendString(p, s.Mem.SnapshotID)
	p = appendString(p, s.Mem.Fingerprint)
	var created int64
	if !s.Created.IsZero() {
		created = s.Created.UnixNano()
	}
	p = binary.AppendVarint(p, created)
	p = appendString(p, s.Source)
	p = appendExtents(p, s.Extents)
	p = appendExtents(p, s.Zero)
	p = binary.AppendUvarint(p, uint64(s.Inputs))
	if s.Inputs > 0 {
		p = binary.AppendUvarint(p, uint64(len(s.Counts)))
		for _, r := range s.Counts {
			p = binary.AppendUvarint(p, r.N)
			p = binary.AppendUvarint(p, uint64(r.Count))
		}
	}

	out := make([]byte, headerSize, headerSize+len(p)+trailerSize)
	copy(out, magic)
	binary.LittleEndian.PutUint32(out[8:], Version)
	binary.LittleEndian.PutUint64(out[16:], uint64(len(p)))
	out = append(out, p...)
	return binary.LittleEndian.AppendUint32(out, crc32Of(out)), nil
}

// UnmarshalBinary decodes a set, refusing anything but a complete, intact
// file of a known version that describes a valid set.
func (s *Set) UnmarshalBinary(data []byte) error {
	if len(data) < len(magic) || string(data[:len(magic)]) != magic {
		return fmt.Errorf("%w: not a working-set file (bad magic)", ErrCorrupt)
	}
	if len(data) < headerSize {
		return fmt.Errorf("%w: truncated header (%d of %d bytes)", ErrCorrupt, len(data), headerSize)
	}
	v := binary.LittleEndian.Uint32(data[8:])
	if v < minVersion || v > Version {
		return fmt.Errorf("%w: format version %d, this snapbpf reads versions %d to %d", ErrCorrupt, v, minVersion, Version)
	}
	if fl := binary.LittleEndian.Uint32(data[12:]); fl != 0 {
		return fmt.Errorf("%w: unknown flags %#x", ErrCorrupt, fl)
	}
	plen := binary.LittleEndian.Uint64(data[16:])
	if have := uint64(len(data) - headerSize); plen > math.MaxInt32 || have < plen+trailerSize {
		return fmt.Errorf("%w: truncated (%d bytes, header promises %d)", ErrCorrupt, len(data), headerSize+plen+trailerSize)
	}
	end := headerSize + int(plen)
	if len(data) != end+trailerSize {
		return fmt.Errorf("%w: %d trailing bytes after the checksum", ErrCorrupt, len(data)-end-trailerSize)
	}
	if want, got := binary.LittleEndian.Uint32(data[end:]), crc32Of(data[:end]); want != got {
		return fmt.Errorf("%w: checksum mismatch (stored %08x, computed %08x)", ErrCorrupt, want, got)
	}
	dec, err := decodePayload(data[headerSize:end], int(v))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	dec.Version = int(v)
	*s = *dec
	return nil
}

func decodePayload(p []byte, version int) (*Set, error) {
	d := decoder{buf: p}
	if ps := d.uvarint("page size"); d.err == nil && ps != pages.Size {
		return nil, fmt.Errorf("page size %d, this host uses %d", ps, pages.Size)
	}
	s := &Set{}
	size := d.uvarint("memory size")
	if d.err == nil && size > MaxMemSize {
		return nil, fmt.Errorf("memory size %d exceeds %d", size, uint64(MaxMemSize))
	}
	s.Mem.Size = int64(size)
	s.Mem.SnapshotID = d.string("snapshot ID")
	s.Mem.Fingerprint = d.string("fingerprint")
	if ns := d.varint("created"); ns != 0 {
		s.Created = time.Unix(0, ns).UTC()
	}
	s.Source = d.string("source")
	var err error
	if s.Extents, err = d.extents("extent"); err != nil {
		return nil, err
	}
	if version >= 2 {
		if s.Zero, err = d.extents("zero extent"); err != nil {
			return nil, err
		}
	}
	if version >= 3 {
		if err := d.counts(s); err != nil {
			return nil, err
		}
	}
	if len(d.buf) != 0 {
		return nil, fmt.Errorf("%d unread bytes after the extents", len(d.buf))
	}
	if err := s.validate(); err != nil {
		return nil, err
	}
	return s, nil
}

// appendExtents encodes a page count, an extent count and the extents,
// each as the signed distance of its first page from the end of the
// previous one and its length.
func appendExtents(p []byte, ext []pages.Extent) []byte {
	p = binary.AppendUvarint(p, uint64(PageCount(ext)))
	p = binary.AppendUvarint(p, uint64(len(ext)))
	var prevEnd uint64
	for _, e := range ext {
		// Two's-complement difference read as signed: exact for any two
		// page indexes below 2^63, which validate guarantees.
		p = binary.AppendVarint(p, int64(e.Page-prevEnd))
		p = binary.AppendUvarint(p, e.N)
		prevEnd = e.End()
	}
	return p
}

// extents decodes what appendExtents wrote and checks the page count.
func (d *decoder) extents(what string) ([]pages.Extent, error) {
	want := d.uvarint(what + " page count")
	n := d.uvarint(what + " count")
	if d.err != nil {
		return nil, d.err
	}
	if n > uint64(len(d.buf)/minExtentSize) {
		return nil, fmt.Errorf("%s count %d does not fit in %d bytes", what, n, len(d.buf))
	}
	var out []pages.Extent // nil when empty, as a Builder leaves it
	if n > 0 {
		out = make([]pages.Extent, 0, n)
	}
	var prevEnd, total uint64
	for i := uint64(0); i < n; i++ {
		delta := d.varint(what)
		length := d.uvarint(what)
		if d.err != nil {
			return nil, d.err
		}
		e := pages.Extent{Page: prevEnd + uint64(delta), N: length}
		out = append(out, e)
		prevEnd = e.End()
		total += length
	}
	if total != want {
		return nil, fmt.Errorf("summary says %d %s pages, extents hold %d", want, what, total)
	}
	return out, nil
}

// counts decodes Set.Inputs and Set.Counts (version 3); validate checks
// them against the extents.
func (d *decoder) counts(s *Set) error {
	inputs := d.uvarint("recording count")
	if d.err != nil {
		return d.err
	}
	if inputs > maxInputs {
		return fmt.Errorf("%d recordings exceed %d", inputs, maxInputs)
	}
	s.Inputs = int(inputs)
	if inputs == 0 {
		return nil
	}
	n := d.uvarint("count run count")
	if d.err != nil {
		return d.err
	}
	if n > uint64(len(d.buf)/2) {
		return fmt.Errorf("count run count %d does not fit in %d bytes", n, len(d.buf))
	}
	if n > 0 {
		s.Counts = make([]CountRun, 0, n)
	}
	for range n {
		length := d.uvarint("count run length")
		count := d.uvarint("count")
		if d.err != nil {
			return d.err
		}
		if count > math.MaxUint32 {
			return fmt.Errorf("count %d out of range", count)
		}
		s.Counts = append(s.Counts, CountRun{N: length, Count: uint32(count)})
	}
	return nil
}

func appendString(p []byte, s string) []byte {
	p = binary.AppendUvarint(p, uint64(len(s)))
	return append(p, s...)
}

// decoder reads varints and strings, remembering the first error so the
// caller checks once.
type decoder struct {
	buf []byte
	err error
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.err = fmt.Errorf("bad or truncated %s", what)
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.buf)
	if n <= 0 {
		d.err = fmt.Errorf("bad or truncated %s", what)
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) string(what string) string {
	n := d.uvarint(what)
	if d.err != nil {
		return ""
	}
	if n > maxStringLen || n > uint64(len(d.buf)) {
		d.err = fmt.Errorf("%s of %d bytes does not fit", what, n)
		return ""
	}
	s := string(d.buf[:n])
	d.buf = d.buf[n:]
	return s
}

func crc32Of(b []byte) uint32 { return crc32.Checksum(b, crcTable) }
