package procfs

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseStat(t *testing.T) {
	// A command name with spaces and a ')' of its own.
	line := "4242 (qemu) sys (x)) S 17 4242 4242 0 -1 4194560 1234 0 56 0 10 5 0 0 20 0 3 0 987654 0 0"
	st, err := parseStat(line)
	if err != nil {
		t.Fatal(err)
	}
	want := Stat{State: "S", Parent: 17, MinorFaults: 1234, MajorFaults: 56, StartTime: 987654}
	if st != want {
		t.Errorf("parseStat = %+v, want %+v", st, want)
	}
	for _, bad := range []string{"4242 qemu S 1", "4242 (qemu) S 1 2 3", "4242 (q) S x 4242 4242 0 -1 0 1 0 2 0 0 0 0 0 20 0 1 0 9 0"} {
		if _, err := parseStat(bad); err == nil {
			t.Errorf("parseStat(%q): no error", bad)
		}
	}
}

func TestParseMappings(t *testing.T) {
	smaps := `55d0c0000000-55d0c0100000 r-xp 00000000 fe:01 999                        /usr/bin/qemu system
Rss:                 512 kB
Anonymous:             0 kB
7f0000000000-7f0000200000 rw-p 00000000 00:00 0 
Rss:                2048 kB
Anonymous:          2048 kB
7f0000200000-7f0004200000 rw-p 04000000 fe:01 4242                       /snap/mem
Rss:                 100 kB
Anonymous:            12 kB
not a mapping line
`
	ms, err := parseMappings(strings.NewReader(smaps))
	if err != nil {
		t.Fatal(err)
	}
	mem := File{Dev: unix.Mkdev(0xfe, 1), Ino: 4242}
	want := []Mapping{
		{Lo: 0x55d0c0000000, Hi: 0x55d0c0100000, File: File{Dev: unix.Mkdev(0xfe, 1), Ino: 999}, Path: "/usr/bin/qemu system", Rss: 512 << 10},
		{Lo: 0x7f0000000000, Hi: 0x7f0000200000, Rss: 2048 << 10, Anon: 2048 << 10},
		{Lo: 0x7f0000200000, Hi: 0x7f0004200000, Offset: 0x4000000, File: mem, Path: "/snap/mem", Rss: 100 << 10, Anon: 12 << 10},
	}
	if !slices.Equal(ms, want) {
		t.Errorf("parseMappings =\n%+v\nwant\n%+v", ms, want)
	}
	if got := Of(ms, mem); len(got) != 1 || got[0] != want[2] {
		t.Errorf("Of(mem) = %+v", got)
	}
	if got := Of(ms, File{}); got != nil {
		t.Errorf("Of(anonymous) = %+v, want none", got)
	}
}

// TestSelf reads this process's own files: a mapping and a descriptor of
// a file are found by its device and inode.
func TestSelf(t *testing.T) {
	st, err := ReadStat(Self)
	if err != nil {
		t.Fatal(err)
	}
	if st.Parent != os.Getppid() || st.StartTime == 0 {
		t.Errorf("ReadStat(Self) = %+v; parent want %d", st, os.Getppid())
	}
	if _, err := ReadBytes(Self); err != nil {
		t.Error(err)
	}
	path := filepath.Join(t.TempDir(), "mem")
	if err := os.WriteFile(path, make([]byte, 3*4096), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := unix.Mmap(int(f.Fd()), 4096, 2*4096, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	id, err := FileOf(path)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := Smaps(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	got := Of(ms, id)
	if len(got) != 1 || got[0].Offset != 4096 || got[0].Hi-got[0].Lo != 2*4096 || got[0].Path != path {
		t.Errorf("mappings of %s: %+v", path, got)
	}
	fds, err := FDs(Self, id)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(fds, int(f.Fd())) {
		t.Errorf("FDs = %v, want %d among them", fds, f.Fd())
	}
}

func TestMeminfo(t *testing.T) {
	p := filepath.Join(t.TempDir(), "meminfo")
	if err := os.WriteFile(p, []byte("MemTotal:       24000000 kB\nMemAvailable:   20000000 kB\nCached:  1024 kB\nHugePages_Total:       3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := Meminfo(p)
	if err != nil || m["MemTotal"] != 24e6*1024 || m["MemAvailable"] != 2e7*1024 || m["Cached"] != 1<<20 || m["HugePages_Total"] != 3 {
		t.Errorf("%v, %v", m, err)
	}
	if _, err := Meminfo(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("missing file read")
	}
	if m, err := Meminfo(""); err != nil || m["MemTotal"] <= 0 {
		t.Errorf("/proc/meminfo: %v, %v", m, err)
	}
}

// TestCmdline: this test binary's own arguments, and an error for a pid
// that does not exist.
func TestCmdline(t *testing.T) {
	got, err := Cmdline(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, os.Args) {
		t.Errorf("Cmdline(self) = %q, want %q", got, os.Args)
	}
	if _, err := Cmdline(1 << 30); err == nil {
		t.Error("Cmdline of a pid that does not exist: no error")
	}
}

// TestOpenFDsRSSPids: opening a file adds a descriptor, touching memory
// adds to the resident set, and this process is among the pids.
func TestOpenFDsRSSPids(t *testing.T) {
	n0, err := OpenFDs(Self)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	n1, err := OpenFDs(Self)
	f.Close()
	if err != nil || n1 != n0+1 {
		t.Errorf("OpenFDs: %d, then %d after an open (%v)", n0, n1, err)
	}
	r0, err := RSS(Self)
	if err != nil || r0 <= 0 {
		t.Fatalf("RSS = %d, %v", r0, err)
	}
	m, err := unix.Mmap(-1, 0, 64<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	for i := 0; i < len(m); i += 4096 {
		m[i] = 1
	}
	if r1, err := RSS(Self); err != nil || r1 < r0+60<<20 {
		t.Errorf("RSS %d, then %d after touching 64 MiB (%v)", r0, r1, err)
	}
	pids, err := Pids()
	if err != nil || !slices.Contains(pids, os.Getpid()) || !slices.Contains(pids, 1) {
		t.Errorf("Pids = %d pids, want %d and 1 among them (%v)", len(pids), os.Getpid(), err)
	}
}
