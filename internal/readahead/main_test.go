package readahead

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/blockdev"
	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/testenv"
)

// With childEnv set, the test binary is the workload: a process that maps
// a file the way a VMM maps guest memory.
const childEnv = "SNAPBPF_READAHEAD_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
		os.Exit(m.Run())
	case "touch":
		exit(touchChild())
	case "hold":
		exit(holdChild())
	}
	exit(fmt.Errorf("unknown child mode %q", os.Getenv(childEnv)))
}

func exit(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// touchChild maps FILE private without madvise, keeps a descriptor open
// (as QEMU does), says "ready", then touches each page index read from
// stdin and answers "ok".
func touchChild() error {
	path := os.Getenv("FILE")
	mem, f, err := testenv.MapPrivate(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	var sum byte
	for sc.Scan() {
		p, err := strconv.Atoi(sc.Text())
		if err != nil {
			return err
		}
		sum += mem[p*os.Getpagesize()]
		fmt.Println("ok", sum)
	}
	return sc.Err()
}

// holdChild opens a window on QUEUE for MAX (a duration), with LockDir at
// LOCKDIR, says "held", and waits a minute to be killed.
func holdChild() error {
	LockDir = os.Getenv("LOCKDIR")
	max, err := time.ParseDuration(os.Getenv("MAX"))
	if err != nil {
		return err
	}
	w, err := suspendQueue(context.Background(), blockdev.Queue(os.Getenv("QUEUE")), max, "test holder")
	if err != nil {
		return err
	}
	defer w.Close()
	fmt.Println("held")
	time.Sleep(time.Minute)
	return nil
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: changes read_ahead_kb and uses pidfd_getfd")
	}
}

// dataFile writes size bytes of real data on the root disk (tmpfs has no
// readahead) and syncs them so that DONTNEED can drop them.
func dataFile(t *testing.T, size int) string {
	t.Helper()
	buf := make([]byte, size)
	rand.NewChaCha8([32]byte{2}).Read(buf)
	return testenv.DiskFile(t, buf)
}

func dropCache(t *testing.T, path string) {
	t.Helper()
	if n, err := pagecache.Drop(path); err != nil {
		t.Fatal(err)
	} else if n != 0 {
		t.Fatalf("%d pages still cached after DONTNEED", n)
	}
}

// residentPages counts path's cached pages with mincore(2).
func residentPages(t *testing.T, path string) int {
	t.Helper()
	n, err := pagecache.Cached(path)
	if err != nil {
		t.Fatal(err)
	}
	return int(n)
}
