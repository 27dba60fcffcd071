package prefetch

import (
	"slices"
	"testing"

	"github.com/snapbpf/snapbpf/internal/pages"
)

func TestPlan(t *testing.T) {
	tests := []struct {
		name string
		in   []pages.Extent
		gap  uint64
		want []pages.Extent
	}{
		{"empty", nil, 4, []pages.Extent{}},
		{"sorted", []pages.Extent{ex(10, 1), ex(0, 2), ex(5, 1)}, 0, []pages.Extent{ex(0, 2), ex(5, 1), ex(10, 1)}},
		{"touching merge at gap 0", []pages.Extent{ex(3, 2), ex(0, 3)}, 0, []pages.Extent{ex(0, 5)}},
		{"overlap merges", []pages.Extent{ex(0, 10), ex(2, 3), ex(8, 4)}, 0, []pages.Extent{ex(0, 12)}},
		{"gap within threshold", []pages.Extent{ex(0, 2), ex(4, 1)}, 2, []pages.Extent{ex(0, 5)}},
		{"gap over threshold", []pages.Extent{ex(0, 2), ex(5, 1)}, 2, []pages.Extent{ex(0, 2), ex(5, 1)}},
		{"empty extents dropped", []pages.Extent{ex(7, 0), ex(1, 1)}, 0, []pages.Extent{ex(1, 1)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.in)
			got := Plan(tc.in, tc.gap)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("Plan(%v, %d) = %v, want %v", tc.in, tc.gap, got, tc.want)
			}
			if !slices.Equal(in, tc.in) {
				t.Fatal("Plan changed its input")
			}
		})
	}
}

// ex is an extent literal that go vet accepts across packages.
func ex(page, n uint64) pages.Extent { return pages.Extent{Page: page, N: n} }

func TestSplit(t *testing.T) {
	got := split([]request{{0, 10}, {20, 3}, {30, 8}}, 4)
	want := []request{{0, 4}, {4, 4}, {8, 2}, {20, 3}, {30, 4}, {34, 4}}
	if !slices.Equal(got, want) {
		t.Fatalf("split = %v, want %v", got, want)
	}
}

func TestToRequestsCutsHoles(t *testing.T) {
	const P = pages.Size
	// Data everywhere except pages [16, 32) and [64, 128).
	path := memFile(t, 256*P, request{16 * P, 16 * P}, request{64 * P, 64 * P})
	f := openT(t, path)
	tests := []struct {
		name  string
		plan  []pages.Extent
		want  []request
		holes int64
	}{
		{"all data", []pages.Extent{ex(0, 8), ex(40, 2)}, []request{{0, 8 * P}, {40 * P, 2 * P}}, 0},
		{"spans a hole", []pages.Extent{ex(10, 30)}, []request{{10 * P, 6 * P}, {32 * P, 8 * P}}, 16 * P},
		{"inside a hole", []pages.Extent{ex(70, 5)}, nil, 5 * P},
		{"several in one segment", []pages.Extent{ex(130, 1), ex(140, 1), ex(150, 1)}, []request{{130 * P, P}, {140 * P, P}, {150 * P, P}}, 0},
		{"past the end", []pages.Extent{ex(250, 100)}, []request{{250 * P, 6 * P}}, 0},
		{"wraps", []pages.Extent{ex(255, ^uint64(0))}, []request{{255 * P, P}}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, holes, err := toRequests(f, tc.plan, 256*P)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) || holes != tc.holes {
				t.Fatalf("toRequests = %v holes %d, want %v holes %d", got, holes, tc.want, tc.holes)
			}
		})
	}
}

func TestMaxRequestBytes(t *testing.T) {
	path := memFile(t, pages.Size)
	got := maxRequestBytes(openT(t, path))
	if got < fallbackRequestBytes || got%pages.Size != 0 {
		t.Fatalf("maxRequestBytes = %d", got)
	}
	t.Logf("one readahead call reads at most %d KiB here", got>>10)
}

func TestByFirstTouch(t *testing.T) {
	const P = pages.Size
	// First-touch order: pages 100+4, then 0+2, then 50+1, then 3+1.
	extents := []pages.Extent{ex(100, 4), ex(0, 2), ex(50, 1), ex(3, 1)}
	// Ascending requests as the plan makes them: 0-4 merged (holds the
	// extents touched second and fourth), 50, 100-104.
	reqs := []request{{0, 4 * P}, {50 * P, P}, {100 * P, 4 * P}, {200 * P, P}}
	got := byFirstTouch(reqs, extents)
	want := []request{{100 * P, 4 * P}, {0, 4 * P}, {50 * P, P}, {200 * P, P}}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// TestRequests checks the requests another tool replays against the
// plan's rules on a real file with a hole: merged across the gap, the
// hole cut out, split at the request limit, in first-touch or file order.
func TestRequests(t *testing.T) {
	const P = pages.Size
	path := memFile(t, 1<<20, request{32 * P, 16 * P}) // pages 32-47 a hole
	touch := []pages.Extent{ex(100, 1), ex(30, 20), ex(0, 2), ex(4, 3)}
	o := Options{MaxRequestBytes: 8 * P}
	want := []Request{{100 * P, P}, {30 * P, 2 * P}, {48 * P, 2 * P}, {0, 7 * P}}
	if got, err := Requests(path, touch, o); err != nil || !slices.Equal(got, want) {
		t.Fatalf("Requests, first-touch order = %v, %v; want %v", got, err, want)
	}
	o.OffsetOrder, o.MaxRequestBytes = true, 4*P
	want = []Request{{0, 4 * P}, {4 * P, 3 * P}, {30 * P, 2 * P}, {48 * P, 2 * P}, {100 * P, P}}
	if got, err := Requests(path, touch, o); err != nil || !slices.Equal(got, want) {
		t.Fatalf("Requests, file order, 4-page limit = %v, %v; want %v", got, err, want)
	}
	if _, err := Requests(path+".missing", touch, o); err == nil {
		t.Fatal("Requests of a missing file: no error")
	}
}
