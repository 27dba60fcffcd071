package prefetch

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// The benchmark setup: a 512 MiB file of random data on the root disk,
// made cold before every run with POSIX_FADV_DONTNEED, and three working
// sets of 20k pages (80 MiB):
//
//	frag       2k extents spread uniformly over the file (the issue's case)
//	clustered  2k extents in clusters: most gaps a few pages, some jumps
//	contig     one extent
const benchSize = 512 << 20

var (
	benchOnce sync.Once
	benchDir  string
	benchPath string
	benchErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

// benchFile is the shared 512 MiB file, written once per test binary.
func benchFile(tb testing.TB) string {
	tb.Helper()
	benchOnce.Do(func() {
		benchDir, benchErr = os.MkdirTemp("/var/tmp", "prefetch-bench-")
		if benchErr != nil {
			return
		}
		benchPath = filepath.Join(benchDir, "mem")
		benchErr = writeRandom(benchPath, benchSize, nil)
	})
	if benchErr != nil {
		tb.Skipf("bench file: %v", benchErr)
	}
	return benchPath
}

type workload struct {
	name string
	ext  []pages.Extent
}

func workloads() []workload {
	return []workload{
		{"frag", randomSet(42, benchSize, 20000, 2000)},
		{"clustered", clusteredSet(42, benchSize, 20000, 2000)},
		{"contig", []pages.Extent{{Page: 25600, N: 20000}}},
	}
}

// clusteredSet places extents of 1..19 pages one after another with a gap
// that is mostly small (geometric, mean 6 pages) and sometimes a jump
// anywhere, which is how a guest's touched pages sit in its memory, then
// shuffles them (first-touch order is not offset order).
func clusteredSet(seed uint64, size int64, nPages, extents int) []pages.Extent {
	r := rand.New(rand.NewPCG(seed, 2))
	filePages := uint64(size / pages.Size)
	var b wset.Builder
	p := uint64(0)
	for b.Pages() < int64(nPages) {
		n := 1 + r.Uint64N(2*uint64(nPages/extents)-1)
		if r.IntN(10) < 8 {
			p += 1 + uint64(r.ExpFloat64()*6)
		} else {
			p = r.Uint64N(filePages - 64)
		}
		if p+n > filePages {
			p = 0
		}
		b.Add(p, n)
		p += n
	}
	out := b.Extents()
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func reportStats(b *testing.B, all []Stats) {
	var issue, complete []time.Duration
	for _, s := range all {
		issue = append(issue, s.IssueDur)
		complete = append(complete, s.CompleteDur)
	}
	b.ReportMetric(float64(median(issue).Microseconds())/1000, "issue-ms")
	b.ReportMetric(float64(median(complete).Microseconds())/1000, "complete-ms")
	b.ReportMetric(float64(all[0].Bytes)/(1<<20), "MiB")
	b.ReportMetric(float64(all[0].Requests), "requests")
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkEngines compares the engines cold on each working set, at the
// default gap. Run with -benchtime=5x; the custom metrics are medians.
func BenchmarkEngines(b *testing.B) {
	path := benchFile(b)
	for _, w := range workloads() {
		for _, eng := range Engines() {
			b.Run(w.name+"/"+eng, func(b *testing.B) {
				var all []Stats
				for range b.N {
					b.StopTimer()
					dropCache(b, path)
					b.StartTimer()
					st, err := Prefetch(context.Background(), path, w.ext, Options{Engine: eng})
					if err != nil {
						b.Fatal(err)
					}
					all = append(all, st)
				}
				reportStats(b, all)
			})
		}
	}
}

// BenchmarkGap measures the merge threshold: completion time against bytes
// read, default engine, for gaps of 0..64 pages.
func BenchmarkGap(b *testing.B) {
	path := benchFile(b)
	for _, w := range workloads()[:2] {
		for _, gap := range []int{-1, 1, 2, 4, 8, 16, 32, 64} {
			b.Run(fmt.Sprintf("%s/gap=%d", w.name, max(gap, 0)), func(b *testing.B) {
				var all []Stats
				for range b.N {
					b.StopTimer()
					dropCache(b, path)
					b.StartTimer()
					st, err := Prefetch(context.Background(), path, w.ext, Options{GapPages: gap})
					if err != nil {
						b.Fatal(err)
					}
					all = append(all, st)
				}
				reportStats(b, all)
			})
		}
	}
}
