package replay

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// threadFaults returns the calling thread's minor and major faults.
func threadFaults() (minor, major int64) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0, 0
	}
	return ru.Minflt, ru.Majflt
}

// processReadBytes is this process's storage reads so far (read_bytes of
// /proc/self/io): faults, prefetch, loaders and handlers, direct I/O too.
func processReadBytes() (int64, error) {
	f, err := os.Open("/proc/self/io")
	if err != nil {
		return 0, fmt.Errorf("read /proc/self/io: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "read_bytes: "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("no read_bytes in /proc/self/io")
}

// addrRange is [lo, hi) of this process's address space.
type addrRange struct{ lo, hi uint64 }

// anonBytes sums, for each range, the anonymous memory (smaps
// "Anonymous:") of the mappings inside it: guest pages written since the
// restore in a private file mapping, or every installed page of an
// anonymous one (REAP). The shared zero page is not counted.
func anonBytes(ranges []addrRange) ([]int64, error) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return nil, fmt.Errorf("read /proc/self/smaps: %w", err)
	}
	defer f.Close()
	out := make([]int64, len(ranges))
	cur := -1
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		first, rest, _ := strings.Cut(line, " ")
		if !strings.HasSuffix(first, ":") {
			// A mapping header: "lo-hi perms offset dev inode [path]".
			cur = -1
			los, his, ok := strings.Cut(first, "-")
			if !ok {
				continue
			}
			lo, err1 := strconv.ParseUint(los, 16, 64)
			hi, err2 := strconv.ParseUint(his, 16, 64)
			if err1 != nil || err2 != nil {
				continue
			}
			for i, r := range ranges {
				if lo >= r.lo && hi <= r.hi {
					cur = i
					break
				}
			}
			continue
		}
		if cur < 0 || first != "Anonymous:" {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
		if err == nil {
			out[cur] += kb << 10
		}
	}
	return out, sc.Err()
}
