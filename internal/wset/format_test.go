package wset

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/pages"
)

func sampleSet() *Set {
	return &Set{
		Mem:     Identity{Size: 512 << 20, SnapshotID: "pyaes-20261125", Fingerprint: "s64:0123456789abcdef0123456789abcdef"},
		Extents: []pages.Extent{{Page: 1000, N: 16}, {Page: 3, N: 2}, {Page: 131071, N: 1}, {Page: 5000, N: 300}, {Page: 0, N: 3}},
		Created: time.Date(2026, 11, 25, 10, 0, 0, 123, time.UTC),
		Source:  "record: pyaes input=1",
	}
}

// equalSets compares sets by value: times by instant, no extents as nil.
func equalSets(a, b *Set) bool {
	na, nb := *a, *b
	if !na.Created.Equal(nb.Created) {
		return false
	}
	na.Created, nb.Created = time.Time{}, time.Time{}
	if len(na.Extents) == 0 {
		na.Extents = nil
	}
	if len(nb.Extents) == 0 {
		nb.Extents = nil
	}
	return reflect.DeepEqual(na, nb)
}

func TestRoundTrip(t *testing.T) {
	for _, s := range []*Set{sampleSet(), {Mem: Identity{Size: 0}}, {Mem: Identity{Size: 4097}, Extents: []pages.Extent{{Page: 1, N: 1}}}} {
		data, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		got := &Set{}
		if err := got.UnmarshalBinary(data); err != nil {
			t.Fatal(err)
		}
		s.Version = Version
		if !equalSets(got, s) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, s)
		}
	}
}

func TestWriteRead(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ws")
	s := sampleSet()
	if err := Write(path, s); err != nil {
		t.Fatal(err)
	}
	// Overwriting is atomic and leaves no temporary file behind.
	s.Source = "second"
	if err := Write(path, s); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries, want only the set", len(entries))
	}
	got, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Source != "second" || got.Pages() != s.Pages() || got.Bytes() != s.Pages()*pages.Size {
		t.Fatalf("read back %+v", got)
	}
}

func TestWriteRefusesInvalid(t *testing.T) {
	s := sampleSet()
	s.Extents = append(s.Extents, pages.Extent{Page: 1001, N: 1}) // overlaps {1000,16}
	if err := Write(filepath.Join(t.TempDir(), "ws"), s); err == nil || !strings.Contains(err.Error(), "overlap") {
		t.Fatalf("Write of overlapping extents: %v", err)
	}
}

func TestReadRefuses(t *testing.T) {
	good, err := sampleSet().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	mutate := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	// reseal recomputes the checksum so the test reaches the check behind it.
	reseal := func(b []byte) []byte {
		end := len(b) - trailerSize
		binary.LittleEndian.PutUint32(b[end:], crc32Of(b[:end]))
		return b
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "bad magic"},
		{"other file", []byte("#!/bin/sh\necho hello\n"), "bad magic"},
		{"header cut", good[:20], "truncated header"},
		{"payload cut", good[:len(good)/2], "truncated"},
		{"checksum cut", good[:len(good)-1], "truncated"},
		{"trailing bytes", append(append([]byte(nil), good...), 0), "trailing"},
		{"new version", mutate(func(b []byte) []byte { b[8] = Version + 1; return b }), fmt.Sprintf("format version %d", Version+1)},
		{"version 0", mutate(func(b []byte) []byte { b[8] = 0; return b }), "format version 0"},
		{"v1 with zero extents", mutate(func(b []byte) []byte { b[8] = 1; return reseal(b) }), "unread bytes"},
		{"flags", mutate(func(b []byte) []byte { b[12] = 1; return b }), "unknown flags"},
		{"bit flip", mutate(func(b []byte) []byte { b[headerSize+5] ^= 0x10; return b }), "checksum mismatch"},
		{"huge length", mutate(func(b []byte) []byte { binary.LittleEndian.PutUint64(b[16:], 1<<62); return b }), "truncated"},
		{"wrong page count", mutate(func([]byte) []byte {
			s := sampleSet()
			s.Extents = s.Extents[:1]
			b, _ := s.MarshalBinary()
			// Pages sits right before the extent count: 16 pages -> 17.
			p := b[headerSize : len(b)-trailerSize]
			i := len(p) - 2 - 1 - 2 - 1 - 1 - 1 // [.. pages(1) count(1) delta(2) n(1) zero pages(1) zero count(1) recordings(1)]
			if p[i] != 16 {
				t.Fatalf("layout changed: %v", p[i-2:])
			}
			p[i] = 17
			return reseal(b)
		}), "summary says 17 extent pages"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ws")
			if err := os.WriteFile(path, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Read(path)
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) ||
				!strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "record the working set again") {
				t.Fatalf("error %q: want ErrCorrupt, %q, the path and a hint", err, tc.want)
			}
		})
	}
}

