package snapshot

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/snapbpf/snapbpf/internal/pages"
)

func TestMemLayout(t *testing.T) {
	const page = 4096
	const size = 16 << 20
	tests := []struct {
		name   string
		writes []int64 // offsets of one-page writes into a sparse file of size
		size   int64
		want   []pages.Extent
	}{
		{"all holes", nil, size, nil},
		{"two pages", []int64{0, 8 << 20}, size, []pages.Extent{{Page: 0, N: 1}, {Page: 8 << 20 / page, N: 1}}},
		{"last page", []int64{size - page}, size, []pages.Extent{{Page: size/page - 1, N: 1}}},
		{"adjacent pages merge", []int64{page, 2 * page}, size, []pages.Extent{{Page: 1, N: 2}}},
		{"empty file", nil, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "mem")
			f, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Truncate(tt.size); err != nil {
				t.Fatal(err)
			}
			for _, off := range tt.writes {
				if _, err := f.WriteAt(bytes.Repeat([]byte{1}, page), off); err != nil {
					t.Fatal(err)
				}
			}
			f.Close()

			data, holes, err := MemLayout(p)
			if err != nil {
				t.Fatal(err)
			}
			if data+holes != tt.size {
				t.Fatalf("data %d + holes %d != size %d", data, holes, tt.size)
			}
			if tt.size > 0 && holes == 0 {
				t.Skip("filesystem does not report holes")
			}
			ext, err := pages.Data(p)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ext, tt.want) {
				t.Errorf("extents %v, want %v", ext, tt.want)
			}
			var sum int64
			for _, e := range tt.want {
				sum += int64(e.N) * page
			}
			if data != sum {
				t.Errorf("data %d, want %d", data, sum)
			}
		})
	}
}

func TestMemLayoutMissing(t *testing.T) {
	if _, _, err := MemLayout(filepath.Join(t.TempDir(), "nope")); !os.IsNotExist(err) {
		t.Errorf("err %v, want not-exist", err)
	}
}

func TestFillHoles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mem")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	const size = 4 << 20
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte{0xab}, 64<<10)
	if _, err := f.WriteAt(data, 1<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, holes, err := MemLayout(path); err != nil || holes == 0 {
		t.Skipf("filesystem reports no holes (%v): nothing to fill", err)
	}
	if err := FillHoles(path); err != nil {
		t.Fatal(err)
	}
	d, holes, err := MemLayout(path)
	if err != nil || holes != 0 || d != size {
		t.Fatalf("after FillHoles: data %d, holes %d, %v", d, holes, err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, size)
	copy(want[1<<20:], data)
	if !bytes.Equal(got, want) {
		t.Fatal("FillHoles changed the file's contents")
	}
}

// TestPunchZeroPages fills a file with data pages, zero pages in runs and
// alone, a page that is zero but for its last byte, and a hole: exactly the
// zero pages become holes and the contents read back the same.
func TestPunchZeroPages(t *testing.T) {
	const P = 4096
	path := filepath.Join(t.TempDir(), "mem")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	const nPages = 2048 // 8 MiB: more than one read buffer
	want := make([]byte, nPages*P)
	zero := map[int]bool{}
	for p := range nPages {
		switch {
		case p >= 1000 && p < 1100: // left a hole: never written
			continue
		case p%7 == 0 || (p >= 1500 && p < 1600) || p == nPages-1:
			zero[p] = true
		case p == 3:
			want[(p+1)*P-1] = 1 // zero but for its last byte
		default:
			for i := p * P; i < (p+1)*P; i += 512 {
				want[i] = byte(p) | 1
			}
		}
		if _, err := f.WriteAt(want[p*P:(p+1)*P], int64(p*P)); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	if _, holes, err := MemLayout(path); err != nil || holes == 0 {
		t.Skipf("filesystem reports no holes (%v)", err)
	}
	n, err := PunchZeroPages(path)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(zero)) {
		t.Errorf("punched %d pages, want the %d zero pages", n, len(zero))
	}
	data, err := pages.Data(path)
	if err != nil {
		t.Fatal(err)
	}
	isData := func(p int) bool { _, in := pages.Search(data, uint64(p)); return in }
	for p := range nPages {
		hole := zero[p] || (p >= 1000 && p < 1100)
		if isData(p) == hole {
			t.Fatalf("page %d: data %v, want hole %v", p, isData(p), hole)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("PunchZeroPages changed the file's contents")
	}
	if _, err := PunchZeroPages(filepath.Join(t.TempDir(), "nope")); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("missing file: %v", err)
	}
}
