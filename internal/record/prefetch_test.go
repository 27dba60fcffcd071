package record

import (
	"context"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/prefetch"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// residentMargin is how many pages beyond the working set and its merged
// gaps may be resident after a prefetch: a few for the page cache's own
// rounding, none for readahead (prefetch reads with readahead off).
const residentMargin = 16

// prefetchAttempts: the host may evict a freshly prefetched page before
// the test looks (the development machines run a DAMON pageout scheme that
// evicts cold page-cache pages every 5 s, with no memory pressure). A
// prefetch that misses pages misses them every time; an eviction seldom
// hits the few milliseconds between prefetch and check twice in a row.
const prefetchAttempts = 3

// TestPrefetchMakesWorkingSetResident: after a cold start, the snapbpf
// policy's prefetch (and prefetch.Start with every engine) leaves every
// working-set page in the memory file's page cache, and little else: the
// working set, the gaps merged between its extents, and nothing more.
func TestPrefetchMakesWorkingSetResident(t *testing.T) {
	f := recordedSnapshot(t)
	mem := f.dir.MemPath()
	ws, err := wset.Read(f.dir.File(policy.WorkingSetFile))
	if err != nil {
		t.Fatal(err)
	}
	if ws.Pages() == 0 {
		t.Fatal("empty working set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// check drops the cache, prefetches with do (which returns how many
	// pages may be resident: the working set plus merged gaps) and checks
	// the residency.
	check := func(t *testing.T, do func(t *testing.T) int64) {
		t.Helper()
		for i := 1; ; i++ {
			if _, err := pagecache.Drop(mem); err != nil {
				t.Fatal(err)
			}
			if n := countTrue(residentPages(t, mem)); n != 0 {
				t.Fatalf("%d pages still resident after dropping the cache", n)
			}
			limit := do(t)
			missing, n := residency(t, mem, ws)
			t.Logf("attempt %d: resident %d pages: working set %d (%d not resident), at most %d (+%d) allowed", i, n, ws.Pages(), len(missing), limit, residentMargin)
			if n > limit+residentMargin {
				t.Fatalf("%d pages resident, more than the %d prefetched (+%d): something read around the working set", n, limit, residentMargin)
			}
			if len(missing) == 0 {
				return
			}
			if i == prefetchAttempts {
				t.Fatalf("%d of %d working-set pages not resident after the prefetch, in each of %d attempts (last: pages %v)",
					len(missing), ws.Pages(), prefetchAttempts, missing[:min(len(missing), 10)])
			}
		}
	}

	t.Run("policy", func(t *testing.T) {
		check(t, func(t *testing.T) int64 {
			p, err := policy.New(policy.SnapBPF, f.dir, "", policy.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Begin(ctx); err != nil {
				t.Fatal(err)
			}
			st, err := p.Finish()
			if err != nil {
				t.Fatal(err)
			}
			if st.Bytes < ws.Bytes() {
				t.Errorf("prefetched %d bytes, less than the working set's %d", st.Bytes, ws.Bytes())
			}
			return st.Bytes / pages.Size
		})
	})

	for _, eng := range prefetch.Engines() {
		t.Run(eng, func(t *testing.T) {
			check(t, func(t *testing.T) int64 {
				job, err := prefetch.Start(ctx, mem, ws.Extents, prefetch.Options{Engine: eng})
				if err != nil {
					t.Fatal(err)
				}
				st, err := job.Wait()
				if err != nil {
					t.Fatal(err)
				}
				if st.Pages != ws.Pages() {
					t.Errorf("stats: %d working-set pages, the set has %d", st.Pages, ws.Pages())
				}
				// The recorded set lies in data, so every byte asked beyond
				// it is a merged gap.
				if st.Bytes != ws.Bytes()+st.GapBytes {
					t.Errorf("stats: %d bytes asked, want the set's %d plus %d of gaps", st.Bytes, ws.Bytes(), st.GapBytes)
				}
				return ws.Pages() + st.GapBytes/pages.Size
			})
		})
	}
}

// residency returns the working-set pages not resident in mem and how
// many pages of mem are resident in all.
func residency(t *testing.T, mem string, ws *wset.Set) (missing []uint64, resident int64) {
	t.Helper()
	res := residentPages(t, mem)
	for _, e := range ws.Extents {
		for p := e.Page; p < e.End(); p++ {
			if p >= uint64(len(res)) || !res[p] {
				missing = append(missing, p)
			}
		}
	}
	return missing, countTrue(res)
}
