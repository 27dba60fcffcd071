package capture

import (
	"slices"
	"testing"

	"github.com/snapbpf/snapbpf/internal/pages"
)

func TestPages(t *testing.T) {
	c := &Capture{Accesses: []Access{
		{File: 0, Page: 10, NPages: 1},
		{File: 1, Page: 3, NPages: 1},
		{File: 0, Page: 4, NPages: 4}, // a large folio: 4..7
		{File: 0, Page: 10, NPages: 1},
		{File: 0, Page: 6, NPages: 2},
	}}
	for _, tc := range []struct {
		file int
		want []uint64
	}{
		{0, []uint64{10, 4, 5, 6, 7}},
		{1, []uint64{3}},
		{2, nil},
	} {
		if got := Pages(c, tc.file); !slices.Equal(got, tc.want) {
			t.Errorf("Pages(file %d) = %v, want %v", tc.file, got, tc.want)
		}
	}
}

func TestClip(t *testing.T) {
	data := []pages.Extent{{Page: 4, N: 4}, {Page: 12, N: 2}}
	for _, tc := range []struct {
		name  string
		in    []Access
		want  []Access
		holes []Access
	}{
		{"inside", []Access{{Page: 5, NPages: 2}}, []Access{{Page: 5, NPages: 2}}, nil},
		{"hole", []Access{{Page: 9, NPages: 1}}, nil, []Access{{Page: 9, NPages: 1}}},
		{"straddles two extents", []Access{{Page: 0, NPages: 16, TimeNs: 7}},
			[]Access{{Page: 4, NPages: 4, TimeNs: 7}, {Page: 12, NPages: 2, TimeNs: 7}},
			[]Access{{Page: 0, NPages: 4, TimeNs: 7}, {Page: 8, NPages: 4, TimeNs: 7}, {Page: 14, NPages: 2, TimeNs: 7}}},
		{"past the end", []Access{{Page: 13, NPages: 4}}, []Access{{Page: 13, NPages: 1}}, []Access{{Page: 14, NPages: 3}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, holes := clip(tc.in, data)
			if !slices.Equal(got, tc.want) || !slices.Equal(holes, tc.holes) {
				t.Errorf("got %v holes %v, want %v holes %v", got, holes, tc.want, tc.holes)
			}
		})
	}
}

func TestRunAccesses(t *testing.T) {
	got := runAccesses(pages.Extent{Page: 5, N: 1<<30 + 3})
	want := []Access{{Page: 5, NPages: 1 << 30}, {Page: 5 + 1<<30, NPages: 3}}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
