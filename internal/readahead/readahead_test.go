package readahead

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func knob(t *testing.T, path string) string {
	t.Helper()
	q, err := DeviceFor(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := readKnob(q)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestDeviceFor(t *testing.T) {
	q, err := DeviceFor("/var/tmp")
	if err != nil {
		t.Skipf("root filesystem is not on a block device: %v", err)
	}
	if filepath.Base(q) != "queue" {
		t.Errorf("DeviceFor = %s, want a queue directory", q)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(q), "partition")); err == nil {
		t.Errorf("%s belongs to a partition, want its disk", q)
	}
	for _, p := range []string{"/proc/self/status", "/dev/shm"} {
		if _, err := DeviceFor(p); err == nil {
			t.Errorf("DeviceFor(%s) succeeded, want an error", p)
		}
	}
}

func TestSuspend(t *testing.T) {
	needRoot(t)
	path := dataFile(t, 4096)
	before := knob(t, path)
	resume, err := Suspend(path)
	if err != nil {
		t.Fatal(err)
	}
	if v := knob(t, path); v != "0" {
		t.Errorf("suspended: read_ahead_kb %s, want 0", v)
	}
	if err := resume(); err != nil {
		t.Fatal(err)
	}
	if err := resume(); err != nil {
		t.Fatalf("second resume: %v", err)
	}
	if v := knob(t, path); v != before {
		t.Errorf("resumed: read_ahead_kb %s, want %s", v, before)
	}
}

// TestSuspendRepairs: a holder killed while the disk was lowered leaves its
// saved value in the lock file; the next Suspend puts it back first.
func TestSuspendRepairs(t *testing.T) {
	needRoot(t)
	path := dataFile(t, 4096)
	before := knob(t, path)
	q, err := DeviceFor(path)
	if err != nil {
		t.Fatal(err)
	}
	name, err := devName(q)
	if err != nil {
		t.Fatal(err)
	}
	// Play the killed holder: lock, save, lower, and "die" (unlock).
	lock, err := lockDisk(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := saveValue(lock, before); err != nil {
		t.Fatal(err)
	}
	if err := writeKnob(q, "0"); err != nil {
		t.Fatal(err)
	}
	lock.Close()

	resume, err := Suspend(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := resume(); err != nil {
		t.Fatal(err)
	}
	if v := knob(t, path); v != before {
		t.Errorf("after repair: read_ahead_kb %s, want %s", v, before)
	}
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
	before := knob(t, path)

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
	n, err := DisableForProcess(p.cmd.Process.Pid, path)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("DisableForProcess changed %d descriptors, want 1", n)
	}
	if v := knob(t, path); v != before {
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
	_, err := DisableForProcess(os.Getpid(), path)
	if err == nil || !strings.Contains(err.Error(), ErrNoDescriptor.Error()) {
		t.Fatalf("err = %v, want ErrNoDescriptor", err)
	}
}
