// Package capturetest is the workload the capture and recording tests
// record: their test binaries double as a program that maps a file and
// touches pages, as a VMM touches guest memory, plus helpers to make data
// files and page lists. For tests only.
package capturetest

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/testenv"
)

// Env set to "1" makes a test binary run the workload instead of
// its tests; other values are the packages' own child modes.
const Env = "SNAPBPF_CAPTURE_CHILD"

// Main runs the workload and exits if the test binary was started as one
// (Env is "1"); a TestMain calls it first.
func Main() {
	if os.Getenv(Env) != "1" {
		return
	}
	if err := child(); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(1)
	}
	os.Exit(0)
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
	mem, f, err := testenv.MapPrivate(path)
	if err != nil {
		return err
	}
	defer f.Close()
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
	runtime.KeepAlive(sum) // keeps the loads
	if r := os.Getenv("RESULT"); r != "" {
		return os.WriteFile(r, []byte(strconv.FormatInt(elapsed.Nanoseconds(), 10)), 0o644)
	}
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

// Argv is the command line that runs the workload on file: it maps file
// private, applies madv (comma-separated: random, hugepage), reads a byte
// of each of pages in order and writes the loop's ns to result (if set).
func Argv(t *testing.T, file string, pages []uint64, madv, result string) []string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return []string{"/usr/bin/env", Env + "=1", "FILE=" + file, "PAGES=" + writePages(t, pages),
		"MADV=" + madv, "RESULT=" + result, exe}
}

// Run runs argv (an Argv) and fails t if it fails.
func Run(t *testing.T, argv []string) {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

// DataFile creates a file of size bytes with real (non-sparse, non-zero)
// data on the root disk: tmpfs has no page cache to capture.
func DataFile(t *testing.T, size int64) string {
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

// RandomPages picks k distinct pages below n, in random order.
func RandomPages(seed uint64, k int, n uint64) []uint64 {
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

// Sorted is p in ascending order (a copy).
func Sorted(p []uint64) []uint64 {
	s := slices.Clone(p)
	slices.Sort(s)
	return s
}

// AssertCovers fails t unless every page of want is in got.
func AssertCovers(t *testing.T, got, want []uint64) {
	t.Helper()
	have := make(map[uint64]bool, len(got))
	for _, p := range got {
		have[p] = true
	}
	missing := 0
	for _, p := range want {
		if !have[p] {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d touched pages missing from the capture", missing, len(want))
	}
}
