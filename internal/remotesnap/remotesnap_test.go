package remotesnap_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/bus"
	"github.com/snapbpf/snapbpf/internal/bus/bustest"
	"github.com/snapbpf/snapbpf/internal/funcvm"
	"github.com/snapbpf/snapbpf/internal/guest"
	"github.com/snapbpf/snapbpf/internal/lazymem"
	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/procfs"
	"github.com/snapbpf/snapbpf/internal/record"
	"github.com/snapbpf/snapbpf/internal/remotesnap"
	"github.com/snapbpf/snapbpf/internal/restore"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/snapstore"
	"github.com/snapbpf/snapbpf/internal/testenv"
	"github.com/snapbpf/snapbpf/internal/vmm/qemu"
)

func TestMain(m *testing.M) { testenv.Run(m) }

// TestRestoreOnAnotherNode makes a snapshot on node A of a three-node
// cluster, records its working set and publishes it; node B, which lacks
// it, restores it through lazy remote memory (a lazymem mount) under the
// snapbpf policy with the function's result checked, then, once the local
// copy is complete, from that copy. Nothing stays mounted.
func TestRestoreOnAnotherNode(t *testing.T) {
	img := testenv.NeedVM(t)
	needFUSE(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	log := testLog(t)
	nodes := bustest.Open(t, bustest.Cluster(t, 3))
	src, want := publishedSnapshot(ctx, t, img, nodes[0], snapshot.FreePagesNone, log)
	id := src.Manifest.ID

	// Node B: restore through lazy remote memory.
	homeB := t.TempDir()
	storeB, err := snapstore.Open(ctx, nodes[1].JetStream(), snapstore.Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	cache, err := remotesnap.New(filepath.Join(homeB, "remote"), storeB, remotesnap.Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	lease, err := cache.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !lease.Lazy {
		t.Fatalf("node B served %s from %s, not lazily", id, lease.Dir)
	}
	restoreOnce(ctx, t, lease.Dir, want, log)
	lease.Release()

	// The local copy completes and replaces the mount.
	deadline := time.Now().Add(3 * time.Minute)
	for !cache.Local(id) {
		if time.Now().After(deadline) {
			t.Fatal("local copy not complete after 3 min")
		}
		time.Sleep(50 * time.Millisecond)
	}
	lease, err = cache.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if lease.Lazy {
		t.Errorf("after the copy completed node B still serves %s lazily", id)
	}
	restoreOnce(ctx, t, lease.Dir, want, log)
	lease.Release()
	if err := cache.Close(); err != nil {
		t.Error(err)
	}
	noMounts(t, homeB)
}

func needFUSE(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no /dev/fuse: %v", err)
	}
}

// testLog is a logger whose output the test shows if it fails.
func testLog(t *testing.T) *slog.Logger {
	var logs bytes.Buffer
	var mu sync.Mutex
	t.Cleanup(func() {
		if t.Failed() {
			mu.Lock()
			t.Log(logs.String())
			mu.Unlock()
		}
	})
	return slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// publishedSnapshot makes a json snapshot on node (free pages as given), records its working set
// (input 1) and publishes it; it returns the snapshot and input 1's result.
func publishedSnapshot(ctx context.Context, t *testing.T, img *guest.Image, node *bus.Bus, freePages string, log *slog.Logger) (*snapshot.Dir, string) {
	t.Helper()
	const fn, dataMiB = "json", 8
	src, _, err := funcvm.CreateSnapshot(ctx, &qemu.Driver{}, img, funcvm.CreateOptions{
		Function: fn, DataMiB: dataMiB, MemMiB: 256, Out: filepath.Join(t.TempDir(), "json"), FreePages: freePages, Log: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	want, err := funcvm.Expect(fn, dataMiB, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := record.Snapshot(ctx, &qemu.Driver{}, src, record.Options{Input: 1, Expected: want, Runs: 2, Log: log}); err != nil {
		t.Fatal(err)
	}
	st, err := snapstore.Open(ctx, node.JetStream(), snapstore.Options{Replicas: node.Replicas(), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Publish(ctx, src, policy.WorkingSetFile); err != nil {
		t.Fatal(err)
	}
	return src, want
}

func restoreOnce(ctx context.Context, t *testing.T, path, want string, log *slog.Logger) {
	t.Helper()
	d, err := snapshot.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	res := restoreDir(ctx, t, d, false, want, log)
	t.Logf("restore from %s: vm %+v prefetch %+v", path, res.VMs[0], res.Prefetch)
}

// restoreDir restores d once under snapbpf and checks the result.
func restoreDir(ctx context.Context, t *testing.T, d *snapshot.Dir, cold bool, want string, log *slog.Logger) *restore.Result {
	t.Helper()
	res, err := restore.Run(ctx, &qemu.Driver{}, d, restore.Config{Policy: policy.SnapBPF, Input: 1, Expected: want, Cold: cold, Log: log})
	if err != nil {
		t.Fatalf("restore from %s: %v", d.Path, err)
	}
	vm := res.VMs[0]
	if !vm.ResultOK || vm.Checksum != want {
		t.Fatalf("restore from %s: result %q ok=%v, want %q", d.Path, vm.Checksum, vm.ResultOK, want)
	}
	return res
}

func noMounts(t *testing.T, dir string) {
	t.Helper()
	ms, err := procfs.Mounts()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if strings.HasPrefix(m.Point, dir+"/") || m.FSType == lazymem.FSType && strings.HasPrefix(m.Point, dir) {
			t.Errorf("%s is still mounted (%s)", m.Point, m.FSType)
		}
	}
}
