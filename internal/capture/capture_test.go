package capture

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/blockdev"
	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/pages"
)

const mib = 1 << 20

func knob(t *testing.T, path string) string {
	t.Helper()
	q, err := blockdev.For(path)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := q.Get("read_ahead_kb")
	if err != nil {
		t.Fatal(err)
	}
	return kb
}

// TestRecordCommandExact: a program that maps a cold file without madvise
// and touches K random pages yields those K pages and at most 5% more.
func TestRecordCommandExact(t *testing.T) {
	needRoot(t)
	path := dataFile(t, 256*mib)
	const k = 500
	touched := randomPages(1, k, 256*mib/pages.Size)
	for _, tc := range []struct{ name, madv string }{
		{"no-madvise", ""},
		// QEMU advises guest RAM MADV_HUGEPAGE; without the seccomp
		// filter each fault would read two 2 MiB folios.
		{"qemu-like-hugepage-advice", "hugepage"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := knob(t, path)
			c, err := RecordCommand(context.Background(), path, childArgv(t, path, touched, tc.madv, ""), CommandOptions{Method: MethodEBPF})
			if err != nil {
				t.Fatal(err)
			}
			// Not a plain equality: the readahead tests, run in parallel
			// by `go test ./...`, lower the same disk for moments.
			if after := knob(t, path); after != before && after == "0" {
				t.Errorf("read_ahead_kb %s after recording, was %s", after, before)
			}
			got := Pages(c, 0)
			t.Logf("touched %d, captured %d pages in %d accesses; lost %d, readahead windows %d, resident at start %d, disk readahead off for %v, opens %+v",
				k, len(got), len(c.Accesses), c.Lost, c.ReadaheadWindows, c.ResidentAtStart, c.DeviceReadaheadOff, c.Opens)
			assertCovers(t, got, touched)
			if len(got) > k*105/100 {
				t.Errorf("captured %d pages for %d touched: more than 5%% extra", len(got), k)
			}
			if c.IncludesReadahead || !c.ReadaheadChecked {
				t.Errorf("IncludesReadahead=%v ReadaheadChecked=%v, want false, true", c.IncludesReadahead, c.ReadaheadChecked)
			}
			// The first-touch order is the touch order.
			if !slices.Equal(got[:k], touched) {
				t.Errorf("capture order differs from touch order")
			}
		})
	}
}

