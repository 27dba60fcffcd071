package lazymem_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/lazymem"
	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/prefetch"
	"github.com/snapbpf/snapbpf/internal/procfs"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/snapstore"
	"github.com/snapbpf/snapbpf/internal/snapstore/snapstoretest"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// A 16 MiB memory file: data around chunk boundaries and a 4 MiB run, a
// working set in two places, out of file order.
var (
	testData = []pages.Extent{{Page: 0, N: 2}, {Page: 100, N: 300}, {Page: 1000, N: 1024}, {Page: 3000, N: 7}, {Page: 4095, N: 1}}
	testWS   = []pages.Extent{{Page: 1500, N: 64}, {Page: 120, N: 16}}
)

func needFUSE(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts FUSE with mount(2)")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no /dev/fuse: %v", err)
	}
}

// published publishes a test snapshot to an in-process node and returns it
// with a reader of it.
func published(t *testing.T) (*snapshot.Dir, *snapstore.Reader) {
	t.Helper()
	ctx := context.Background()
	src := snapstoretest.Snapshot(t, 16, testData, testWS)
	st, err := snapstore.Open(ctx, snapstoretest.Embedded(t), snapstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.Publish(ctx, src, snapstoretest.WorkingSetFile)
	if err != nil {
		t.Fatal(err)
	}
	return src, st.Reader(m)
}

// mount mounts r's snapshot under a fresh directory and checks at the
// test's end that nothing stays mounted there.
func mount(t *testing.T, r *snapstore.Reader, o lazymem.Options) (*lazymem.Mount, string) {
	t.Helper()
	root := t.TempDir()
	mp := filepath.Join(root, "mnt")
	if err := os.Mkdir(mp, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { noMounts(t, root) })
	m, err := lazymem.New(context.Background(), mp, filepath.Join(root, "local"), r, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Error(err)
		}
	})
	return m, root
}

func noMounts(t *testing.T, dir string) {
	t.Helper()
	ms, err := procfs.Mounts()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if strings.HasPrefix(m.Point, dir+"/") {
			t.Errorf("%s is still mounted (%s)", m.Point, m.FSType)
		}
	}
}

