package procfs

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// Meminfo reads a meminfo file (/proc/meminfo when path is empty) into its
// values by field name, in bytes for the fields given in kB and as they
// stand for the counts (HugePages_Total). Both sides read it: the guest
// agent its own memory, the load generator the host's.
func Meminfo(path string) (map[string]int64, error) {
	if path == "" {
		path = "/proc/meminfo"
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		n, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			continue
		}
		if len(fields) > 1 && fields[1] == "kB" {
			n *= 1024
		}
		out[k] = n
	}
	return out, sc.Err()
}
