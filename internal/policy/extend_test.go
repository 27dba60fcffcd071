package policy

import (
	"slices"
	"testing"

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
	pages, zero := extend(set, got, plan)
	want := []wset.Extent{{Page: 100, N: 2}, {Page: 10, N: 1}, {Page: 14, N: 2}, {Page: 7, N: 1}}
	if pages != 3 || zero != 1 || !slices.Equal(set.Extents, want) || !slices.Equal(set.Zero, []wset.Extent{{Page: 500, N: 2}}) {
		t.Errorf("added %d pages, %d zero: extents %v zero %v; want 3, 1, %v, [500+2]", pages, zero, set.Extents, set.Zero, want)
	}
}
