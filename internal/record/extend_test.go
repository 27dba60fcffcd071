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
	for _, tc := range []struct{ pages, found, want int64 }{
		{0, 0, 0},
		{2000, 30, 30 * marginPerFound}, // a python function's runs
		{1916, 1000, marginBudgetFloor}, // alloc's set: 10% would be 191
		{15567, 1000, 1556},             // bert's
	} {
		if got := marginBudget(tc.pages, tc.found); got != tc.want {
			t.Errorf("marginBudget(%d, %d) = %d, want %d", tc.pages, tc.found, got, tc.want)
		}
	}
}

// TestMarginOnSyntheticRuns builds a set as a recording does (the first
// run's pages, what the refining runs added, the margin around those) from
// made-up runs, and checks it against a later restore's touches: the
// margin catches the page next to what the runs disagreed on, and leaves
// under 1% of the set untouched. The margin the recordings had (16 pages
// around, up to 10% of the set or 1 MiB) took 56 pages here, 55 of them
// never touched: 2.8% of the set.
func TestMarginOnSyntheticRuns(t *testing.T) {
	// Run 1: 2000 pages, 20 runs of 100 pages 200 apart; the memory file
	// is data everywhere.
	var first []pages.Extent
	for i := range uint64(20) {
		first = append(first, pages.Extent{Page: 1000 + 200*i, N: 100})
	}
	data := []pages.Extent{{Page: 0, N: 1 << 20}}
	// Runs 2-4 add 1105-1106, 1110 and 3150 beyond the prefetch.
	found := []pages.Extent{{Page: 1105, N: 2}, {Page: 1110, N: 1}, {Page: 3150, N: 1}}
	set := &wset.Set{Extents: slices.Concat(first, found)}
	added := widen(set, found, DefaultMargin, data, marginBudget(set.Pages(), wset.PageCount(found)))
	// A later restore touches run 1's pages, 1105 and 1107.
	later := setPages(&wset.Set{Extents: slices.Concat(first, []pages.Extent{{Page: 1105, N: 1}, {Page: 1107, N: 1}})})
	have := setPages(set)
	var untouched int
	for p := range have {
		if !later[p] {
			untouched++
		}
	}
	if !have[1107] {
		t.Errorf("the margin missed page 1107, next to what the runs found: added %v", set.Extents[len(first):])
	}
	if budget := marginBudget(set.Pages()-added, wset.PageCount(found)); added > budget {
		t.Errorf("margin added %d pages around %d found: more than its budget %d", added, wset.PageCount(found), budget)
	}
	if share := float64(untouched) / float64(len(have)); share > 0.01 {
		t.Errorf("%d of the set's %d pages (%.1f%%) untouched by a later restore: more than 1%%", untouched, len(have), 100*share)
	}
}
