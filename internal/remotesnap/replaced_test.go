package remotesnap_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/lazymem"
	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/remotesnap"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/snapstore"
	"github.com/snapbpf/snapbpf/internal/snapstore/snapstoretest"
)

// TestLeaseReplaced: a lazy lease's Replaced fires once the local copy is
// complete; Get then hands out the copy while the mount keeps serving the
// file a holder of the first lease has open (as a VMM maps it), and the
// mount goes when that lease is released. No QEMU: a synthetic snapshot
// through a real mount and an embedded NATS server.
func TestLeaseReplaced(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The rest held back until the test has its lease and the file open.
	f := lazyLease(ctx, t, 300*time.Millisecond)
	src, home, cache, lazy := f.src, f.home, f.cache, f.lease
	defer cache.Close()
	defer lazy.Release()
	id := src.Manifest.ID
	select {
	case <-lazy.Replaced():
		t.Fatal("Replaced fired before the local copy was complete")
	default:
	}
	mem, err := os.Open(filepath.Join(lazy.Dir, snapshot.MemName))
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()

	select {
	case <-lazy.Replaced():
	case <-ctx.Done():
		t.Fatal("the local copy did not replace the mount within a minute")
	}
	local, err := cache.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	defer local.Release()
	if local.Lazy || local.Dir == lazy.Dir {
		t.Fatalf("Get after Replaced served %s (lazy %v), want the local copy", local.Dir, local.Lazy)
	}
	select {
	case <-local.Replaced():
	default:
		t.Error("a lease of the local copy: Replaced not closed")
	}
	if d, err := snapshot.Open(local.Dir); err != nil || d.Manifest.ID != id {
		t.Fatalf("the local copy %s: %v", local.Dir, err)
	} else {
		d.Close()
	}
	// The mount still serves the open file, and the same bytes as the
	// source.
	if n := len(mountsUnder(t, home)); n != 1 {
		t.Fatalf("%d mounts while the first lease is held, want 1", n)
	}
	want := make([]byte, 600*pages.Size)
	got := make([]byte, len(want))
	if _, err := src.MemFile().ReadAt(want, 700*pages.Size); err != nil {
		t.Fatal(err)
	}
	if _, err := mem.ReadAt(got, 700*pages.Size); err != nil {
		t.Fatalf("read the mount's memory file after the switch: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Error("the mount's memory file differs from the source after the switch")
	}
	mem.Close()
	lazy.Release()
	if ms := mountsUnder(t, home); len(ms) != 0 {
		t.Errorf("mounts after the last lazy lease was released: %v", ms)
	}
}

// mountsUnder lists the lazymem mounts under dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	ms, err := lazymem.MountsUnder(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// TestNewCleansKilled: a process killed while it serves a snapshot
// through a Cache (a lease held, the memory file open, as a service's VMM
// maps it) exits, and the next Cache on its directory (what the next
// service's start makes) unmounts what it left.
func TestNewCleansKilled(t *testing.T) {
	needFUSE(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts FUSE with mount(2)")
	}
	if os.Getenv("REMOTESNAP_CHILD") != "" {
		t.Skip("child")
	}
	root := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCacheChild$", "-test.v")
	cmd.Env = append(os.Environ(), "REMOTESNAP_CHILD="+root, "TMPDIR="+root)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	waiting := false // a goroutine waits for the child (after the pipe's reads)
	defer func() {
		cmd.Process.Kill()
		if !waiting {
			cmd.Wait()
			return
		}
		<-exited
	}()
	buf := make([]byte, 4096)
	var seen []byte
	for !bytes.Contains(seen, []byte("LEASED")) {
		n, err := out.Read(buf)
		if err != nil {
			t.Fatalf("child ended before its lease: %v (%s)", err, seen)
		}
		seen = append(seen, buf[:n]...)
	}
	waiting = true
	go func() {
		cmd.Wait()
		close(exited)
	}()
	dir := filepath.Join(root, "remote")
	if n := len(mountsUnder(t, dir)); n != 1 {
		t.Fatalf("%d mounts under the child's cache, want 1", n)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		t.Fatal("the killed child did not exit within 20 s")
	}
	st, err := snapstore.Open(context.Background(), snapstoretest.Embedded(t), snapstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cache, err := remotesnap.New(dir, st, remotesnap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	if ms := mountsUnder(t, dir); len(ms) != 0 {
		t.Errorf("mounts left after New on the killed child's directory: %v", ms)
	}
}

// TestCacheChild is TestNewCleansKilled's child: it leases a snapshot
// through a mount, opens its memory file and waits to be killed.
func TestCacheChild(t *testing.T) {
	root := os.Getenv("REMOTESNAP_CHILD")
	if root == "" {
		t.Skip("run by TestNewCleansKilled")
	}
	ctx := context.Background()
	st, src := publishedStore(ctx, t)
	cache, err := remotesnap.New(filepath.Join(root, "remote"), st, remotesnap.Options{BackgroundDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	lease, err := cache.Get(ctx, src.Manifest.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Open(filepath.Join(lease.Dir, snapshot.MemName)); err != nil {
		t.Fatal(err)
	}
	fmt.Println("LEASED")
	time.Sleep(time.Minute)
}

// publishedStore returns an embedded snapshot store holding a small
// published snapshot (8 MiB: two data runs, an 8-page working set), and
// that snapshot.
func publishedStore(ctx context.Context, t *testing.T) (*snapstore.Store, *snapshot.Dir) {
	t.Helper()
	src := snapstoretest.Snapshot(t, 8, []pages.Extent{{Page: 0, N: 4}, {Page: 700, N: 600}}, []pages.Extent{{Page: 700, N: 8}})
	st, err := snapstore.Open(ctx, snapstoretest.Embedded(t), snapstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Publish(ctx, src, snapstoretest.WorkingSetFile); err != nil {
		t.Fatal(err)
	}
	return st, src
}

// leased is a published snapshot and a lease of it through a mount.
type leased struct {
	st    *snapstore.Store
	src   *snapshot.Dir
	home  string // the cache's home
	cache *remotesnap.Cache
	lease *remotesnap.Lease
}

// lazyLease publishes a small snapshot (publishedStore), opens a cache over
// it in a fresh home whose mounts must all be gone when the test ends
// (delay holds its background copy back) and takes a lease of it, which
// must be a mount.
func lazyLease(ctx context.Context, t *testing.T, delay time.Duration) leased {
	t.Helper()
	needFUSE(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts FUSE with mount(2)")
	}
	st, src := publishedStore(ctx, t)
	home := t.TempDir()
	t.Cleanup(func() { noMounts(t, home) })
	cache, err := remotesnap.New(filepath.Join(home, "remote"), st, remotesnap.Options{BackgroundDelay: delay})
	if err != nil {
		t.Fatal(err)
	}
	lease, err := cache.Get(ctx, src.Manifest.ID)
	if err != nil {
		cache.Close()
		t.Fatal(err)
	}
	if !lease.Lazy {
		lease.Release()
		cache.Close()
		t.Fatalf("Get served %s, want a mount", lease.Dir)
	}
	return leased{st: st, src: src, home: home, cache: cache, lease: lease}
}

// TestLeaseAfterDelete: a snapshot deleted from the store while a node
// serves it through a mount (its function deleted on its home) fails the
// reads of pages not fetched yet with EIO, within the reader's retries,
// and the lease and the cache still close cleanly: no hang, no panic.
func TestLeaseAfterDelete(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Nothing fetched in the background: the page read below comes from
	// the store on demand.
	f := lazyLease(ctx, t, time.Hour)
	st, src, cache, lease := f.st, f.src, f.cache, f.lease
	defer cache.Close()
	defer lease.Release()
	mem, err := os.Open(filepath.Join(lease.Dir, snapshot.MemName))
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	if err := st.Delete(ctx, src.Manifest.ID); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := mem.ReadAt(make([]byte, pages.Size), 1200*pages.Size) // a data page, not in the working set
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, syscall.EIO) {
			t.Errorf("reading a page not fetched after the delete: %v, want EIO", err)
		}
	case <-ctx.Done():
		t.Fatal("a read of a page not fetched hung after the delete")
	}
	mem.Close()
	lease.Release()
	if err := cache.Close(); err != nil {
		t.Error(err)
	}
}
