package funcvm

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// tcgCmdline is what a TCG guest needs on its command line besides the
// image's. Under TCG the guest's TSC runs at the host's TSC rate, and the
// guest kernel calibrates it against the emulated PIT; on a loaded host that
// calibration fails about half the time, the guest falls back to jiffies
// before timer interrupts run and hangs early in boot (seen here: stuck
// after "Mountpoint-cache hash table entries" with every timestamp 0).
// Handing it the host's TSC rate skips the calibration.
func tcgCmdline() []string {
	khz, err := hostTSCkHz()
	if err != nil {
		return nil
	}
	return []string{fmt.Sprintf("tsc_early_khz=%d", khz)}
}

// hostTSCkHz reads the host's TSC rate: "cpu MHz" in /proc/cpuinfo, which
// is the TSC rate on hosts without frequency scaling (VMs, servers with a
// constant TSC).
func hostTSCkHz() (int64, error) {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(k) != "cpu MHz" {
			continue
		}
		mhz, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || mhz <= 0 {
			return 0, fmt.Errorf("parse cpu MHz %q", v)
		}
		return int64(mhz * 1000), nil
	}
	return 0, fmt.Errorf("no cpu MHz in /proc/cpuinfo")
}
