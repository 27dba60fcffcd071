// Package procfs reads what /proc says about a process: its stat (state,
// parent, faults, start time), its storage reads, its mappings (maps and
// smaps) and its open files. A file is named by device and inode, never by
// path, so a mapping or descriptor is found whatever name the process
// opened the file by (a /proc/self/fd link, a bind mount, a renamed file).
// It also reads the machine's memory (Meminfo), host or guest.
package procfs

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Self is the pid that names the calling process (/proc/self).
const Self = 0

func path(pid int, name string) string {
	if pid == Self {
		return "/proc/self/" + name
	}
	return fmt.Sprintf("/proc/%d/%s", pid, name)
}

// Stat is what a process's /proc/PID/stat says that snapbpf uses.
type Stat struct {
	State       string // R, S, D, Z, ...
	Parent      int
	MinorFaults int64
	MajorFaults int64
	StartTime   uint64 // clock ticks after boot
}

// ReadStat reads /proc/PID/stat.
func ReadStat(pid int) (Stat, error) {
	p := path(pid, "stat")
	b, err := os.ReadFile(p)
	if err != nil {
		return Stat{}, err
	}
	st, err := parseStat(string(b))
	if err != nil {
		return Stat{}, fmt.Errorf("parse %s: %w", p, err)
	}
	return st, nil
}

func parseStat(s string) (Stat, error) {
	// The command name may hold spaces and parentheses; fields start
	// after its last ')'.
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return Stat{}, fmt.Errorf("no command name")
	}
	// After ')': state(0) ppid(1) pgrp session tty tpgid flags minflt(7)
	// cminflt majflt(9) ... starttime(19).
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return Stat{}, fmt.Errorf("%d fields", len(f))
	}
	var st Stat
	var errs [4]error
	st.State = f[0]
	st.Parent, errs[0] = strconv.Atoi(f[1])
	st.MinorFaults, errs[1] = strconv.ParseInt(f[7], 10, 64)
	st.MajorFaults, errs[2] = strconv.ParseInt(f[9], 10, 64)
	st.StartTime, errs[3] = strconv.ParseUint(f[19], 10, 64)
	for i, name := range []string{"parent", "minflt", "majflt", "starttime"} {
		if errs[i] != nil {
			return Stat{}, fmt.Errorf("%s: %w", name, errs[i])
		}
	}
	return st, nil
}

// Cmdline is a process's arguments (/proc/PID/cmdline): empty for a kernel
// thread or a zombie, an error if the process is gone.
func Cmdline(pid int) ([]string, error) {
	b, err := os.ReadFile(path(pid, "cmdline"))
	if err != nil {
		return nil, err
	}
	b = bytes.TrimSuffix(b, []byte{0})
	if len(b) == 0 {
		return nil, nil
	}
	return strings.Split(string(b), "\x00"), nil
}

// ReadBytes is the storage reads a process caused so far (read_bytes of
// /proc/PID/io): page faults, readahead, read(2) and direct I/O alike.
func ReadBytes(pid int) (int64, error) {
	p := path(pid, "io")
	f, err := os.Open(p)
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
	return 0, fmt.Errorf("no read_bytes in %s", p)
}

// File names a file by device and inode, as stat(2) gives them.
type File struct {
	Dev uint64 // st_dev
	Ino uint64
}

// FileOf is the file at path.
func FileOf(name string) (File, error) {
	var st unix.Stat_t
	if err := unix.Stat(name, &st); err != nil {
		return File{}, fmt.Errorf("stat %s: %w", name, err)
	}
	return File{Dev: uint64(st.Dev), Ino: st.Ino}, nil
}

// Mapping is one line of /proc/PID/maps, with smaps' sizes when read from
// there.
type Mapping struct {
	Lo, Hi uint64 // address range [Lo, Hi)
	Offset uint64 // file offset at Lo
	File   File   // zero for an anonymous mapping
	Path   string
	// Rss and Anon are resident and anonymous (written, copied on write)
	// bytes; Smaps only.
	Rss, Anon int64
}

