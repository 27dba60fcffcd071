package prefetch

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/blockdev"
)

// fallbackRequestBytes is used when the device's limits cannot be read
// (tmpfs, network or stacked file systems): no block device has a smaller
// max_sectors_kb, so one readahead call never reads less than asked.
const fallbackRequestBytes = 128 << 10

// maxRequestBytes is how long a request may be: the device's largest I/O
// (max_sectors_kb). One readahead call (readahead(2), POSIX_FADV_WILLNEED,
// each readahead step of a buffered read) reads at most max(read_ahead_kb,
// max_sectors_kb) of the file's device, the first as the open file saw it
// (force_page_cache_ra; verified on 6.18: one WILLNEED of 64 MiB with
// read_ahead_kb=8192 made exactly 8 MiB resident), so a longer request
// would silently leave pages out. max_sectors_kb alone is the safe bound:
// read_ahead_kb can change (restore briefly sets it to 0) and longer
// requests measured no faster.
func maxRequestBytes(f *os.File) int64 {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fallbackRequestBytes
	}
	q, err := blockdev.ForDev(st.Dev)
	if err != nil {
		return readaheadBytes(st.Dev)
	}
	kb, err := q.KB("max_sectors_kb")
	if err != nil || kb <= 0 {
		return fallbackRequestBytes
	}
	return kb << 10
}

// readaheadBytes is the readahead window of a file system without a block
// device (FUSE: the mount's max_readahead, raised through the same knob),
// which is what one readahead call reads of its files there; at least
// fallbackRequestBytes.
func readaheadBytes(dev uint64) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(dev), unix.Minor(dev)))
	if err != nil {
		return fallbackRequestBytes
	}
	kb, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return fallbackRequestBytes
	}
	return max(kb<<10, fallbackRequestBytes)
}
