package policy

import (
	"context"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/funcvm"
	"github.com/snapbpf/snapbpf/internal/prefetch"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// residentMargin is how many pages beyond the working set and its merged
// gaps may be resident after a prefetch: a few for the page cache's own
// rounding, none for readahead (prefetch reads with readahead off).
const residentMargin = 16

// TestPrefetchMakesWorkingSetResident: after a cold start, the snapbpf
// policy's prefetch (and prefetch.Start with every engine) leaves every
// working-set page in the memory file's page cache, and little else: the
// working set, the gaps merged between its extents, and nothing more.
func TestPrefetchMakesWorkingSetResident(t *testing.T) {
	f := recordedSnapshot(t)
	mem := f.dir.MemPath()
	p, err := New(SnapBPF, f.dir, "", Options{})
	if err != nil {
		t.Fatal(err)
	}
	ws := p.WorkingSet()
	if ws == nil || ws.Pages() == 0 {
		t.Fatal("snapbpf policy has no working set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	cold := func(t *testing.T) {
		t.Helper()
		if err := funcvm.DropCache(mem); err != nil {
			t.Fatal(err)
		}
		if n := countTrue(resident(t, mem)); n != 0 {
			t.Fatalf("%d pages still resident after dropping the cache", n)
		}
	}

	t.Run("policy", func(t *testing.T) {
		cold(t)
		if err := p.Begin(ctx); err != nil {
			t.Fatal(err)
		}
		st, err := p.Finish()
		if err != nil {
			t.Fatal(err)
		}
		// Bytes is the working set plus merged gaps: the most that may be
		// resident.
		checkResident(t, mem, ws, st.Bytes/wset.PageSize)
	})

	for _, eng := range prefetch.Engines() {
		t.Run(eng, func(t *testing.T) {
			cold(t)
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
			// The recorded set lies in data, so every byte asked beyond it
			// is a merged gap.
			if st.Bytes != ws.Bytes()+st.GapBytes {
				t.Errorf("stats: %d bytes asked, want the set's %d plus %d of gaps", st.Bytes, ws.Bytes(), st.GapBytes)
			}
			checkResident(t, mem, ws, ws.Pages()+st.GapBytes/wset.PageSize)
		})
	}
}

// checkResident fails unless every page of ws is resident in mem and at
// most limit+residentMargin pages are resident in all.
func checkResident(t *testing.T, mem string, ws *wset.Set, limit int64) {
	t.Helper()
	res := resident(t, mem)
	var missing int64
	for _, e := range ws.Extents {
		for p := e.Page; p < e.End(); p++ {
			if p >= uint64(len(res)) || !res[p] {
				if missing < 5 {
					t.Errorf("working-set page %d not resident after the prefetch", p)
				}
				missing++
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d working-set pages not resident", missing, ws.Pages())
	}
	n := countTrue(res)
	t.Logf("resident %d pages: working set %d, allowed %d (+%d)", n, ws.Pages(), limit, residentMargin)
	if n > limit+residentMargin {
		t.Errorf("%d pages resident, more than the %d prefetched (+%d): something read around the working set", n, limit, residentMargin)
	}
}
