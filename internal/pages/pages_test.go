package pages

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// sparse makes a file of size pages with one written page at each of at.
func sparse(t *testing.T, size uint64, at ...uint64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mem")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(int64(size) * Size); err != nil {
		t.Fatal(err)
	}
	page := make([]byte, Size)
	page[0] = 1
	for _, a := range at {
		if _, err := f.WriteAt(page, int64(a)*Size); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// needHoles skips where the filesystem reports no holes.
func needHoles(t *testing.T, path string) {
	t.Helper()
	ext, err := Data(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(ext) == 1 && ext[0].Page == 0 && ext[0].N == 4096 {
		t.Skip("filesystem does not report holes")
	}
}

func TestData(t *testing.T) {
	for _, tc := range []struct {
		name string
		at   []uint64
		want []Extent
	}{
		{"all holes", nil, nil},
		{"two pages", []uint64{0, 2048}, []Extent{{Page: 0, N: 1}, {Page: 2048, N: 1}}},
		{"adjacent pages merge", []uint64{1, 2}, []Extent{{Page: 1, N: 2}}},
		{"last page", []uint64{4095}, []Extent{{Page: 4095, N: 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := sparse(t, 4096, tc.at...)
			if len(tc.at) > 0 {
				needHoles(t, p)
			}
			got, err := Data(p)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Data = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDataCursor(t *testing.T) {
	p := sparse(t, 4096, 10, 11, 100)
	needHoles(t, p)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := NewDataCursor(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		p    uint64
		want Extent
	}{
		{0, Extent{Page: 10, N: 2}},   // before the first run
		{11, Extent{Page: 11, N: 1}},  // inside it, from the page on
		{12, Extent{Page: 100, N: 1}}, // past it
		{101, Extent{Page: 4096}},     // no data left
		{5000, Extent{Page: 4096}},    // past the end
	} {
		got, err := c.Next(tc.p)
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("Next(%d) = %v, want %v", tc.p, got, tc.want)
		}
	}
}

func TestSearch(t *testing.T) {
	ext := []Extent{{Page: 4, N: 4}, {Page: 12, N: 2}}
	for _, tc := range []struct {
		p  uint64
		i  int
		in bool
	}{{0, 0, false}, {4, 0, true}, {7, 0, true}, {8, 1, false}, {13, 1, true}, {14, 2, false}} {
		if i, in := Search(ext, tc.p); i != tc.i || in != tc.in {
			t.Errorf("Search(%d) = %d, %v; want %d, %v", tc.p, i, in, tc.i, tc.in)
		}
	}
}

func TestExtentJSON(t *testing.T) {
	b, err := json.Marshal([]Extent{{Page: 3, N: 2}})
	if err != nil || string(b) != "[[3,2]]" {
		t.Fatalf("Marshal = %s, %v", b, err)
	}
	var got []Extent
	if err := json.Unmarshal(b, &got); err != nil || len(got) != 1 || got[0] != (Extent{Page: 3, N: 2}) {
		t.Errorf("Unmarshal = %v, %v", got, err)
	}
	if err := json.Unmarshal([]byte("[[1]]"), &got); err == nil {
		t.Error("Unmarshal of one number: no error")
	}
}

func TestIntersect(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b []Extent
		want []Extent
	}{
		{"same", []Extent{{Page: 0, N: 10}}, []Extent{{Page: 0, N: 10}}, []Extent{{Page: 0, N: 10}}},
		{"disjoint", []Extent{{Page: 0, N: 5}}, []Extent{{Page: 5, N: 5}}, nil},
		{"overlap", []Extent{{Page: 0, N: 6}, {Page: 8, N: 12}}, []Extent{{Page: 4, N: 6}, {Page: 15, N: 15}}, []Extent{{Page: 4, N: 2}, {Page: 8, N: 2}, {Page: 15, N: 5}}},
		{"empty", nil, []Extent{{Page: 0, N: 1}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Intersect(tc.a, tc.b); !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
