package policy

import (
	"strings"
	"testing"
)

// TestKeepReadahead: with KeepReadahead, a snapbpf restore's faults on
// pages outside the working set read with readahead, megabytes at a time,
// where plain snapbpf reads the page alone; other policies refuse the
// option.
func TestKeepReadahead(t *testing.T) {
	f := recordedSnapshot(t)
	for _, name := range []string{Lazy, NoRA} {
		if _, err := New(name, f.dir, "", Options{KeepReadahead: true}); err == nil || !strings.Contains(err.Error(), "snapbpf only") {
			t.Errorf("policy %s with KeepReadahead: error %v, want a refusal", name, err)
		}
	}
	// Input 2 touches records input 1 (the recording) did not.
	const input = 2
	off, _ := restoreOpts(t, f, SnapBPF, Options{}, input, 1)
	on, _ := restoreOpts(t, f, SnapBPF, Options{KeepReadahead: true}, input, 1)
	for _, r := range []struct {
		what string
		mf   int64
		read int64
	}{{"readahead off", off[0].MajorFaults, off[0].MemFileReadBytes}, {"readahead kept", on[0].MajorFaults, on[0].MemFileReadBytes}} {
		t.Logf("snapbpf, %s, input %d: %d major faults, VMM read %d KiB", r.what, input, r.mf, r.read>>10)
	}
	if off[0].MemFileReadBytes == 0 {
		t.Fatalf("input %d read nothing outside input 1's working set: nothing to compare", input)
	}
	// One page per fault (4 KiB; a hole reads nothing), with room for a
	// retried fault counted twice.
	if off[0].MemFileReadBytes > 2*4096*off[0].MajorFaults {
		t.Errorf("readahead off: %d bytes read in %d faults, more than a page each", off[0].MemFileReadBytes, off[0].MajorFaults)
	}
	if on[0].MajorFaults == 0 || on[0].MemFileReadBytes < 64<<10*on[0].MajorFaults {
		t.Errorf("readahead kept: %d bytes read in %d faults, want readahead windows (64 KiB or more each)", on[0].MemFileReadBytes, on[0].MajorFaults)
	}
}
