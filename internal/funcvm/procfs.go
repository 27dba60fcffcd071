package funcvm

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// allocated is the disk space a file uses: data, not holes.
func allocated(path string) (int64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("stat %s: %w", path, err)
	}
	return st.Blocks * 512, nil
}

// procFaults reads a process's minor and major page faults.
func procFaults(pid int) (minor, major int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name may hold spaces; fields start after its ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	// After ')': state(0) ppid pgrp session tty tpgid flags minflt(7) cminflt majflt(9).
	if len(f) < 10 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	minor, _ = strconv.ParseInt(f[7], 10, 64)
	major, _ = strconv.ParseInt(f[9], 10, 64)
	return minor, major, nil
}

// procReadBytes is the storage I/O a process caused (read_bytes of
// /proc/PID/io): for a VMM, the memory file pages its faults read.
func procReadBytes(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "read_bytes: "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("no read_bytes in /proc/%d/io", pid)
}

// mapping is one of a process's mappings of a file, from /proc/PID/smaps.
type mapping struct {
	lo, hi    uint64 // address range
	rss, anon int64  // resident and anonymous (copied on write) bytes
}

// fileMappings lists the process's mappings of path.
func fileMappings(pid int, path string) ([]mapping, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mapping
	var cur *mapping
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if !strings.HasSuffix(fields[0], ":") {
			// A mapping header: "start-end perms offset dev inode path".
			cur = nil
			if len(fields) < 6 || fields[5] != path {
				continue
			}
			lo, hi, _ := strings.Cut(fields[0], "-")
			l, err1 := strconv.ParseUint(lo, 16, 64)
			h, err2 := strconv.ParseUint(hi, 16, 64)
			if err1 != nil || err2 != nil {
				continue
			}
			out = append(out, mapping{lo: l, hi: h})
			cur = &out[len(out)-1]
			continue
		}
		if cur == nil || len(fields) < 2 {
			continue
		}
		n, _ := strconv.ParseInt(fields[1], 10, 64)
		switch fields[0] {
		case "Rss:":
			cur.rss += n << 10
		case "Anonymous:":
			cur.anon += n << 10
		}
	}
	return out, sc.Err()
}

// mappingUsage sums, over the process's mappings of path, the resident
// bytes (guest memory touched, shared or private) and the anonymous bytes
// (guest pages written since restore, private copies).
func mappingUsage(pid int, path string) (rss, anon int64, err error) {
	ms, err := fileMappings(pid, path)
	for _, m := range ms {
		rss, anon = rss+m.rss, anon+m.anon
	}
	return rss, anon, err
}

// mappingRange is the address range of the process's mappings of path
// (lowest start to highest end; a VMM maps guest RAM once).
func mappingRange(pid int, path string) (start, end uint64, err error) {
	ms, err := fileMappings(pid, path)
	if err != nil {
		return 0, 0, err
	}
	if len(ms) == 0 {
		return 0, 0, fmt.Errorf("process %d does not map %s", pid, path)
	}
	start, end = ms[0].lo, ms[0].hi
	for _, m := range ms[1:] {
		start, end = min(start, m.lo), max(end, m.hi)
	}
	return start, end, nil
}
