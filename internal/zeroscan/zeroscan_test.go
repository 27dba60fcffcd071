package zeroscan

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/pages"
)

// chunkSize is pages.Scan's read size, which the tests cross.
const chunkSize = 4 << 20

var zeroPage [pages.Size]byte

// writeLayout creates a file from a page map: 'N' a page with a non-zero
// byte, 'Z' a page of written zero bytes (allocated data), '.' a hole.
// tail, if positive, cuts the last page to that many bytes.
func writeLayout(t testing.TB, layout string, tail int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mem")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size := int64(len(layout)) * pages.Size
	if tail > 0 {
		size -= pages.Size - int64(tail)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	page := make([]byte, pages.Size)
	for i, c := range layout {
		if c == '.' {
			continue
		}
		clear(page)
		n := min(int64(pages.Size), size-int64(i)*pages.Size)
		if c == 'N' {
			// The last byte, so a compare that stops early misses it.
			page[n-1] = byte(i%255 + 1)
		}
		if _, err := f.WriteAt(page[:n], int64(i)*pages.Size); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	return path
}

// needHoles skips when the test directory's file system does not keep
// holes at page granularity (the counts below assume it does).
func needHoles(t *testing.T) {
	t.Helper()
	path := writeLayout(t, "N...N", 0)
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	if st.Blocks*512 != 2*pages.Size {
		t.Skipf("%s keeps %d bytes for 2 data pages: no page-granular holes here", os.TempDir(), st.Blocks*512)
	}
}

func TestFile(t *testing.T) {
	needHoles(t)
	for _, tc := range []struct {
		name   string
		layout string
		tail   int
		gap    int
		want   Result // counts only
	}{
		{name: "all hole", layout: "........",
			want: Result{HolePages: 8}},
		{name: "all zero data", layout: "ZZZZ",
			want: Result{DataPages: 4, ZeroPages: 4}},
		{name: "mixed", layout: "NNZ..N.ZZN", gap: 2,
			// N N Z . . N . Z Z N: raw runs {0-1} {5} {9}; gaps 3 and 3 >= 2.
			want: Result{HolePages: 3, DataPages: 7, ZeroPages: 3, NonZeroPages: 4, RawRegions: 3, MergedRegions: 3, MergedPages: 4}},
		{name: "mixed merged", layout: "NNZ..N.ZZN", gap: 4,
			want: Result{HolePages: 3, DataPages: 7, ZeroPages: 3, NonZeroPages: 4, RawRegions: 3, MergedRegions: 1, MergedPages: 10}},
		{name: "gap equal to threshold stays apart", layout: "N" + strings.Repeat(".", 32) + "N",
			want: Result{HolePages: 32, DataPages: 2, NonZeroPages: 2, RawRegions: 2, MergedRegions: 2, MergedPages: 2}},
		{name: "gap one short merges", layout: "N" + strings.Repeat("Z", 31) + "N",
			want: Result{DataPages: 33, ZeroPages: 31, NonZeroPages: 2, RawRegions: 2, MergedRegions: 1, MergedPages: 33}},
		{name: "partial last page non-zero", layout: "Z.N", tail: 100,
			want: Result{HolePages: 1, DataPages: 2, ZeroPages: 1, NonZeroPages: 1, RawRegions: 1, MergedRegions: 1, MergedPages: 1}},
		{name: "partial last page zero", layout: "N.Z", tail: 100,
			want: Result{HolePages: 1, DataPages: 2, ZeroPages: 1, NonZeroPages: 1, RawRegions: 1, MergedRegions: 1, MergedPages: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeLayout(t, tc.layout, tc.tail)
			got, err := File(path, Options{MergeGapPages: tc.gap})
			if err != nil {
				t.Fatal(err)
			}
			want := tc.want
			want.Pages = int64(len(tc.layout))
			if c := counts(*got); c != counts(want) {
				t.Errorf("got  %+v\nwant %+v", c, counts(want))
			}
			if got.HolePages+got.DataPages != got.Pages || got.ZeroPages+got.NonZeroPages != got.DataPages {
				t.Errorf("counts do not add up: %+v", counts(*got))
			}
			if got.ReadBytes > got.DataPages*pages.Size {
				t.Errorf("read %d bytes for %d data pages", got.ReadBytes, got.DataPages)
			}
		})
	}
}

// counts is the part of a Result a layout determines.
func counts(r Result) [8]int64 {
	return [8]int64{r.Pages, r.HolePages, r.DataPages, r.ZeroPages, r.NonZeroPages, r.RawRegions, r.MergedRegions, r.MergedPages}
}

// TestFileAcrossChunks: data runs that cross the read chunk boundary and a
// file bigger than several chunks, against a page-by-page reference.
func TestFileAcrossChunks(t *testing.T) {
	needHoles(t)
	perChunk := chunkSize / pages.Size
	b := []byte(strings.Repeat(".", 3*perChunk+77))
	fill := func(from, n int, c byte) {
		for i := from; i < from+n; i++ {
			b[i] = c
		}
	}
	fill(perChunk-5, 10, 'N')           // across the first chunk boundary
	fill(perChunk+5, 40, 'Z')           // a zero gap of 40: stays apart
	fill(perChunk+45, perChunk+10, 'N') // a run longer than a chunk
	fill(2*perChunk+60, 20, 'Z')        // gap of 20 zero data pages: merged
	fill(2*perChunk+80, 3, 'N')
	b[len(b)-1] = 'N'
	layout := string(b)
	path := writeLayout(t, layout, 0)
	got, err := File(path, Options{KeepRegions: true})
	if err != nil {
		t.Fatal(err)
	}
	want := reference(layout, MergeGapPages)
	if c := counts(*got); c != counts(want) {
		t.Errorf("got  %+v\nwant %+v", c, counts(want))
	}
	if !slices.Equal(got.Regions, want.Regions) {
		t.Errorf("regions %v, want %v", got.Regions, want.Regions)
	}
	if got.ReadBytes != got.DataPages*pages.Size {
		t.Errorf("read %d bytes, want %d (data pages only)", got.ReadBytes, got.DataPages*pages.Size)
	}
}

// reference classifies a layout page by page, merging with a simple rule:
// a non-zero page joins the previous region when fewer than gap pages lie
// between them.
func reference(layout string, gap int) Result {
	r := Result{Pages: int64(len(layout))}
	prev := -1
	for i, c := range layout {
		switch c {
		case '.':
			r.HolePages++
			continue
		case 'Z':
			r.DataPages++
			r.ZeroPages++
			continue
		}
		r.DataPages++
		r.NonZeroPages++
		if prev < 0 || i != prev+1 {
			r.RawRegions++
		}
		if prev >= 0 && i-prev-1 < gap {
			last := &r.Regions[len(r.Regions)-1]
			last.Pages = int64(i) + 1 - last.Start
		} else {
			r.Regions = append(r.Regions, Region{Start: int64(i), Pages: 1})
		}
		prev = i
	}
	r.MergedRegions = int64(len(r.Regions))
	for _, g := range r.Regions {
		r.MergedPages += g.Pages
	}
	return r
}

func TestFileCold(t *testing.T) {
	path := writeLayout(t, "NZN.", 0)
	r, err := File(path, Options{Cold: true})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Cold || r.NonZeroPages != 2 || r.ZeroPages != 1 {
		t.Errorf("cold scan: %+v", r)
	}
}

func TestFileErrors(t *testing.T) {
	dir := t.TempDir()
	for _, path := range []string{filepath.Join(dir, "missing"), dir} {
		if _, err := File(path, Options{}); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("File(%s): want an error naming it, got %v", path, err)
		}
	}
}

// isZeroWords is the hand-written alternative to bytes.Equal, kept here to
// benchmark the choice.
func isZeroWords(p []byte) bool {
	for i := 0; i+8 <= len(p); i += 8 {
		if binary.NativeEndian.Uint64(p[i:]) != 0 {
			return false
		}
	}
	return true
}

func BenchmarkZeroPage(b *testing.B) {
	buf := make([]byte, chunkSize)
	b.Run("bytes.Equal", func(b *testing.B) {
		b.SetBytes(chunkSize)
		for b.Loop() {
			for lo := 0; lo < len(buf); lo += pages.Size {
				if !bytes.Equal(buf[lo:lo+pages.Size], zeroPage[:]) {
					b.Fatal("not zero")
				}
			}
		}
	})
	b.Run("words", func(b *testing.B) {
		b.SetBytes(chunkSize)
		for b.Loop() {
			for lo := 0; lo < len(buf); lo += pages.Size {
				if !isZeroWords(buf[lo : lo+pages.Size]) {
					b.Fatal("not zero")
				}
			}
		}
	})
}

// BenchmarkFile scans a 64 MiB all-data file from the page cache.
func BenchmarkFile(b *testing.B) {
	path := writeLayout(b, strings.Repeat("ZZZN", 4096), 0)
	b.SetBytes(4096 * 4 * pages.Size)
	for b.Loop() {
		if _, err := File(path, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
