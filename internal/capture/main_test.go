package capture

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary doubles as the workload: with childEnv set it maps a file
// and touches pages, like a VMM touching guest memory.
const childEnv = "SNAPBPF_CAPTURE_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		run := child
		switch mode {
		case "probe":
			run = probe
		case "record-parent":
			run = recordParent
		}
		if err := run(); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// child maps FILE private and read-only, optionally madvises it (MADV), and
// reads one byte of each page listed in PAGES (a file, one index a line),
// then writes the touch loop's duration in ns to RESULT.
func child() error {
	path, pagesPath := os.Getenv("FILE"), os.Getenv("PAGES")
	pages, err := readPages(pagesPath)
	if err != nil {
		return err
	}
	if os.Getenv("THPOFF") != "" {
		if err := unix.Prctl(unix.PR_SET_THP_DISABLE, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("prctl: %w", err)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_PRIVATE)
	if err != nil {
		return fmt.Errorf("mmap: %w", err)
	}
	for _, advice := range strings.Split(os.Getenv("MADV"), ",") {
		switch advice {
		case "random":
			err = unix.Madvise(mem, unix.MADV_RANDOM)
		case "hugepage":
			err = unix.Madvise(mem, unix.MADV_HUGEPAGE)
		}
		if err != nil {
			return fmt.Errorf("madvise %s: %w", advice, err)
		}
	}
	ps := os.Getpagesize()
	start := time.Now()
	var sum byte
	for _, p := range pages {
		sum += mem[int(p)*ps]
	}
	elapsed := time.Since(start)
	sink = sum // keeps the loads
	if r := os.Getenv("RESULT"); r != "" {
		return os.WriteFile(r, []byte(strconv.FormatInt(elapsed.Nanoseconds(), 10)), 0o644)
	}
	return nil
}

var sink byte

// probe tries to record FILE and prints the error, for a run without
// privileges.
func probe() error {
	_, err := NewRecorder([]string{os.Getenv("FILE")})
	if err == nil {
		return fmt.Errorf("NewRecorder succeeded without privileges")
	}
	if !errors.Is(err, ErrNoPrivilege) {
		return fmt.Errorf("error does not wrap ErrNoPrivilege: %w", err)
	}
	fmt.Println(err)
	return nil
}

func readPages(path string) ([]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p, err := strconv.ParseUint(strings.TrimSpace(sc.Text()), 10, 64)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, sc.Err()
}

func writePages(t *testing.T, pages []uint64) string {
	t.Helper()
	var b strings.Builder
	for _, p := range pages {
		fmt.Fprintln(&b, p)
	}
	path := t.TempDir() + "/pages"
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// childArgv returns the command line that runs child on file.
func childArgv(t *testing.T, file string, pages []uint64, madv, result string) []string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return []string{"/usr/bin/env", childEnv + "=1", "FILE=" + file, "PAGES=" + writePages(t, pages),
		"MADV=" + madv, "RESULT=" + result, exe}
}

func runChild(t *testing.T, argv []string) {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

// needRoot skips tests that load BPF or change device settings.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads BPF and changes read_ahead_kb")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		t.Skip("needs kernel BTF (/sys/kernel/btf/vmlinux) for CO-RE")
	}
	if err := Supported(); err != nil {
		t.Skipf("BPF capture unsupported here: %v", err)
	}
}

// dataFile creates a file of size bytes with real (non-sparse, non-zero)
// data on the root disk: tmpfs has no page cache to capture.
func dataFile(t *testing.T, size int64) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "snapbpf-capture-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := dir + "/mem"
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	rng := rand.NewChaCha8([32]byte{1})
	for off := int64(0); off < size; off += int64(len(buf)) {
		rng.Read(buf)
		if _, err := f.Write(buf[:min(int64(len(buf)), size-off)]); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	return path
}

// randomPages picks k distinct pages below n, in random order.
func randomPages(seed uint64, k int, n uint64) []uint64 {
	rng := rand.New(rand.NewPCG(seed, seed))
	seen := map[uint64]bool{}
	var out []uint64
	for len(out) < k {
		p := rng.Uint64N(n)
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

func sorted(p []uint64) []uint64 {
	s := slices.Clone(p)
	slices.Sort(s)
	return s
}
