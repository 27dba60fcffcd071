package record

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/blockdev"
	"github.com/snapbpf/snapbpf/internal/capture"
	"github.com/snapbpf/snapbpf/internal/capture/capturetest"
	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/testenv"
)

const mib = 1 << 20

// needCapture skips tests that load the capture's BPF program or change
// device settings.
func needCapture(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads BPF and changes read_ahead_kb")
	}
	if err := capture.Supported(); err != nil {
		t.Skipf("BPF capture unsupported here: %v", err)
	}
}

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
	needCapture(t)
	path := capturetest.DataFile(t, 256*mib)
	const k = 500
	touched := capturetest.RandomPages(1, k, 256*mib/pages.Size)
	for _, tc := range []struct{ name, madv string }{
		{"no-madvise", ""},
		// QEMU advises guest RAM MADV_HUGEPAGE; without the seccomp
		// filter each fault would read two 2 MiB folios.
		{"qemu-like-hugepage-advice", "hugepage"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := knob(t, path)
			c, err := Command(context.Background(), path, capturetest.Argv(t, path, touched, tc.madv, ""), CommandOptions{Method: capture.MethodEBPF})
			if err != nil {
				t.Fatal(err)
			}
			// Not a plain equality: the readahead tests, run in parallel
			// by `go test ./...`, lower the same disk for moments.
			if after := knob(t, path); after != before && after == "0" {
				t.Errorf("read_ahead_kb %s after recording, was %s", after, before)
			}
			got := capture.Pages(c, 0)
			t.Logf("touched %d, captured %d pages in %d accesses; lost %d, readahead windows %d, resident at start %d, disk readahead off for %v, opens %+v",
				k, len(got), len(c.Accesses), c.Lost, c.ReadaheadWindows, c.ResidentAtStart, c.DeviceReadaheadOff, c.Opens)
			capturetest.AssertCovers(t, got, touched)
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

// TestHoles: pages read from holes of a sparse file are kept out of the
// data pages, counted, and listed as hole pages.
func TestHoles(t *testing.T) {
	needCapture(t)
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

	touched := capturetest.RandomPages(3, 400, size/pages.Size)
	var inData, inHoles []uint64
	for _, p := range touched {
		if slices.ContainsFunc(data, func(e pages.Extent) bool { return p >= e.Page && p < e.End() }) {
			inData = append(inData, p)
		} else {
			inHoles = append(inHoles, p)
		}
	}
	c, err := Command(context.Background(), path, capturetest.Argv(t, path, touched, "", ""), CommandOptions{Method: capture.MethodEBPF})
	if err != nil {
		t.Fatal(err)
	}
	got := capture.Pages(c, 0)
	t.Logf("touched %d in data, %d in holes; captured %d, dropped %d hole pages", len(inData), len(inHoles), len(got), c.HolePagesDropped)
	for _, p := range got {
		if !slices.ContainsFunc(data, func(e pages.Extent) bool { return p >= e.Page && p < e.End() }) {
			t.Errorf("page %d is in a hole", p)
		}
	}
	capturetest.AssertCovers(t, got, inData)
	if c.HolePagesDropped != uint64(len(inHoles)) {
		t.Errorf("HolePagesDropped = %d, want %d", c.HolePagesDropped, len(inHoles))
	}
	holes := capture.HolePages(c, 0)
	slices.Sort(holes)
	slices.Sort(inHoles)
	if !slices.Equal(holes, slices.Compact(inHoles)) {
		t.Errorf("hole pages %v, want the touched hole pages %v", holes, inHoles)
	}
}

// TestMincoreFallback: residency after the run covers the touched pages
// and, with readahead on, much more; the capture says it includes it.
func TestMincoreFallback(t *testing.T) {
	needCapture(t) // DropCache needs no root, but the comparison below does not hold on tmpfs
	path := capturetest.DataFile(t, 256*mib)
	const k = 500
	touched := capturetest.RandomPages(1, k, 256*mib/pages.Size)
	c, err := Command(context.Background(), path, capturetest.Argv(t, path, touched, "", ""), CommandOptions{Method: capture.MethodMincore})
	if err != nil {
		t.Fatal(err)
	}
	got := capture.Pages(c, 0)
	t.Logf("mincore: %d pages for %d touched (read_ahead_kb %s)", len(got), k, knob(t, path))
	if c.Method != capture.MethodMincore || !c.IncludesReadahead {
		t.Errorf("Method %q IncludesReadahead %v", c.Method, c.IncludesReadahead)
	}
	capturetest.AssertCovers(t, got, touched)
	if knob(t, path) != "0" && len(got) < 2*k {
		t.Errorf("mincore capture %d pages: expected readahead to inflate it", len(got))
	}
}
func TestUnknownMethod(t *testing.T) {
	_, err := Command(context.Background(), "/nonexistent", []string{"true"}, CommandOptions{Method: "uffd"})
	if err == nil || !strings.Contains(err.Error(), "unknown method") {
		t.Fatalf("err = %v", err)
	}
}

// TestRecordCommandOwnTree: a command's child touches pages while another
// process reads the same file: the capture holds the child's pages only
// and counts the other's.
func TestRecordCommandOwnTree(t *testing.T) {
	needCapture(t)
	path := capturetest.DataFile(t, 256*mib)
	const k = 300
	touched := capturetest.RandomPages(2, k, 128*mib/pages.Size) // the first half
	// sh forks the child (a command follows it), so the pages come from a
	// descendant of the recorded command, not the command itself.
	argv := append([]string{"/bin/sh", "-c", `"$@"; sleep 1`, "sh"}, capturetest.Argv(t, path, touched, "", "")...)
	// The foreign reader starts once the child's pages enter the cache, so
	// the recording is running (loading BPF on a loaded host can take
	// longer than any fixed delay: a reader that came first read its pages
	// before the recording and left nothing to see).
	if _, err := pagecache.Drop(path); err != nil {
		t.Fatal(err)
	}
	foreign := make(chan error, 1)
	go func() {
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if n, err := pagecache.Cached(path); err != nil || n > 0 {
				break
			}
		}
		// The second half, from a process outside the command's tree.
		foreign <- exec.Command("dd", "if="+path, "of=/dev/null", "bs=4096", "skip=49152", "count=512").Run()
	}()
	c, err := Command(context.Background(), path, argv, CommandOptions{Method: capture.MethodEBPF})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-foreign; err != nil {
		t.Fatalf("foreign reader: %v", err)
	}
	got := capture.Pages(c, 0)
	t.Logf("touched %d, captured %d; foreign %d pages from %d processes (%d unattributed)", k, len(got), c.ForeignPages, c.ForeignProcesses, c.UnattributedPages)
	capturetest.AssertCovers(t, got, touched)
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

// TestRecordWindowDeadline: a command that never opens the file (sleep)
// holds the disk's readahead off only until the window's deadline, and the
// capture says the window expired.
func TestRecordWindowDeadline(t *testing.T) {
	needCapture(t)
	dir, queue := testenv.LoopFS(t)
	path := filepath.Join(dir, "mem")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	const want = "768" // a value no default has, in whole pages
	if err := os.WriteFile(queue+"/read_ahead_kb", []byte(want), 0o644); err != nil {
		t.Fatal(err)
	}
	read := func() string {
		b, err := os.ReadFile(queue + "/read_ahead_kb")
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}

	const window = 500 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		c   *capture.Capture
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		c, err := Command(ctx, path, []string{"sleep", "30"}, CommandOptions{ReadaheadWindow: window})
		done <- result{c, err}
	}()

	sawZero := false
	var back time.Duration
	for time.Since(start) < window+2*time.Second {
		v := read()
		if v == "0" {
			sawZero = true
		} else if sawZero && v == want {
			back = time.Since(start)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel() // stops sleep
	r := <-done
	if !sawZero {
		t.Fatal("read_ahead_kb never 0 during the recording")
	}
	t.Logf("read_ahead_kb back to %s after %v (window %v)", want, back, window)
	// Slack: dropping the cache and loading BPF happen before the window.
	if back == 0 || back > window+time.Second {
		t.Errorf("read_ahead_kb %s %v after the start, want %s by %v", read(), time.Since(start), want, window+time.Second)
	}
	if r.c == nil {
		t.Fatalf("no capture: %v", r.err)
	}
	if r.c.ReadaheadWindowExpired != window {
		t.Errorf("ReadaheadWindowExpired = %v, want %v", r.c.ReadaheadWindowExpired, window)
	}
	if r.c.DeviceReadaheadOff > window+100*time.Millisecond {
		t.Errorf("DeviceReadaheadOff = %v, want at most about %v", r.c.DeviceReadaheadOff, window)
	}
}

// recordParent plays snapbpf for TestCommandDiesWithParent: it records
// `sleep 60` on FILE the way record --mem does (mincore: no BPF needed
// for the process handling, which both methods share).
func recordParent() error {
	_, err := Command(context.Background(), os.Getenv("FILE"), []string{"sleep", "60"}, CommandOptions{Method: capture.MethodMincore})
	return err
}

// TestCommandDiesWithParent: when snapbpf is killed (SIGKILL: no cleanup
// of its own runs), the command it records dies too.
func TestCommandDiesWithParent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mem")
	if err := os.WriteFile(path, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	parent := exec.Command(exe)
	parent.Env = append(os.Environ(), capturetest.Env+"=record-parent", "FILE="+path)
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	defer parent.Wait()
	defer parent.Process.Kill()

	sleep := waitProc(t, "sleep", ppid, parent.Process.Pid)
	t.Cleanup(func() { syscall.Kill(sleep, syscall.SIGKILL) })
	if err := parent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	parent.Wait()
	if !gone(sleep, 2*time.Second) {
		t.Fatalf("sleep (pid %d) still runs 2 s after its recording parent was killed", sleep)
	}
}

// TestCommandGroupKilled: what the command started dies with it, whether
// it exits by itself or the recording is cancelled.
func TestCommandGroupKilled(t *testing.T) {
	for _, tc := range []struct {
		name, script string
		cancel       bool
	}{
		{"exit", "sleep 60 & sleep 0.5", false},
		{"cancel", "sleep 60 & wait", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cmd := command(ctx, []string{"sh", "-c", tc.script})
			cmd.Stdin, cmd.Stdout = nil, nil
			done, err := start(cmd)
			if err != nil {
				t.Fatal(err)
			}
			sleep := waitProc(t, "sleep", pgrp, cmd.Process.Pid)
			t.Cleanup(func() { syscall.Kill(sleep, syscall.SIGKILL) })
			if tc.cancel {
				cancel()
			}
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("command still running after 10 s")
			}
			if !gone(sleep, 2*time.Second) {
				t.Fatalf("the command's child sleep (pid %d) still runs after the command ended", sleep)
			}
		})
	}
}

// Fields of /proc/PID/stat after the name, by index.
const (
	ppid = 1
	pgrp = 2
)

// waitProc returns the pid of the process named comm whose stat field is
// value, waiting up to 5 s for it to start.
func waitProc(t *testing.T, comm string, field, value int) int {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		stats, _ := filepath.Glob("/proc/[0-9]*/stat")
		for _, p := range stats {
			b, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			s := string(b)
			i := strings.LastIndexByte(s, ')')
			f := strings.Fields(s[i+1:])
			name := s[strings.IndexByte(s, '(')+1 : i]
			if len(f) > field && f[field] == strconv.Itoa(value) && name == comm {
				pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
				return pid
			}
		}
	}
	t.Fatalf("no process %q with stat field %d = %d after 5 s", comm, field, value)
	return 0
}

