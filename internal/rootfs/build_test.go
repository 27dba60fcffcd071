package rootfs_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/guest"
	"github.com/snapbpf/snapbpf/internal/rootfs"
	"github.com/snapbpf/snapbpf/internal/testenv"
)

// TestBuildReproducible builds the python image (or takes it from the
// machine's cache, where it stays for every later test run), then builds
// it again from scratch (tree and image; downloaded packages reused) in a
// private cache and wants the same bytes.
func TestBuildReproducible(t *testing.T) {
	testenv.NeedRoot(t, "builds a Debian root filesystem with mmdebstrap (minutes on a cold cache)")
	buildTwice(t, "python")
}

// TestBuildReproducibleTorch is TestBuildReproducible for python-torch,
// only with SNAPBPF_TEST_TORCH=1: on a new machine its two builds take
// about 19 and 15 minutes here (dpkg unpacking and configuring some 430
// packages), which would multiply the test suite's time.
func TestBuildReproducibleTorch(t *testing.T) {
	testenv.NeedRoot(t, "builds a Debian root filesystem with mmdebstrap (about 19 minutes on a cold cache)")
	if os.Getenv(testenv.TorchEnv) != "1" {
		t.Skipf("python-torch takes two builds of about 15 minutes each: set %s=1 to run it", testenv.TorchEnv)
	}
	buildTwice(t, "python-torch")
}

func buildTwice(t *testing.T, name string) {
	t.Helper()
	r, err := rootfs.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	first, err := rootfs.Build(ctx, r, rootfs.Options{Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	entry, _ := rootfs.EntryDir(guest.DefaultCacheDir, r)
	second, err := rootfs.Build(ctx, r, rootfs.Options{
		CacheDir:     t.TempDir(),
		PackageCache: filepath.Join(filepath.Dir(entry), "debs"),
		Rebuild:      true,
		Log:          testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	if first.SHA256 != second.SHA256 {
		t.Fatalf("two builds of %s: sha256 %s and %s (%d and %d bytes)", r.Name, first.SHA256, second.SHA256, first.Size, second.Size)
	}
	if strings.Join(first.Installed, " ") != strings.Join(second.Installed, " ") {
		t.Fatalf("installed packages differ:\n%v\n%v", first.Installed, second.Installed)
	}
	t.Logf("%s: %d bytes, sha256 %s; rebuilt in %d ms", r.Name, second.Size, second.SHA256, second.BuildMs)
}

func testLogger(t *testing.T) *slog.Logger { return slog.New(slog.NewTextHandler(testLog{t}, nil)) }

type testLog struct{ t *testing.T }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
