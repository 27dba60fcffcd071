package capture

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/snapbpf/snapbpf/internal/capture/capturetest"
	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/pages"
)

const mib = 1 << 20

// TestLargeFolios: ext4 on 6.18 caches read() readahead in large folios;
// one event then stands for 2^order pages and the capture must count them
// all: the captured pages are exactly the cached ones.
func TestLargeFolios(t *testing.T) {
	needRoot(t)
	path := capturetest.DataFile(t, 64*mib)
	if _, err := pagecache.Drop(path); err != nil {
		t.Fatal(err)
	}
	r, err := NewRecorder([]string{path})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	// This process's own reads, with readahead on: sequential reads grow
	// the readahead window and with it the folio order.
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4*mib)
	for off := int64(8 * mib); off < 24*mib; off += int64(len(buf)) {
		if _, err := f.ReadAt(buf, off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	c, err := r.Stop()
	if err != nil {
		t.Fatal(err)
	}
	hist := map[uint32]int{}
	var sum uint64
	for _, a := range c.Accesses {
		hist[a.NPages]++
		sum += uint64(a.NPages)
	}
	t.Logf("accesses by folio size (pages): %v", hist)
	if len(hist) == 1 && hist[1] > 0 {
		t.Skip("no large folios on this filesystem/kernel")
	}
	runs, n, err := pagecache.SettledResident(path)
	if err != nil {
		t.Fatal(err)
	}
	var cached []uint64
	for _, r := range runs {
		for p := r.Page; p < r.End(); p++ {
			cached = append(cached, p)
		}
	}
	got := capturetest.Sorted(Pages(c, 0))
	// Every cached page was captured. A few captured pages may be gone
	// from the cache already: these hosts run DAMON's pageout scheme,
	// which evicts cold page cache with no memory pressure (seen: 14 and,
	// once, 144 of 7168 pages within a second). A capture that invented
	// pages would be off by far more than the 5% allowed.
	gotSet := map[uint64]bool{}
	for _, p := range got {
		gotSet[p] = true
	}
	for _, p := range cached {
		if !gotSet[p] {
			t.Fatalf("page %d is cached but was not captured (%d captured, %d cached)", p, len(got), n)
		}
	}
	if missing := len(got) - len(cached); missing > len(got)/20 {
		t.Errorf("captured %d pages, only %d cached: more than 5%% missing", len(got), n)
	}
	if sum != uint64(len(got)) {
		t.Errorf("folios add up to %d pages, %d distinct", sum, len(got))
	}
	if !c.IncludesReadahead {
		t.Errorf("read() readahead not reported (windows %d)", c.ReadaheadWindows)
	}
}

// TestLostCounted: with the reader held back and a one-page ring buffer,
// records the kernel cannot queue are counted, and Stop says so.
func TestLostCounted(t *testing.T) {
	needRoot(t)
	path := capturetest.DataFile(t, 16*mib)
	if _, err := pagecache.Drop(path); err != nil {
		t.Fatal(err)
	}
	r, err := NewRecorder([]string{path}, WithRingBuffer(os.Getpagesize()))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.hold = make(chan struct{})
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	const k = 1000
	// MADV_RANDOM: exactly one insertion per touched page.
	capturetest.Run(t, capturetest.Argv(t, path, capturetest.RandomPages(5, k, 16*mib/pages.Size), "random", ""))
	close(r.hold)
	c, err := r.Stop()
	if !errors.Is(err, ErrLostEvents) {
		t.Fatalf("Stop error = %v, want ErrLostEvents", err)
	}
	t.Logf("kept %d, lost %d", len(c.Accesses), c.Lost)
	if c.Lost == 0 || uint64(len(c.Accesses))+c.Lost != k {
		t.Errorf("kept %d + lost %d, want %d in all, some lost", len(c.Accesses), c.Lost, k)
	}
}

func TestSupported(t *testing.T) {
	needRoot(t)
	if err := Supported(); err != nil {
		t.Fatal(err)
	}
}

// TestNoPrivilege: as an unprivileged user, NewRecorder fails with an error
// that says what is needed and points at the mincore fallback.
func TestNoPrivilege(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to start a child as nobody")
	}
	dir, err := os.MkdirTemp("/var/tmp", "snapbpf-noprivs-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe := dir + "/capture.test"
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	file := dir + "/mem"
	if err := os.WriteFile(file, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), capturetest.Env+"=probe", "FILE="+file)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("probe as nobody: %v\n%s", err, out)
	}
	msg := string(out)
	t.Logf("unprivileged: %s", strings.TrimSpace(msg))
	// The CLI adds what to do instead (cmd/snapbpf's hint).
	for _, want := range []string{"needs root/CAP_BPF"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
}
