package record

import (
	"slices"
	"testing"

	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/wset"
)

func TestOutside(t *testing.T) {
	plan := []pages.Extent{{Page: 10, N: 5}, {Page: 20, N: 2}, {Page: 30, N: 10}}
	for _, tc := range []struct {
		e    pages.Extent
		want []pages.Extent
	}{
		{pages.Extent{Page: 0, N: 5}, []pages.Extent{{Page: 0, N: 5}}},
		{pages.Extent{Page: 11, N: 2}, nil},
		{pages.Extent{Page: 8, N: 30}, []pages.Extent{{Page: 8, N: 2}, {Page: 15, N: 5}, {Page: 22, N: 8}}},
		{pages.Extent{Page: 35, N: 10}, []pages.Extent{{Page: 40, N: 5}}},
		{pages.Extent{Page: 50, N: 1}, []pages.Extent{{Page: 50, N: 1}}},
	} {
		if got := outside(tc.e, plan); !slices.Equal(got, tc.want) {
			t.Errorf("outside(%v) = %v, want %v", tc.e, got, tc.want)
		}
	}
}

func TestExtend(t *testing.T) {
	set := &wset.Set{Extents: []pages.Extent{{Page: 100, N: 2}, {Page: 10, N: 1}}, Zero: []pages.Extent{{Page: 500, N: 1}}}
	// The plan merged the gap 11-13 (prefetched though not in the set).
	plan := []pages.Extent{{Page: 10, N: 4}, {Page: 100, N: 2}}
	got := &wset.Set{
		Extents: []pages.Extent{{Page: 12, N: 4}, {Page: 7, N: 1}, {Page: 100, N: 1}},
		Zero:    []pages.Extent{{Page: 500, N: 2}},
	}
	added, zero := extend(set, got, plan)
	want := []pages.Extent{{Page: 100, N: 2}, {Page: 10, N: 1}, {Page: 14, N: 2}, {Page: 7, N: 1}}
	wantAdded := []pages.Extent{{Page: 14, N: 2}, {Page: 7, N: 1}}
	if !slices.Equal(added, wantAdded) || zero != 1 || !slices.Equal(set.Extents, want) || !slices.Equal(set.Zero, []pages.Extent{{Page: 500, N: 2}}) {
		t.Errorf("added %v, %d zero: extents %v zero %v; want %v, 1, %v, [500+2]", added, zero, set.Extents, set.Zero, wantAdded, want)
	}
}

func TestWiden(t *testing.T) {
	const margin = 3
	A := []pages.Extent{{Page: 40, N: 1}, {Page: 45, N: 1}}
	B := []pages.Extent{{Page: 300, N: 1}}
	C := []pages.Extent{{Page: 600, N: 2}, {Page: 603, N: 1}}
	D := []pages.Extent{{Page: 800, N: 1}, {Page: 804, N: 1}}
	own := slices.Concat([]pages.Extent{{Page: 1000, N: 202}}, A, B, C, D)
	set := &wset.Set{Extents: slices.Clone(own)}
	// Holes at pages 50-59 and 598-599.
	data := []pages.Extent{{Page: 0, N: 50}, {Page: 60, N: 538}, {Page: 600, N: 1400}}
	n := widen(set, slices.Concat(D, B, A, C), margin, data, 21)
	// C found the most (3 pages): 597-606 less the holes and C itself.
	// Then A (2): 37-48 less A. D, found after A, would take 9 more pages
	// than the budget has left; B (1 page) takes 297-303 less B.
	want := slices.Concat(own, []pages.Extent{{Page: 597, N: 1}, {Page: 602, N: 1}, {Page: 604, N: 3},
		{Page: 37, N: 3}, {Page: 41, N: 4}, {Page: 46, N: 3}, {Page: 297, N: 3}, {Page: 301, N: 3}})
	if n != 21 || !slices.Equal(set.Extents, want) {
		t.Errorf("widen added %d: %v\nwant 21: %v", n, set.Extents, want)
	}
}

func TestMarginBudget(t *testing.T) {
	for _, tc := range []struct{ pages, want int64 }{
		{0, marginBudgetFloor},
		{1916, marginBudgetFloor}, // alloc's set: 10% would be 191
		{15567, 1556},             // bert's
	} {
		if got := marginBudget(tc.pages); got != tc.want {
			t.Errorf("marginBudget(%d) = %d, want %d", tc.pages, got, tc.want)
		}
	}
}
