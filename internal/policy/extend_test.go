package policy

import (
	"slices"
	"testing"

	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/wset"
)

func TestOutside(t *testing.T) {
	plan := []wset.Extent{{Page: 10, N: 5}, {Page: 20, N: 2}, {Page: 30, N: 10}}
	for _, tc := range []struct {
		e    wset.Extent
		want []wset.Extent
	}{
		{wset.Extent{Page: 0, N: 5}, []wset.Extent{{Page: 0, N: 5}}},
		{wset.Extent{Page: 11, N: 2}, nil},
		{wset.Extent{Page: 8, N: 30}, []wset.Extent{{Page: 8, N: 2}, {Page: 15, N: 5}, {Page: 22, N: 8}}},
		{wset.Extent{Page: 35, N: 10}, []wset.Extent{{Page: 40, N: 5}}},
		{wset.Extent{Page: 50, N: 1}, []wset.Extent{{Page: 50, N: 1}}},
	} {
		if got := outside(tc.e, plan); !slices.Equal(got, tc.want) {
			t.Errorf("outside(%v) = %v, want %v", tc.e, got, tc.want)
		}
	}
}

func TestExtend(t *testing.T) {
	set := &wset.Set{Extents: []wset.Extent{{Page: 100, N: 2}, {Page: 10, N: 1}}, Zero: []wset.Extent{{Page: 500, N: 1}}}
	// The plan merged the gap 11-13 (prefetched though not in the set).
	plan := []wset.Extent{{Page: 10, N: 4}, {Page: 100, N: 2}}
	got := &wset.Set{
		Extents: []wset.Extent{{Page: 12, N: 4}, {Page: 7, N: 1}, {Page: 100, N: 1}},
		Zero:    []wset.Extent{{Page: 500, N: 2}},
	}
	added, zero := extend(set, got, plan)
	want := []wset.Extent{{Page: 100, N: 2}, {Page: 10, N: 1}, {Page: 14, N: 2}, {Page: 7, N: 1}}
	wantAdded := []wset.Extent{{Page: 14, N: 2}, {Page: 7, N: 1}}
	if !slices.Equal(added, wantAdded) || zero != 1 || !slices.Equal(set.Extents, want) || !slices.Equal(set.Zero, []wset.Extent{{Page: 500, N: 2}}) {
		t.Errorf("added %v, %d zero: extents %v zero %v; want %v, 1, %v, [500+2]", added, zero, set.Extents, set.Zero, wantAdded, want)
	}
}

func TestWiden(t *testing.T) {
	set := &wset.Set{Extents: []wset.Extent{{Page: 40, N: 1}, {Page: 3, N: 1}}}
	// Data: pages 0-9, a hole, pages 20-49 and half of page 60.
	data := []snapshot.Extent{{Off: 0, Len: 10 * wset.PageSize}, {Off: 20 * wset.PageSize, Len: 30 * wset.PageSize}, {Off: 60 * wset.PageSize, Len: 100}}
	around := []wset.Extent{{Page: 3, N: 1}, {Page: 40, N: 2}, {Page: 58, N: 1}}
	n := widen(set, around, 4, data)
	// Around page 3: 0-7 less 3 (in the set); around 40-41: 36-45 less 40;
	// around 58: only the partial data page 60.
	want := []wset.Extent{{Page: 40, N: 1}, {Page: 3, N: 1}, {Page: 0, N: 3}, {Page: 4, N: 4}, {Page: 36, N: 4}, {Page: 41, N: 5}, {Page: 60, N: 1}}
	if n != 3+4+4+5+1 || !slices.Equal(set.Extents, want) {
		t.Errorf("widen added %d: %v; want 17: %v", n, set.Extents, want)
	}
}
