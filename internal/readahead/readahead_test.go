package readahead

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/blockdev"
	"github.com/snapbpf/snapbpf/internal/owner"
	"github.com/snapbpf/snapbpf/internal/testenv"
)

func fileKnob(t *testing.T, path string) string {
	t.Helper()
	q, err := blockdev.For(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := q.Get(knob)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// privateLockDir points LockDir at a directory of t's own, so that Repair
// sees only the journals t makes.
func privateLockDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	old := LockDir
	LockDir = dir
	t.Cleanup(func() { LockDir = old })
	return dir
}

// loopKnob returns a fresh loop device's queue, its read_ahead_kb set to
// a value no default has (a whole number of pages: the kernel rounds),
// so that a test sees which value came back.
func loopKnob(t *testing.T) blockdev.Queue {
	t.Helper()
	_, dir := testenv.Loop(t)
	q := blockdev.Queue(dir)
	if err := q.Set(knob, "768"); err != nil {
		t.Fatal(err)
	}
	return q
}

func queueKnob(t *testing.T, q blockdev.Queue) string {
	t.Helper()
	v, err := q.Get(knob)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestSuspend(t *testing.T) {
	needRoot(t)
	privateLockDir(t)
	q := loopKnob(t)
	w, err := suspendQueue(context.Background(), q, time.Minute, "test")
	if err != nil {
		t.Fatal(err)
	}
	if v := queueKnob(t, q); v != "0" {
		t.Errorf("suspended: read_ahead_kb %s, want 0", v)
	}
	name, _ := q.Dev()
	e, err := readJournal(journalPath(name))
	if err != nil || e == nil {
		t.Fatalf("no journal while suspended: %v", err)
	}
	if e.ReadaheadKB != "768" || e.Owner.PID != os.Getpid() || e.Queue != q {
		t.Errorf("journal %+v, want read_ahead_kb 768, owner %d, queue %s", e, os.Getpid(), q)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if v := queueKnob(t, q); v != "768" {
		t.Errorf("resumed: read_ahead_kb %s, want 768", v)
	}
	if e, _ := readJournal(journalPath(name)); e != nil {
		t.Errorf("journal left after Close: %+v", e)
	}
}

// TestWindowDeadline: a window nobody closes ends at its deadline, puts the
// value back and says so.
func TestWindowDeadline(t *testing.T) {
	needRoot(t)
	privateLockDir(t)
	q := loopKnob(t)
	const max = 300 * time.Millisecond
	start := time.Now()
	w, err := suspendQueue(context.Background(), q, max, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	select {
	case <-w.Expired():
	case <-time.After(max + time.Second):
		t.Fatal("window not expired a second after its deadline")
	}
	took := time.Since(start)
	if v := queueKnob(t, q); v != "768" {
		t.Errorf("after the deadline: read_ahead_kb %s, want 768", v)
	}
	// Slack for a loaded machine: the timer's goroutine must be scheduled.
	if slack := 500 * time.Millisecond; took < max || took > max+slack {
		t.Errorf("window ended after %v, want %v to %v", took, max, max+slack)
	}
	// A later window must not be undone by the expired one's Close.
	w2, err := suspendQueue(context.Background(), q, time.Minute, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if v := queueKnob(t, q); v != "0" {
		t.Errorf("Close of an expired window changed the next one's read_ahead_kb to %s", v)
	}
}

// TestSuspendWaitHonoursContext: while a window is held, a second one gives
// up when its context does, with an error that names the holder.
func TestSuspendWaitHonoursContext(t *testing.T) {
	needRoot(t)
	privateLockDir(t)
	q := loopKnob(t)
	w, err := suspendQueue(context.Background(), q, time.Minute, "the first window")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	w2, err := suspendQueue(ctx, q, time.Second, "the second window")
	took := time.Since(start)
	if err == nil {
		w2.Close()
		t.Fatal("second window opened while the first was held")
	}
	t.Logf("after %v: %v", took, err)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want context.DeadlineExceeded", err)
	}
	if want := fmt.Sprintf("pid %d (the first window)", os.Getpid()); !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want it to name the holder, %q", err, want)
	}
	if took > time.Second { // 500 ms, a 50 ms poll, and a loaded machine's slack
		t.Errorf("gave up after %v, want about 500ms", took)
	}

	// Once the first ends, the wait succeeds.
	w.Close()
	w2, err = suspendQueue(context.Background(), q, time.Second, "the second window")
	if err != nil {
		t.Fatal(err)
	}
	w2.Close()
}

// TestRepairKilledOwner: a process killed with its window open leaves the
// disk at 0 and a journal; Repair puts the value back and clears it.
func TestRepairKilledOwner(t *testing.T) {
	needRoot(t)
	dir := privateLockDir(t)
	q := loopKnob(t)
	cmd := startHolder(t, q, dir, time.Minute)
	// Its window is in use: Repair leaves it alone.
	if found, err := Repair(); err != nil || len(found) != 0 {
		t.Fatalf("Repair with the owner alive = %v, %v; want nothing", found, err)
	}
	if v := queueKnob(t, q); v != "0" {
		t.Fatalf("holder's window: read_ahead_kb %s, want 0", v)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if v := queueKnob(t, q); v != "0" {
		t.Fatalf("after SIGKILL: read_ahead_kb %s, want 0 (nothing should have put it back yet)", v)
	}

	found, err := Repair()
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].Owner.PID != cmd.Process.Pid || found[0].Stuck {
		t.Fatalf("Repair found %v, want the killed holder %d", found, cmd.Process.Pid)
	}
	t.Log(found[0])
	if v := queueKnob(t, q); v != "768" {
		t.Errorf("after Repair: read_ahead_kb %s, want 768", v)
	}
	if found, err := Repair(); err != nil || len(found) != 0 {
		t.Errorf("second Repair = %v, %v; want nothing", found, err)
	}
}

// TestRepairRemovesStaleTemps: a journal temp file left by a writer killed
// before it published it goes at the next Repair, once it is old enough
// that no live writer can own it.
func TestRepairRemovesStaleTemps(t *testing.T) {
	dir := privateLockDir(t)
	stale := filepath.Join(dir, ".readahead-7:99.json.tmp1")
	fresh := filepath.Join(dir, ".readahead-7:99.json.tmp2")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("{"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * time.Minute)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := Repair(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temp file: %v, want it removed", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh temp file: %v, want it kept", err)
	}
}

// startHolder starts a child process that holds a window on queue for max,
// with its journal in dir, and returns once it holds it.
func startHolder(t *testing.T, queue blockdev.Queue, dir string, max time.Duration) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"=hold", "QUEUE="+string(queue), "LOCKDIR="+dir, "MAX="+max.String())
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	if sc := bufio.NewScanner(out); !sc.Scan() || sc.Text() != "held" {
		t.Fatalf("holder said %q, want held", sc.Text())
	}
	return cmd
}

