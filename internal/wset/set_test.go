package wset

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/snapbpf/snapbpf/internal/pages"
)

func TestFromPages(t *testing.T) {
	tests := []struct {
		name  string
		pages []uint64
		want  []pages.Extent
	}{
		{"empty", nil, nil},
		{"one", []uint64{7}, []pages.Extent{{Page: 7, N: 1}}},
		{"ascending run", []uint64{3, 4, 5}, []pages.Extent{{Page: 3, N: 3}}},
		{"descending is not a run", []uint64{5, 4, 3}, []pages.Extent{{Page: 5, N: 1}, {Page: 4, N: 1}, {Page: 3, N: 1}}},
		{"first touch order kept", []uint64{100, 101, 2, 3, 50}, []pages.Extent{{Page: 100, N: 2}, {Page: 2, N: 2}, {Page: 50, N: 1}}},
		{"repeat dropped", []uint64{1, 2, 1, 3}, []pages.Extent{{Page: 1, N: 3}}},
		{"repeat does not break a run", []uint64{10, 11, 10, 12}, []pages.Extent{{Page: 10, N: 3}}},
		{"later page already seen", []uint64{5, 3, 4, 5, 6}, []pages.Extent{{Page: 5, N: 1}, {Page: 3, N: 2}, {Page: 6, N: 1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := FromPages(tc.pages); !slices.Equal(got, tc.want) {
				t.Errorf("FromPages(%v) = %v, want %v", tc.pages, got, tc.want)
			}
		})
	}
}

func TestBuilderFolios(t *testing.T) {
	var b Builder
	b.Add(512, 512) // an order-9 folio
	b.Add(600, 4)   // inside it: already seen
	b.Add(1020, 8)  // overlaps its end: only 1024..1027 are new, and extend it
	b.Add(0, 0)     // nothing
	b.Add(10, 2)
	want := []pages.Extent{{Page: 512, N: 516}, {Page: 10, N: 2}}
	if got := b.Extents(); !slices.Equal(got, want) {
		t.Fatalf("extents = %v, want %v", got, want)
	}
	if b.Pages() != 518 {
		t.Fatalf("pages = %d, want 518", b.Pages())
	}
}

func TestBuilderBeyondMaxIgnored(t *testing.T) {
	var b Builder
	b.Add(^uint64(0)-1, 10)
	b.Add(MaxMemSize/pages.Size-1, 5)
	want := []pages.Extent{{Page: MaxMemSize/pages.Size - 1, N: 1}}
	if got := b.Extents(); !slices.Equal(got, want) {
		t.Fatalf("extents = %v, want %v", got, want)
	}
}

// TestPageSetModel checks the word-at-a-time bitset against a map.
func TestPageSetModel(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	s := newPageSet()
	model := map[uint64]bool{}
	for range 2000 {
		p := r.Uint64N(3 * chunkPages)
		n := 1 + r.Uint64N(300)
		if r.IntN(20) == 0 {
			n = 1 + r.Uint64N(2*chunkPages)
		}
		var gotMissing []uint64
		prevEnd := ^uint64(0)
		s.missing(p, n, func(q, k uint64) {
			if k == 0 || q == prevEnd {
				t.Fatalf("run %d+%d is empty or not maximal", q, k)
			}
			prevEnd = q + k
			for i := range k {
				gotMissing = append(gotMissing, q+i)
			}
		})
		var wantMissing []uint64
		for q := p; q < p+n; q++ {
			if !model[q] {
				wantMissing = append(wantMissing, q)
			}
		}
		if !slices.Equal(gotMissing, wantMissing) {
			t.Fatalf("missing(%d,%d): got %d pages, want %d", p, n, len(gotMissing), len(wantMissing))
		}
		if r.IntN(2) == 0 {
			s.add(p, n)
			for q := p; q < p+n; q++ {
				model[q] = true
			}
		}
	}
}

func TestValidate(t *testing.T) {
	mem := Identity{Size: 10 * pages.Size}
	tests := []struct {
		name string
		ext  []pages.Extent
		ok   bool
	}{
		{"empty set", nil, true},
		{"whole file", []pages.Extent{{Page: 0, N: 10}}, true},
		{"empty extent", []pages.Extent{{Page: 1, N: 0}}, false},
		{"past the end", []pages.Extent{{Page: 9, N: 2}}, false},
		{"start past the end", []pages.Extent{{Page: 10, N: 1}}, false},
		{"overlap", []pages.Extent{{Page: 0, N: 3}, {Page: 5, N: 1}, {Page: 2, N: 1}}, false},
		{"touching is fine", []pages.Extent{{Page: 3, N: 2}, {Page: 0, N: 3}}, true},
		{"huge length wraps", []pages.Extent{{Page: 2, N: ^uint64(0)}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := (&Set{Mem: mem, Extents: tc.ext}).validate()
			if (err == nil) != tc.ok {
				t.Fatalf("validate(%v) = %v, want ok=%v", tc.ext, err, tc.ok)
			}
		})
	}
}
