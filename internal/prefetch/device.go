package prefetch

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
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
	q, err := queueDir(unix.Major(st.Dev), unix.Minor(st.Dev))
	if err != nil {
		return fallbackRequestBytes
	}
	kb, err := readKB(filepath.Join(q, "max_sectors_kb"))
	if err != nil || kb <= 0 {
		return fallbackRequestBytes
	}
	return kb << 10
}

// queueDir finds the block queue directory of a device number; for a
// partition it is the parent disk's.
func queueDir(major, minor uint32) (string, error) {
	dev, err := filepath.EvalSymlinks(fmt.Sprintf("/sys/dev/block/%d:%d", major, minor))
	if err != nil {
		return "", err
	}
	for _, d := range []string{dev, filepath.Dir(dev)} {
		if _, err := os.Stat(filepath.Join(d, "queue", "max_sectors_kb")); err == nil {
			return filepath.Join(d, "queue"), nil
		}
	}
	return "", fmt.Errorf("no queue directory for %d:%d", major, minor)
}

func readKB(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}