// Maps reads /proc/PID/maps.
func Maps(pid int) ([]Mapping, error) {
	return readMappings(path(pid, "maps"))
}

// Smaps reads /proc/PID/smaps: Maps with Rss and Anon.
func Smaps(pid int) ([]Mapping, error) {
	return readMappings(path(pid, "smaps"))
}

// Of returns the mappings of f among ms.
func Of(ms []Mapping, f File) []Mapping {
	var out []Mapping
	for _, m := range ms {
		if m.File == f && f != (File{}) {
			out = append(out, m)
		}
	}
	return out
}

func readMappings(p string) ([]Mapping, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ms, err := parseMappings(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	return ms, nil
}

// parseMappings reads maps or smaps: header lines "lo-hi perms offset
// major:minor inode [path]", and in smaps "Name: value kB" lines after
// each.
func parseMappings(r io.Reader) ([]Mapping, error) {
	var out []Mapping
	cur := -1
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if strings.HasSuffix(f[0], ":") {
			if cur < 0 || len(f) < 2 {
				continue
			}
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				continue
			}
			switch f[0] {
			case "Rss:":
				out[cur].Rss += n << 10
			case "Anonymous:":
				out[cur].Anon += n << 10
			}
			continue
		}
		cur = -1
		m, ok := parseHeader(f)
		if !ok {
			continue
		}
		out = append(out, m)
		cur = len(out) - 1
	}
	return out, sc.Err()
}

func parseHeader(f []string) (Mapping, bool) {
	if len(f) < 5 {
		return Mapping{}, false
	}
	los, his, ok1 := strings.Cut(f[0], "-")
	mas, mis, ok2 := strings.Cut(f[3], ":")
	if !ok1 || !ok2 {
		return Mapping{}, false
	}
	lo, err1 := strconv.ParseUint(los, 16, 64)
	hi, err2 := strconv.ParseUint(his, 16, 64)
	off, err3 := strconv.ParseUint(f[2], 16, 64)
	ma, err4 := strconv.ParseUint(mas, 16, 32)
	mi, err5 := strconv.ParseUint(mis, 16, 32)
	ino, err6 := strconv.ParseUint(f[4], 10, 64)
	for _, err := range []error{err1, err2, err3, err4, err5, err6} {
		if err != nil {
			return Mapping{}, false
		}
	}
	if hi <= lo {
		return Mapping{}, false
	}
	m := Mapping{Lo: lo, Hi: hi, Offset: off}
	if ino != 0 {
		m.File = File{Dev: unix.Mkdev(uint32(ma), uint32(mi)), Ino: ino}
	}
	if len(f) > 5 {
		m.Path = strings.Join(f[5:], " ")
	}
	return m, true
}

// FDs lists the descriptors of process pid that refer to file f.
func FDs(pid int, f File) ([]int, error) {
	dir := path(pid, "fd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	var fds []int
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st unix.Stat_t
		// stat follows the magic link to the open file itself.
		if err := unix.Stat(dir+"/"+e.Name(), &st); err != nil {
			continue // closed meanwhile, or not statable (anon inode)
		}
		if uint64(st.Dev) == f.Dev && st.Ino == f.Ino {
			fds = append(fds, fd)
		}
	}
	return fds, nil
}

// OpenFDs counts the descriptors process pid has open (/proc/PID/fd).
func OpenFDs(pid int) (int, error) {
	ents, err := os.ReadDir(path(pid, "fd"))
	if err != nil {
		return 0, err
	}
	return len(ents), nil
}

// RSS is process pid's resident memory in bytes (VmRSS of
// /proc/PID/status: anonymous, file-backed and shared memory it maps).
func RSS(pid int) (int64, error) {
	p := path(pid, "status")
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("%s: VmRSS %q: want N kB", p, strings.TrimSpace(v))
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: VmRSS: %w", p, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in %s (a kernel thread or a zombie)", p)
}

// Pids lists the processes that exist now (the numeric entries of /proc).
func Pids() ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && e.IsDir() {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