// gone reports whether pid has exited (or is a zombie) within d.
func gone(pid int, d time.Duration) bool {
	for deadline := time.Now().Add(d); ; time.Sleep(20 * time.Millisecond) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if errors.Is(err, os.ErrNotExist) {
			return true
		}
		if err == nil {
			s := string(b)
			if f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]); len(f) > 0 && f[0] == "Z" {
				return true
			}
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// TestRecordOpenAfterWindow: a command that opens the file only after the
// window's deadline is still recorded, its descriptor's readahead turned
// off once the open is seen, and the capture warns that the window expired.
func TestRecordOpenAfterWindow(t *testing.T) {
	needCapture(t)
	path := capturetest.DataFile(t, 64*mib)
	touched := capturetest.RandomPages(3, 100, 64*mib/pages.Size)
	argv := append([]string{"/bin/sh", "-c", `sleep 0.5; exec "$@"`, "sh"}, capturetest.Argv(t, path, touched, "", "")...)
	c, err := Command(context.Background(), path, argv, CommandOptions{ReadaheadWindow: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	got := capture.Pages(c, 0)
	t.Logf("touched %d, captured %d; readahead windows %d (%d pages); disk readahead off for %v; warnings %q",
		len(touched), len(got), c.ReadaheadWindows, c.ReadaheadPages, c.DeviceReadaheadOff, c.Warnings())
	capturetest.AssertCovers(t, got, touched)
	if c.ReadaheadWindowExpired == 0 {
		t.Error("ReadaheadWindowExpired = 0, want the window")
	}
	if !slices.ContainsFunc(c.Warnings(), func(w string) bool { return strings.Contains(w, "did not open the file within") }) {
		t.Errorf("warnings %q say nothing of the expired window", c.Warnings())
	}
}