func assertCovers(t *testing.T, got, want []uint64) {
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

// TestLargeFolios: ext4 on 6.18 caches read() readahead in large folios;
// one event then stands for 2^order pages and the capture must count them
// all: the captured pages are exactly the cached ones.
func TestLargeFolios(t *testing.T) {
	needRoot(t)
	path := dataFile(t, 64*mib)
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
	got := sorted(Pages(c, 0))
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

// TestHoles: pages read from holes of a sparse file are kept out of the
// data pages, counted, and listed as hole pages.
func TestHoles(t *testing.T) {
	needRoot(t)
	dir, err := os.MkdirTemp("/var/tmp", "snapbpf-holes-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := dir + "/mem"
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	const size = 64 * mib
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	data := []pages.Extent{{Page: 1024, N: 1024}, {Page: 5120, N: 256}, {Page: 10240, N: 2048}} // pages
	buf := make([]byte, 8*mib)
	for i := range buf {
		buf[i] = byte(i%251 + 1)
	}
	for _, e := range data {
		n := e.N * pages.Size
		if _, err := f.WriteAt(buf[:n], int64(e.Page*pages.Size)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()

	touched := randomPages(3, 400, size/pages.Size)
	var inData, inHoles []uint64
	for _, p := range touched {
		if slices.ContainsFunc(data, func(e pages.Extent) bool { return p >= e.Page && p < e.End() }) {
			inData = append(inData, p)
		} else {
			inHoles = append(inHoles, p)
		}
	}
	c, err := RecordCommand(context.Background(), path, childArgv(t, path, touched, "", ""), CommandOptions{Method: MethodEBPF})
	if err != nil {
		t.Fatal(err)
	}
	got := Pages(c, 0)
	t.Logf("touched %d in data, %d in holes; captured %d, dropped %d hole pages", len(inData), len(inHoles), len(got), c.HolePagesDropped)
	for _, p := range got {
		if !slices.ContainsFunc(data, func(e pages.Extent) bool { return p >= e.Page && p < e.End() }) {
			t.Errorf("page %d is in a hole", p)
		}
	}
	assertCovers(t, got, inData)
	if c.HolePagesDropped != uint64(len(inHoles)) {
		t.Errorf("HolePagesDropped = %d, want %d", c.HolePagesDropped, len(inHoles))
	}
	holes := HolePages(c, 0)
	slices.Sort(holes)
	slices.Sort(inHoles)
	if !slices.Equal(holes, slices.Compact(inHoles)) {
		t.Errorf("hole pages %v, want the touched hole pages %v", holes, inHoles)
	}
}

// TestLostCounted: with the reader held back and a one-page ring buffer,
// records the kernel cannot queue are counted, and Stop says so.
func TestLostCounted(t *testing.T) {
	needRoot(t)
	path := dataFile(t, 16*mib)
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
	runChild(t, childArgv(t, path, randomPages(5, k, 16*mib/pages.Size), "random", ""))
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

// TestMincoreFallback: residency after the run covers the touched pages
// and, with readahead on, much more; the capture says it includes it.
func TestMincoreFallback(t *testing.T) {
	needRoot(t) // DropCache needs no root, but the comparison below does not hold on tmpfs
	path := dataFile(t, 256*mib)
	const k = 500
	touched := randomPages(1, k, 256*mib/pages.Size)
	c, err := RecordCommand(context.Background(), path, childArgv(t, path, touched, "", ""), CommandOptions{Method: MethodMincore})
	if err != nil {
		t.Fatal(err)
	}
	got := Pages(c, 0)
	t.Logf("mincore: %d pages for %d touched (read_ahead_kb %s)", len(got), k, knob(t, path))
	if c.Method != MethodMincore || !c.IncludesReadahead {
		t.Errorf("Method %q IncludesReadahead %v", c.Method, c.IncludesReadahead)
	}
	assertCovers(t, got, touched)
	if knob(t, path) != "0" && len(got) < 2*k {
		t.Errorf("mincore capture %d pages: expected readahead to inflate it", len(got))
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
	cmd.Env = append(os.Environ(), childEnv+"=probe", "FILE="+file)
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

func TestUnknownMethod(t *testing.T) {
	_, err := RecordCommand(context.Background(), "/nonexistent", []string{"true"}, CommandOptions{Method: "uffd"})
	if err == nil || !strings.Contains(err.Error(), "unknown method") {
		t.Fatalf("err = %v", err)
	}
}

// TestRecordCommandOwnTree: a command's child touches pages while another
// process reads the same file: the capture holds the child's pages only
// and counts the other's.
func TestRecordCommandOwnTree(t *testing.T) {
	needRoot(t)
	path := dataFile(t, 256*mib)
	const k = 300
	touched := randomPages(2, k, 128*mib/pages.Size) // the first half
	// sh forks the child (a command follows it), so the pages come from a
	// descendant of the recorded command, not the command itself.
	argv := append([]string{"/bin/sh", "-c", `"$@"; sleep 1`, "sh"}, childArgv(t, path, touched, "", "")...)
	foreign := make(chan error, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		// The second half, from a process outside the command's tree.
		foreign <- exec.Command("dd", "if="+path, "of=/dev/null", "bs=4096", "skip=49152", "count=512").Run()
	}()
	c, err := RecordCommand(context.Background(), path, argv, CommandOptions{Method: MethodEBPF})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-foreign; err != nil {
		t.Fatalf("foreign reader: %v", err)
	}
	got := Pages(c, 0)
	t.Logf("touched %d, captured %d; foreign %d pages from %d processes (%d unattributed)", k, len(got), c.ForeignPages, c.ForeignProcesses, c.UnattributedPages)
	assertCovers(t, got, touched)
	if len(got) > k*105/100 {
		t.Errorf("captured %d pages for %d touched: more than 5%% extra (readahead?)", len(got), k)
	}
	for _, p := range got {
		if p >= 128*mib/pages.Size {
			t.Fatalf("captured page %d, in the half only the foreign reader read", p)
		}
	}
	if !c.Attributed || c.ForeignPages < 512 || c.ForeignProcesses != 1 || c.UnattributedPages != 0 {
		t.Errorf("attributed %v, foreign %d pages from %d processes (%d unattributed): want at least 512 from 1", c.Attributed, c.ForeignPages, c.ForeignProcesses, c.UnattributedPages)
	}
}
