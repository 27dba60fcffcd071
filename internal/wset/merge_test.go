package wset

import (
	"errors"
	"slices"
	"testing"
)

func TestMerge(t *testing.T) {
	mem := Identity{Size: 1000 * PageSize, Fingerprint: "s64:f"}
	set := func(ext ...Extent) *Set { return &Set{Mem: mem, Extents: ext} }
	tests := []struct {
		name   string
		sets   []*Set
		want   []Extent
		common []Extent
	}{
		{"one", []*Set{set(Extent{5, 3}, Extent{1, 1})}, []Extent{{5, 3}, {1, 1}}, []Extent{{5, 3}, {1, 1}}},
		{"identical", []*Set{set(Extent{5, 3}), set(Extent{5, 3})}, []Extent{{5, 3}}, []Extent{{5, 3}}},
		{"disjoint", []*Set{set(Extent{10, 2}), set(Extent{0, 2})}, []Extent{{10, 2}, {0, 2}}, nil},
		{
			"first order kept, new pages of later sets appended",
			[]*Set{
				set(Extent{100, 10}, Extent{0, 5}),
				set(Extent{3, 4}, Extent{105, 10}, Extent{50, 1}),
				set(Extent{50, 1}, Extent{104, 2}, Extent{4, 1}, Extent{900, 1}),
			},
			[]Extent{{100, 10}, {0, 7}, {110, 5}, {50, 1}, {900, 1}}, // 5,6 extend 0..4
			// 4 and 105 are in all three; the first set's order.
			[]Extent{{105, 1}, {4, 1}},
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
	a := &Set{Mem: Identity{Size: 100 * PageSize, SnapshotID: "a"}, Extents: []Extent{{1, 1}}}
	b := &Set{Mem: Identity{Size: 100 * PageSize, SnapshotID: "b"}, Extents: []Extent{{1, 1}}}
	if _, _, err := Merge(a, b); !errors.Is(err, ErrMismatch) {
		t.Fatalf("merge across snapshots: %v", err)
	}
	if _, _, err := Merge(); err == nil {
		t.Fatal("merge of nothing")
	}
	bad := &Set{Mem: a.Mem, Extents: []Extent{{1, 2}, {2, 1}}}
	if _, _, err := Merge(a, bad); err == nil {
		t.Fatal("merge of an invalid set")
	}
}

func TestMergeFillsIdentity(t *testing.T) {
	old := &Set{Mem: Identity{Size: 10 * PageSize}, Extents: []Extent{{1, 1}}}
	newer := &Set{Mem: Identity{Size: 10 * PageSize, SnapshotID: "s", Fingerprint: "f"}, Extents: []Extent{{2, 1}}}
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
	a := &Set{Mem: id, Extents: []Extent{{0, 4}}, Zero: []Extent{{100, 2}}}
	b := &Set{Mem: id, Extents: []Extent{{2, 4}}, Zero: []Extent{{101, 3}, {50, 1}}}
	u, common, err := Merge(a, b)
	if err != nil {
		t.Fatal(err)
	}
	want := []Extent{{100, 4}, {50, 1}}
	if !slices.Equal(u.Zero, want) || u.ZeroPages() != 5 {
		t.Fatalf("zero extents %v, want %v", u.Zero, want)
	}
	if want := []Extent{{101, 1}}; !slices.Equal(common.Zero, want) || !slices.Equal(common.Extents, []Extent{{2, 2}}) {
		t.Fatalf("common %v zero %v, want [2+2] zero %v", common.Extents, common.Zero, want)
	}
}
