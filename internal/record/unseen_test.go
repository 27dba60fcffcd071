package record

import (
	"slices"
	"strings"
	"testing"

	"github.com/snapbpf/snapbpf/internal/policy"
)

// TestUnseenInputNoWorseThanLazy: on an input the recording never saw, a
// snapbpf restore brings the pages its working set lacks in as lazy does,
// with readahead, so its memory-file major faults are at most lazy's on
// the same input (counts, not times: this host is shared and noisy). With
// policy.Options.NoReadahead (the paper's policy, kept for comparison) the same
// pages come one per fault. Policies other than snapbpf refuse the option.
func TestUnseenInputNoWorseThanLazy(t *testing.T) {
	f := recordedSnapshot(t)
	for _, name := range []string{policy.Lazy, policy.NoRA} {
		if _, err := policy.New(name, f.dir, "", policy.Options{NoReadahead: true}); err == nil || !strings.Contains(err.Error(), "snapbpf only") {
			t.Errorf("policy %s with NoReadahead: error %v, want a refusal", name, err)
		}
	}
	// Input 2 touches records input 1 (the recording) did not. Three
	// restores of each, interleaved, medians: a single cold restore's
	// fault count moves by a few with what DAMON evicted meanwhile.
	const input, runs = 2, 3
	var lazy, snap, strict, strictRead []int64
	for range runs {
		l, _ := restoreOpts(t, f, policy.Lazy, policy.Options{}, input, 1)
		s, _ := restoreOpts(t, f, policy.SnapBPF, policy.Options{}, input, 1)
		n, _ := restoreOpts(t, f, policy.SnapBPF, policy.Options{NoReadahead: true}, input, 1)
		lazy = append(lazy, l[0].MemFileMajorFaults)
		snap = append(snap, s[0].MemFileMajorFaults)
		strict = append(strict, n[0].MemFileMajorFaults)
		strictRead = append(strictRead, n[0].MemFileReadBytes)
		t.Logf("input %d, memory-file major faults: lazy %d, snapbpf %d (read %d KiB), snapbpf --no-readahead %d (read %d KiB)",
			input, l[0].MemFileMajorFaults, s[0].MemFileMajorFaults, s[0].MemFileReadBytes>>10, n[0].MemFileMajorFaults, n[0].MemFileReadBytes>>10)
	}
	ml, ms, mn := median(lazy), median(snap), median(strict)
	if mn == 0 {
		t.Fatalf("input %d faulted on nothing outside input 1's working set with readahead off: nothing to compare", input)
	}
	if ms > ml {
		t.Errorf("snapbpf on an unseen input: median %d memory-file major faults, more than lazy's %d", ms, ml)
	}
	// The comparison means something only if the set lacks pages that
	// one-page faults bring in many more times than readahead does.
	if mn <= ml {
		t.Errorf("snapbpf --no-readahead: median %d memory-file major faults, not more than lazy's %d: input %d does not reach outside the set", mn, ml, input)
	}
	// One page per fault with readahead off (4 KiB; a hole reads nothing),
	// with room for a retried fault counted twice.
	if r := median(strictRead); r > 2*4096*mn {
		t.Errorf("snapbpf --no-readahead: %d bytes read in %d faults, more than a page each", r, mn)
	}
}

func median(v []int64) int64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
