package wset

import (
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/snapbpf/snapbpf/internal/pages"
)

func TestMerge(t *testing.T) {
	mem := Identity{Size: 1000 * pages.Size, Fingerprint: "s64:f"}
	set := func(ext ...pages.Extent) *Set { return &Set{Mem: mem, Extents: ext} }
	tests := []struct {
		name   string
		sets   []*Set
		want   []pages.Extent
		common []pages.Extent
	}{
		{"one", []*Set{set(pages.Extent{Page: 5, N: 3}, pages.Extent{Page: 1, N: 1})}, []pages.Extent{{Page: 5, N: 3}, {Page: 1, N: 1}}, []pages.Extent{{Page: 5, N: 3}, {Page: 1, N: 1}}},
		{"identical", []*Set{set(pages.Extent{Page: 5, N: 3}), set(pages.Extent{Page: 5, N: 3})}, []pages.Extent{{Page: 5, N: 3}}, []pages.Extent{{Page: 5, N: 3}}},
		{"disjoint", []*Set{set(pages.Extent{Page: 10, N: 2}), set(pages.Extent{Page: 0, N: 2})}, []pages.Extent{{Page: 10, N: 2}, {Page: 0, N: 2}}, nil},
		{
			"first order kept, new pages of later sets appended",
			[]*Set{
				set(pages.Extent{Page: 100, N: 10}, pages.Extent{Page: 0, N: 5}),
				set(pages.Extent{Page: 3, N: 4}, pages.Extent{Page: 105, N: 10}, pages.Extent{Page: 50, N: 1}),
				set(pages.Extent{Page: 50, N: 1}, pages.Extent{Page: 104, N: 2}, pages.Extent{Page: 4, N: 1}, pages.Extent{Page: 900, N: 1}),
			},
			[]pages.Extent{{Page: 100, N: 10}, {Page: 0, N: 7}, {Page: 110, N: 5}, {Page: 50, N: 1}, {Page: 900, N: 1}}, // 5,6 extend 0..4
			// 4 and 105 are in all three; the first set's order.
			[]pages.Extent{{Page: 105, N: 1}, {Page: 4, N: 1}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, common, err := Merge(tc.sets...)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(u.Extents, tc.want) || !slices.Equal(common.Extents, tc.common) {
				t.Fatalf("union %v common %v, want %v common %v", u.Extents, common.Extents, tc.want, tc.common)
			}
			for _, s := range []*Set{u, common} {
				if err := s.validate(); err != nil {
					t.Fatal(err)
				}
				if s.Mem != mem {
					t.Fatalf("identity %+v", s.Mem)
				}
			}
		})
	}
}

func TestMergeRefuses(t *testing.T) {
	a := &Set{Mem: Identity{Size: 100 * pages.Size, SnapshotID: "a"}, Extents: []pages.Extent{{Page: 1, N: 1}}}
	b := &Set{Mem: Identity{Size: 100 * pages.Size, SnapshotID: "b"}, Extents: []pages.Extent{{Page: 1, N: 1}}}
	if _, _, err := Merge(a, b); !errors.Is(err, ErrMismatch) {
		t.Fatalf("merge across snapshots: %v", err)
	}
	if _, _, err := Merge(); err == nil {
		t.Fatal("merge of nothing")
	}
	bad := &Set{Mem: a.Mem, Extents: []pages.Extent{{Page: 1, N: 2}, {Page: 2, N: 1}}}
	if _, _, err := Merge(a, bad); err == nil {
		t.Fatal("merge of an invalid set")
	}
}

func TestMergeFillsIdentity(t *testing.T) {
	old := &Set{Mem: Identity{Size: 10 * pages.Size}, Extents: []pages.Extent{{Page: 1, N: 1}}}
	newer := &Set{Mem: Identity{Size: 10 * pages.Size, SnapshotID: "s", Fingerprint: "f"}, Extents: []pages.Extent{{Page: 2, N: 1}}}
	u, _, err := Merge(old, newer)
	if err != nil {
		t.Fatal(err)
	}
	if u.Mem != newer.Mem {
		t.Fatalf("identity %+v, want %+v", u.Mem, newer.Mem)
	}
}

func TestMergeUnitesZeroExtents(t *testing.T) {
	id := Identity{Size: 1 << 20}
	a := &Set{Mem: id, Extents: []pages.Extent{{Page: 0, N: 4}}, Zero: []pages.Extent{{Page: 100, N: 2}}}
	b := &Set{Mem: id, Extents: []pages.Extent{{Page: 2, N: 4}}, Zero: []pages.Extent{{Page: 101, N: 3}, {Page: 50, N: 1}}}
	u, common, err := Merge(a, b)
	if err != nil {
		t.Fatal(err)
	}
	want := []pages.Extent{{Page: 100, N: 4}, {Page: 50, N: 1}}
	if !slices.Equal(u.Zero, want) || u.ZeroPages() != 5 {
		t.Fatalf("zero extents %v, want %v", u.Zero, want)
	}
	if want := []pages.Extent{{Page: 101, N: 1}}; !slices.Equal(common.Zero, want) || !slices.Equal(common.Extents, []pages.Extent{{Page: 2, N: 2}}) {
		t.Fatalf("common %v zero %v, want [2+2] zero %v", common.Extents, common.Zero, want)
	}
}

// TestMergeCounts: the union counts, per page, the recordings that touched
// it; sets with counts bring theirs.
func TestMergeCounts(t *testing.T) {
	mem := Identity{Size: 100 * pages.Size, SnapshotID: "s"}
	a := &Set{Mem: mem, Extents: []pages.Extent{{Page: 10, N: 4}, {Page: 0, N: 2}}}
	b := &Set{Mem: mem, Extents: []pages.Extent{{Page: 12, N: 4}, {Page: 50, N: 1}}}
	c := &Set{Mem: mem, Extents: []pages.Extent{{Page: 0, N: 1}, {Page: 13, N: 1}}}
	u, _, err := Merge(a, b, c)
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint64]uint32{}
	u.eachCount(func(p uint64, n uint32) { got[p] = n })
	want := map[uint64]uint32{10: 1, 11: 1, 12: 2, 13: 3, 0: 2, 1: 1, 14: 1, 15: 1, 50: 1}
	if u.Inputs != 3 || !reflect.DeepEqual(got, want) {
		t.Fatalf("union of 3: inputs %d, counts %v, want 3, %v", u.Inputs, got, want)
	}
	// First-touch order stays the issue order: a's pages, then the rest.
	if wantExt := []pages.Extent{{Page: 10, N: 4}, {Page: 0, N: 2}, {Page: 14, N: 2}, {Page: 50, N: 1}}; !reflect.DeepEqual(u.Extents, wantExt) {
		t.Fatalf("union extents %v, want %v", u.Extents, wantExt)
	}
	if sum := u.CountSummary(); !reflect.DeepEqual(sum, []CountPages{{3, 1}, {2, 2}, {1, 6}}) {
		t.Fatalf("count summary %v", sum)
	}
	// A union with counts merged again adds its recordings and counts.
	again, _, err := Merge(u, a)
	if err != nil {
		t.Fatal(err)
	}
	got = map[uint64]uint32{}
	again.eachCount(func(p uint64, n uint32) { got[p] = n })
	if again.Inputs != 4 || got[13] != 4 || got[12] != 3 || got[50] != 1 {
		t.Fatalf("union of the union and a: inputs %d, counts %v", again.Inputs, got)
	}
	if _, err := again.MarshalBinary(); err != nil {
		t.Fatalf("merged set does not encode: %v", err)
	}
}
