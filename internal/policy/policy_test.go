package policy

import (
	"strings"
	"testing"

	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/vmm"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// TestForFile: each policy takes what it needs and refuses the rest, and
// says whether it keeps readahead and QEMU's hugepage advice.
func TestForFile(t *testing.T) {
	set := &wset.Set{Extents: []pages.Extent{{Page: 0, N: 4}}}
	for _, tc := range []struct {
		name      string
		ws        *wset.Set
		o         Options
		readahead bool
		err       string // empty: accepted
	}{
		{name: Lazy, readahead: true},
		{name: NoRA},
		{name: SnapBPF, ws: set, readahead: true},
		{name: SnapBPF, ws: set, o: Options{NoReadahead: true}},
		{name: SnapBPF, err: "no working set"},
		{name: NoRA, ws: set, err: "prefetches no working set"},
		{name: Lazy, o: Options{NoReadahead: true}, err: "snapbpf only"},
		{name: "eager", err: `unknown policy "eager"`},
	} {
		p, err := ForFile(tc.name, "/nonexistent/mem", tc.ws, tc.o)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s %+v: error %v, want one saying %q", tc.name, tc.o, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s %+v: %v", tc.name, tc.o, err)
			continue
		}
		var c vmm.Config
		p.Configure(&c)
		if p.Name() != tc.name || p.Readahead() != tc.readahead || c.IgnoreHugepageAdvice == tc.readahead {
			t.Errorf("%s %+v: name %s, readahead %v, hugepage advice ignored %v; want readahead %v",
				tc.name, tc.o, p.Name(), p.Readahead(), c.IgnoreHugepageAdvice, tc.readahead)
		}
		// Without a prefetch begun there is nothing to wait for.
		if st, err := p.Finish(); err != nil || st != (PrefetchStats{}) {
			t.Errorf("%s: Finish before Begin: %+v, %v", tc.name, st, err)
		}
	}
}
