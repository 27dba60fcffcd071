package bench

import (
	"testing"

	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/testenv"
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