func TestReadMissingFile(t *testing.T) {
	_, err := Read(filepath.Join(t.TempDir(), "nope"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want not exist", err)
	}
}

func TestZeroExtentsRoundTrip(t *testing.T) {
	s := sampleSet()
	s.Zero = []pages.Extent{{Page: 20000, N: 64}, {Page: 19000, N: 1}}
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var back Set
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	s.Version = Version
	if !equalSets(s, &back) || back.ZeroPages() != 65 || back.Pages() != s.Pages() {
		t.Fatalf("round trip: %+v, want %+v", back, s)
	}

	// A zero extent may not share a page with the working set.
	s.Zero = append(s.Zero, pages.Extent{Page: 1010, N: 2})
	if _, err := s.MarshalBinary(); err == nil || !strings.Contains(err.Error(), "zero extent 2") {
		t.Fatalf("zero extent overlapping extent 0: %v", err)
	}
}

// TestReadsVersion1 keeps sets recorded before zero extents readable.
func TestReadsVersion1(t *testing.T) {
	s := sampleSet()
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// Version 1 is version 3 without the two bytes of an empty zero list
	// and the one of no counts.
	v1 := append([]byte(nil), b[:len(b)-trailerSize-3]...)
	binary.LittleEndian.PutUint32(v1[8:], 1)
	binary.LittleEndian.PutUint64(v1[16:], uint64(len(v1)-headerSize))
	v1 = binary.LittleEndian.AppendUint32(v1, crc32Of(v1))
	var back Set
	if err := back.UnmarshalBinary(v1); err != nil {
		t.Fatal(err)
	}
	s.Version = 1
	if back.Version != 1 || !equalSets(s, &back) {
		t.Fatalf("read %+v, want %+v", back, s)
	}
}

// TestReadsVersion2 keeps sets recorded before counts readable: each page
// counts once.
func TestReadsVersion2(t *testing.T) {
	s := sampleSet()
	s.Zero = []pages.Extent{{Page: 20000, N: 64}}
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// Version 2 is version 3 without the byte of no counts.
	v2 := append([]byte(nil), b[:len(b)-trailerSize-1]...)
	binary.LittleEndian.PutUint32(v2[8:], 2)
	binary.LittleEndian.PutUint64(v2[16:], uint64(len(v2)-headerSize))
	v2 = binary.LittleEndian.AppendUint32(v2, crc32Of(v2))
	var back Set
	if err := back.UnmarshalBinary(v2); err != nil {
		t.Fatal(err)
	}
	s.Version = 2
	if back.Version != 2 || !equalSets(s, &back) {
		t.Fatalf("read %+v, want %+v", back, s)
	}
	if got, want := back.CountSummary(), []CountPages{{Count: 1, Pages: s.Pages()}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("counts of a version 2 set: %v, want %v", got, want)
	}
}

func TestCountsRoundTrip(t *testing.T) {
	s := sampleSet() // 322 pages
	s.Inputs = 3
	s.Counts = []CountRun{{16, 3}, {6, 1}, {300, 2}}
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var back Set
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	s.Version = Version
	if !equalSets(s, &back) {
		t.Fatalf("round trip: %+v, want %+v", back, s)
	}
	for _, tc := range []struct {
		name   string
		inputs int
		counts []CountRun
		want   string
	}{
		{"short", 3, []CountRun{{16, 3}}, "cover 16 pages, the set has 322"},
		{"long", 3, []CountRun{{322, 3}, {1, 1}}, "cover 323 pages"},
		{"zero count", 3, []CountRun{{322, 0}}, "0 of 3 recordings"},
		{"above inputs", 2, []CountRun{{322, 3}}, "3 of 2 recordings"},
		{"counts without inputs", 0, []CountRun{{322, 1}}, "counts no recordings"},
		{"empty run", 1, []CountRun{{0, 1}, {322, 1}}, "count run 0 is empty"},
	} {
		bad := sampleSet()
		bad.Inputs, bad.Counts = tc.inputs, tc.counts
		if _, err := bad.MarshalBinary(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
