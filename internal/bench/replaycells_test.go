package bench

import (
	"testing"

	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/testenv"
	"github.com/snapbpf/snapbpf/internal/trace"
)

// TestHoldCached checks that a file held by holdCached stays in the page
// cache through the drop every replay run starts with, and that it can be
// dropped again once released.
func TestHoldCached(t *testing.T) {
	const size = 4 << 20
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i>>12) | 1
	}
	path := testenv.DiskFile(t, data)
	if left, err := pagecache.Drop(path); err != nil || left != 0 {
		t.Skipf("the file stays cached after a drop (%d pages, %v; tmpfs?)", left, err)
	}
	release, err := holdCached(path)
	if err != nil {
		t.Fatal(err)
	}
	// Drop counts pages.
	if left, err := pagecache.Drop(path); err != nil || left != size/4096 {
		t.Errorf("held file: %d of %d pages cached after a drop (%v)", left, size/4096, err)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if left, err := pagecache.Drop(path); err != nil || left != 0 {
		t.Errorf("released file: %d pages cached after a drop (%v)", left, err)
	}
}

func TestSourceOf(t *testing.T) {
	for exp, want := range map[string]string{ExpLatency: SourceVM, ExpBreakdown: SourceVM, ExpPrefetch: SourceVM,
		ExpTrace: SourceVM, ExpReplay: SourceReplay, ExpScatter: SourceReplay} {
		if got := sourceOf(exp); got != want {
			t.Errorf("sourceOf(%s) = %s, want %s", exp, got, want)
		}
	}
}

// TestUntouchedPages: resident data pages the trace does not touch are
// untouched; holes (resident or touched) and upgrades are no data pages.
func TestUntouchedPages(t *testing.T) {
	tr := &trace.Trace{Events: []trace.Event{
		{Page: 1, Op: trace.OpRead}, {Page: 2, Op: trace.OpWrite}, {Page: 1, Op: trace.OpUpgrade},
		{Page: 5, Op: trace.OpWrite, Flags: trace.FlagHole},
	}}
	data := []pages.Extent{{Page: 0, N: 4}} // pages 4 and 5 are holes
	resident := []byte{1, 1, 0, 1, 1, 1}    // pages 0, 1, 3, 4, 5
	seen := touchedPages(tr)
	if n := untouched(seen, data, resident); len(seen) != 2 || n != 2 {
		t.Errorf("touched %v, untouched %d; want data pages 1 and 2 touched, 2 resident data pages untouched (0 and 3)", seen, n)
	}
}
