package replay

import (
	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/procfs"
)

// threadFaults returns the calling thread's minor and major faults.
func threadFaults() (minor, major int64) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0, 0
	}
	return ru.Minflt, ru.Majflt
}

// addrRange is [lo, hi) of this process's address space.
type addrRange struct{ lo, hi uint64 }

// anonBytes sums, for each range, the anonymous memory (smaps
// "Anonymous:") of the mappings inside it: guest pages written since the
// restore in a private file mapping, or every installed page of an
// anonymous one (REAP). The shared zero page is not counted.
func anonBytes(ranges []addrRange) ([]int64, error) {
	ms, err := procfs.Smaps(procfs.Self)
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(ranges))
	for _, m := range ms {
		for i, r := range ranges {
			if m.Lo >= r.lo && m.Hi <= r.hi {
				out[i] += m.Anon
				break
			}
		}
	}
	return out, nil
}
