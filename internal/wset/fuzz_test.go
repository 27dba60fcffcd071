package wset

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/pages"
)

// FuzzRead feeds arbitrary bytes to the decoder: it must never panic, and
// whatever it accepts must encode and decode back to the same set. A
// second input, read as extents, checks that valid sets built from fuzz
// data round-trip too.
func FuzzRead(f *testing.F) {
	counted := &Set{Mem: Identity{Size: 3 * pages.Size}, Extents: []pages.Extent{{Page: 2, N: 1}, {Page: 0, N: 2}}, Inputs: 2, Counts: []CountRun{{1, 2}, {2, 1}}}
	for _, s := range []*Set{sampleSet(), {}, {Mem: Identity{Size: 3 * pages.Size}, Extents: []pages.Extent{{Page: 2, N: 1}, {Page: 0, N: 2}}}, counted} {
		b, err := s.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, []byte{1, 2, 3})
	}
	f.Add([]byte("SNAPBPFW\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"), []byte{})
	f.Add([]byte{}, []byte{0xff, 0, 0xff, 0xff, 7})

	f.Fuzz(func(t *testing.T, data, ext []byte) {
		var s Set
		if err := s.UnmarshalBinary(data); err == nil {
			again, err := s.MarshalBinary()
			if err != nil {
				t.Fatalf("accepted set does not encode: %v", err)
			}
			var back Set
			if err := back.UnmarshalBinary(again); err != nil {
				t.Fatalf("re-encoded set refused: %v", err)
			}
			s.Version = Version // re-encoding writes the current version
			if !equalSets(&s, &back) {
				t.Fatalf("round trip changed the set:\n%+v\n%+v", s, back)
			}
		}

		built := setFromBytes(ext)
		enc, err := built.MarshalBinary()
		if err != nil {
			t.Fatalf("valid set does not encode: %v", err)
		}
		var dec Set
		if err := dec.UnmarshalBinary(enc); err != nil {
			t.Fatalf("valid set refused: %v", err)
		}
		built.Version = Version
		if !equalSets(built, &dec) {
			t.Fatalf("round trip changed the set:\n%+v\n%+v", built, dec)
		}
	})
}

// setFromBytes builds a valid set out of fuzz bytes: pairs of (page, run
// length) through a Builder, which drops repeats as capture would.
func setFromBytes(b []byte) *Set {
	// One Builder keeps extents and zero extents disjoint; the top bit of
	// the length byte says which list a run goes to.
	var bld Builder
	var zero []bool
	for len(b) >= 3 {
		page := uint64(binary.LittleEndian.Uint16(b)) * uint64(1+b[2]%8)
		n := uint64(b[2]%64) + 1
		before := len(bld.Extents())
		bld.Add(page, n)
		for range len(bld.Extents()) - before {
			zero = append(zero, b[2]&0x80 != 0)
		}
		b = b[3:]
	}
	var ext, zext []pages.Extent
	var end uint64
	for i, e := range bld.Extents() {
		end = max(end, e.End())
		// Runs merged into an earlier extent went to that extent's list.
		if i < len(zero) && zero[i] {
			zext = append(zext, e)
		} else {
			ext = append(ext, e)
		}
	}
	return &Set{
		Mem:     Identity{Size: max(0, int64(end)*pages.Size-int64(len(b))), SnapshotID: string(b), Fingerprint: "x"},
		Extents: ext,
		Zero:    zext,
		Created: time.Unix(1_700_000_000, int64(end)),
		Source:  "fuzz",
	}
}