// TestRepairStuckOwner: an owner that runs but misses its deadline by far
// (stopped before its timer could fire) has the disk's value put back by
// Repair, which calls it stuck.
func TestRepairStuckOwner(t *testing.T) {
	needRoot(t)
	dir := privateLockDir(t)
	q := loopKnob(t)
	const max = 100 * time.Millisecond
	cmd := startHolder(t, q, dir, max)
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Signal(syscall.SIGCONT)
	time.Sleep(max + stuckGrace + 100*time.Millisecond)
	if v := queueKnob(t, q); v != "0" {
		t.Fatalf("stopped holder: read_ahead_kb %s, want 0", v)
	}
	found, err := Repair()
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || !found[0].Stuck {
		t.Fatalf("Repair found %v, want the stopped holder, stuck", found)
	}
	t.Log(found[0])
	if v := queueKnob(t, q); v != "768" {
		t.Errorf("after Repair: read_ahead_kb %s, want 768", v)
	}
}

// TestSuspendRepairs: the next window on a disk repairs what a killed
// holder left before it reads the value to put back.
func TestSuspendRepairs(t *testing.T) {
	needRoot(t)
	privateLockDir(t)
	q := loopKnob(t)
	name, _ := q.Dev()
	dead := owner.Owner{PID: 1, Start: 1, Boot: mustBootID(t)} // pid 1 started later than tick 1
	if err := writeJournal(journalPath(name), &Entry{Queue: q, Device: name, ReadaheadKB: "768", Owner: dead, Why: "test"}); err != nil {
		t.Fatal(err)
	}
	if err := q.Set(knob, "0"); err != nil {
		t.Fatal(err)
	}
	w, err := suspendQueue(context.Background(), q, time.Minute, "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if v := queueKnob(t, q); v != "768" {
		t.Errorf("after repair: read_ahead_kb %s, want 768", v)
	}
}