func readAt(t *testing.T, path string, off, n int64) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestServeHoleAndData reads through the mount with nothing fetched in the
// background: a hole reads as zeroes and costs no fetch; a data page
// outside the early set waits for exactly its chunk; the directory passes
// snapshot.Open with its working set.
func TestServeHoleAndData(t *testing.T) {
	needFUSE(t)
	src, r := published(t)
	m, _ := mount(t, r, lazymem.Options{NoBackground: true})
	d, err := snapshot.Open(m.Path())
	if err != nil {
		t.Fatalf("the mount is not a valid snapshot directory: %v", err)
	}
	defer d.Close()
	if d.Manifest.ID != src.Manifest.ID {
		t.Fatalf("mounted snapshot %s, published %s", d.Manifest.ID, src.Manifest.ID)
	}
	ws, err := wset.Read(d.File(snapstoretest.WorkingSetFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.CheckFile(d.MemPath(), d.Manifest.ID); err != nil {
		t.Errorf("the working set does not accept the served memory file: %v", err)
	}
	<-waitEarly(t, m)
	before, demand := r.Stats().Chunks, m.Stats().DemandChunks

	hole := readAt(t, d.MemPath(), 2500*pages.Size, 8*pages.Size)
	if !bytes.Equal(hole, make([]byte, len(hole))) {
		t.Error("a hole read as something else than zeroes")
	}
	if got := r.Stats().Chunks; got != before {
		t.Errorf("reading a hole fetched %d chunks", got-before)
	}
	// Page 3000 is data outside the early pages: one chunk of Mem.
	off, n := int64(2999*pages.Size), int64(9*pages.Size)
	if got, want := readAt(t, d.MemPath(), off, n), readAt(t, src.MemPath(), off, n); !bytes.Equal(got, want) {
		t.Error("data read through the mount differs from the snapshot's")
	}
	if got := m.Stats().DemandChunks - demand; got != 1 {
		t.Errorf("the read fetched %d chunks on demand, want 1", got)
	}
	// The data the holes tell apart, through SEEK_DATA/SEEK_HOLE.
	data, err := pages.Data(d.MemPath())
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(data) != fmt.Sprint(testData) {
		t.Errorf("data runs through the mount %v, want %v", data, testData)
	}
}

func waitEarly(t *testing.T, m *lazymem.Mount) <-chan struct{} {
	c := make(chan struct{})
	go func() {
		defer close(c)
		for deadline := time.Now().Add(30 * time.Second); m.Stats().EarlyDone == 0; {
			if time.Now().After(deadline) {
				t.Error("early pages not fetched in 30 s")
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return c
}

// TestPrefetchSharedAndComplete prefetches the working set into the
// mount's page cache through the prefetch engine, checks that the pages
// stay cached across another open (FOPEN_KEEP_CACHE), then lets the rest
// stream in: the local copy becomes a snapshot identical to the source.
func TestPrefetchSharedAndComplete(t *testing.T) {
	needFUSE(t)
	src, r := published(t)
	m, _ := mount(t, r, lazymem.Options{})
	mem := filepath.Join(m.Path(), snapshot.MemName)
	// The prefetch splits its requests at the mount's readahead window,
	// raised to ReadAheadKB (FUSE's default is 128 KiB).
	reqs, err := prefetch.Requests(mem, []pages.Extent{{Page: 1000, N: 1024}}, prefetch.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if want := 4 << 20 / (lazymem.ReadAheadKB << 10); len(reqs) != want {
		t.Errorf("4 MiB prefetched in %d requests, want %d of %d KiB", len(reqs), want, lazymem.ReadAheadKB)
	}
	st, err := prefetch.Prefetch(context.Background(), mem, testWS, prefetch.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Bytes < wset.PageCount(testWS)*pages.Size {
		t.Errorf("prefetch asked for %d bytes, the set has %d", st.Bytes, wset.PageCount(testWS)*pages.Size)
	}
	f, err := os.Open(mem) // another open must not drop the cache
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, e := range testWS {
		cached, err := pagecache.CachedIn(f2(t, mem), int64(e.Page)*pages.Size, int64(e.N)*pages.Size)
		if err != nil {
			t.Fatal(err)
		}
		if cached != int64(e.N) {
			t.Errorf("extent %v: %d of %d pages cached after a reopen", e, cached, e.N)
		}
	}
	select {
	case <-m.Done():
	case <-time.After(60 * time.Second):
		t.Fatal("local copy not complete in 60 s")
	}
	if err := m.Err(); err != nil {
		t.Fatal(err)
	}
	d, err := snapshot.Open(m.Local())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, name := range []string{snapshot.MemName, snapshot.StateName, snapstoretest.WorkingSetFile} {
		a, _ := os.ReadFile(src.File(name))
		b, _ := os.ReadFile(d.File(name))
		if !bytes.Equal(a, b) || len(a) == 0 {
			t.Errorf("%s of the local copy differs from the source's", name)
		}
	}
}

func f2(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestCleanStaleMount kills a process while it serves a mount (the helper
// below, run as a child) and checks that the mount it leaves, dead to
// every access, is found and removed by Clean.
func TestCleanStaleMount(t *testing.T) {
	needFUSE(t)
	if os.Getenv("LAZYMEM_CHILD") != "" {
		t.Skip("child")
	}
	root := t.TempDir()
	mp := filepath.Join(root, "mnt")
	if err := os.Mkdir(mp, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestMountChild$", "-test.v")
	// The child's temporary files (store, snapshot) go under root too:
	// killed, it cannot remove them itself.
	cmd.Env = append(os.Environ(), "LAZYMEM_CHILD="+root, "TMPDIR="+root)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	buf := make([]byte, 4096)
	var seen []byte
	for !bytes.Contains(seen, []byte("MOUNTED")) {
		n, err := out.Read(buf)
		if err != nil {
			t.Fatalf("child ended before mounting: %v (%s)", err, seen)
		}
		seen = append(seen, buf[:n]...)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(mp, &st); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The child holds the memory file open below its /dev/fuse
	// descriptor, so its exit closes the file while it still serves the
	// mount: a close that waited for the server (FLUSH) would never end.
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		abortFUSE(t, unix.Minor(st.Dev))
		<-exited
		lazymem.Clean(root)
		t.Fatal("the killed child did not exit within 20 s: its close of the memory file waited for its own dead FUSE server")
	}
	if _, err := os.Stat(filepath.Join(mp, "manifest.json")); !errors.Is(err, syscall.ENOTCONN) {
		t.Logf("the dead mount answers %v (expected ENOTCONN)", err)
	}
	gone, err := lazymem.Clean(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(gone) != 1 || gone[0] != mp {
		t.Errorf("Clean removed %q, want [%s]", gone, mp)
	}
	noMounts(t, root)
	if gone, err := lazymem.Clean(root); err != nil || len(gone) != 0 {
		t.Errorf("a second Clean: %q, %v", gone, err)
	}
}

// abortFUSE aborts FUSE connection minor (a process stuck on its own dead
// server), through the fusectl file system.
func abortFUSE(t *testing.T, minor uint32) {
	const ctl = "/sys/fs/fuse/connections"
	if err := unix.Mount("fusectl", ctl, "fusectl", 0, ""); err == nil {
		defer unix.Unmount(ctl, 0)
	}
	if err := os.WriteFile(fmt.Sprintf("%s/%d/abort", ctl, minor), []byte("1"), 0); err != nil {
		t.Errorf("abort FUSE connection %d: %v", minor, err)
	}
}

// TestMountChild is TestCleanStaleMount's child: it mounts and waits to be
// killed.
func TestMountChild(t *testing.T) {
	root := os.Getenv("LAZYMEM_CHILD")
	if root == "" {
		t.Skip("run by TestCleanStaleMount")
	}
	_, r := published(t)
	// A descriptor numbered below the mount's /dev/fuse, for the memory
	// file: an exit closes descriptors in order.
	low, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	mp := filepath.Join(root, "mnt")
	if _, err := lazymem.New(context.Background(), mp, filepath.Join(root, "local"), r, lazymem.Options{NoBackground: true}); err != nil {
		t.Fatal(err)
	}
	mem, err := os.Open(filepath.Join(mp, snapshot.MemName))
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Dup3(int(mem.Fd()), int(low.Fd()), 0); err != nil {
		t.Fatal(err)
	}
	mem.Close()
	fmt.Println("MOUNTED")
	time.Sleep(time.Minute)
}