func mustBootID(t *testing.T) string {
	t.Helper()
	b, err := owner.BootID()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type touchProc struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func startToucher(t *testing.T, path string) *touchProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"=touch", "FILE="+path)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &touchProc{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	t.Cleanup(p.stop)
	p.expect(t, "ready")
	return p
}

// stop ends the child; its mapping pins the pages it touched in the cache.
func (p *touchProc) stop() {
	p.in.Close()
	p.cmd.Wait()
}

func (p *touchProc) expect(t *testing.T, prefix string) {
	t.Helper()
	if !p.out.Scan() || !strings.HasPrefix(p.out.Text(), prefix) {
		t.Fatalf("child said %q (%v), want %q", p.out.Text(), p.out.Err(), prefix)
	}
}

func (p *touchProc) touch(t *testing.T, page int) {
	t.Helper()
	if _, err := io.WriteString(p.in, strconv.Itoa(page)+"\n"); err != nil {
		t.Fatal(err)
	}
	p.expect(t, "ok")
}

// TestDisableForProcess: a process maps a cold file without madvise; after
// DisableForProcess, two touches cache two pages, not thousands, and the
// disk's read_ahead_kb is what it was.
func TestDisableForProcess(t *testing.T) {
	needRoot(t)
	path := dataFile(t, 64<<20)
	before := fileKnob(t, path)

	// Control: the same process without the trick. Tried twice: another
	// test process may hold the disk's readahead at 0 for a moment.
	control := 0
	for range 2 {
		dropCache(t, path)
		p := startToucher(t, path)
		p.touch(t, 100)
		control = settled(t, path)
		p.stop()
		if control > 2 {
			break
		}
	}
	t.Logf("control: one touch cached %d pages (read_ahead_kb %s)", control, before)
	if n, _ := strconv.Atoi(before); n >= 64 && control < n/4/2 {
		t.Errorf("control cached only %d pages: readahead seems off already", control)
	}

	dropCache(t, path)
	p := startToucher(t, path)
	n, err := DisableForProcess(context.Background(), p.cmd.Process.Pid, path)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("DisableForProcess changed %d descriptors, want 1", n)
	}
	if v := fileKnob(t, path); v != before {
		t.Errorf("read_ahead_kb %s after DisableForProcess, want %s", v, before)
	}
	p.touch(t, 100)
	p.touch(t, 9000)
	got := settled(t, path)
	t.Logf("readahead off: two touches cached %d pages", got)
	if got > 4 {
		t.Errorf("two touches cached %d pages, want about 2", got)
	}
}

// settled counts cached pages once readahead I/O has finished: mincore
// counts a page only when its read has completed.
func settled(t *testing.T, path string) int {
	t.Helper()
	n := residentPages(t, path)
	for range 40 {
		time.Sleep(25 * time.Millisecond)
		m := residentPages(t, path)
		if m == n {
			break
		}
		n = m
	}
	return n
}

func TestDisableForProcessNoDescriptor(t *testing.T) {
	needRoot(t)
	path := dataFile(t, 4096)
	_, err := DisableForProcess(context.Background(), os.Getpid(), path)
	if err == nil || !strings.Contains(err.Error(), ErrNoDescriptor.Error()) {
		t.Fatalf("err = %v, want ErrNoDescriptor", err)
	}
}
