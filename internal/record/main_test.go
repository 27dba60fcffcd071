package record

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/capture/capturetest"
	"github.com/snapbpf/snapbpf/internal/funcvm"
	"github.com/snapbpf/snapbpf/internal/guest"
	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/restore"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/testenv"
	"github.com/snapbpf/snapbpf/internal/vmm/qemu"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// These tests run real QEMU TCG guests: small functions and data sizes
// keep the package under a few minutes on a loaded 2-core machine. The
// guest image and the json snapshots are built once and shared; tests that
// change a snapshot (record into it) use one of their own.

func TestMain(m *testing.M) {
	// The test binary doubles as the workload Command records
	// (capturetest) and as a recording snapbpf (recordParent).
	capturetest.Main()
	if os.Getenv(capturetest.Env) == "record-parent" {
		if err := recordParent(); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	testenv.Run(m)
}

// needVM skips tests that need root and QEMU, and builds the image once.
func needVM(t *testing.T) *guest.Image { return testenv.NeedVM(t) }

// rootDir holds the shared snapshots.
func rootDir() (string, error) { return testenv.Dir() }

// fixture is a snapshot for tests, with the data size its results need.
type fixture struct {
	dir     *snapshot.Dir
	fn      string
	dataMiB int
}

// want is the checksum a correct invoke of the fixture returns.
func (f fixture) want(t *testing.T, input uint64) string {
	t.Helper()
	s, err := funcvm.Expect(f.fn, f.dataMiB, input)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// createSnapshot creates a snapshot under out (256 MiB of guest RAM, no
// free page reporting: faster, and the memory file still has holes where
// the guest never wrote).
func createSnapshot(t *testing.T, img *guest.Image, fn string, dataMiB int, out string) fixture {
	t.Helper()
	return createSnapshotWith(t, img, fn, dataMiB, out, snapshot.FreePagesNone)
}

// createSnapshotWith is createSnapshot with a free-pages mode.
func createSnapshotWith(t *testing.T, img *guest.Image, fn string, dataMiB int, out, freePages string) fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var log bytes.Buffer
	dir, st, err := funcvm.CreateSnapshot(ctx, &qemu.Driver{}, img, funcvm.CreateOptions{
		Function: fn, DataMiB: dataMiB, MemMiB: 256, Out: out, FreePages: freePages, Log: slog.New(slog.NewTextHandler(&log, nil)),
	})
	if err != nil {
		t.Fatalf("create %s snapshot: %v\n%s", fn, err, log.String())
	}
	t.Logf("%s snapshot %s: total %.0f ms", fn, dir.Manifest.ID, st.TotalMs)
	return fixture{dir: dir, fn: fn, dataMiB: dataMiB}
}

// record records the fixture's working set with method on input 1.
func record(t *testing.T, f fixture, method string) (*wset.Set, *Report) {
	t.Helper()
	return recordRuns(t, f, method, 0)
}

// recordRuns is record with Options.Runs.
func recordRuns(t *testing.T, f fixture, method string, runs int) (*wset.Set, *Report) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var log bytes.Buffer
	set, rep, err := Snapshot(ctx, &qemu.Driver{}, f.dir, Options{Input: 1, Expected: f.want(t, 1), Method: method, Runs: runs, Log: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatalf("record %s (%s): %v\n%s", f.fn, method, err, log.String())
	}
	if log.Len() > 0 {
		t.Logf("record %s (%s): %s", f.fn, method, log.String())
	}
	t.Logf("record %s (%s): %d pages in %d extents, %d hole pages dropped, vm %+v",
		f.fn, method, rep.Pages, rep.Extents, rep.HolePagesDropped, rep.VM)
	return set, rep
}

// shared is a lazily made fixture several tests use.
type shared struct {
	once sync.Once
	f    fixture
	ok   bool
}

// get makes the fixture on first use; a test that fails making it fails,
// later users skip instead of repeating the failure.
func (s *shared) get(t *testing.T, build func(t *testing.T) fixture) fixture {
	t.Helper()
	ran := false
	s.once.Do(func() {
		ran = true
		s.f = build(t)
		s.ok = true
	})
	if !s.ok {
		if ran {
			t.FailNow()
		}
		t.Skip("shared snapshot could not be made (see the first test that needed it)")
	}
	return s.f
}

var recordedJSON, otherJSON shared

// recordedSnapshot is a json snapshot (8 MiB of data) with a working set
// recorded with eBPF on input 1. Tests must not record into it again.
func recordedSnapshot(t *testing.T) fixture {
	t.Helper()
	img := needVM(t)
	return recordedJSON.get(t, func(t *testing.T) fixture {
		root, err := rootDir()
		if err != nil {
			t.Fatal(err)
		}
		f := createSnapshot(t, img, "json", 8, filepath.Join(root, "json-a"))
		record(t, f, "")
		return f
	})
}

// otherSnapshot is a second json snapshot of the same function and sizes
// as recordedSnapshot, with a different snapshot ID; tests may record into it.
func otherSnapshot(t *testing.T) fixture {
	t.Helper()
	img := needVM(t)
	return otherJSON.get(t, func(t *testing.T) fixture {
		root, err := rootDir()
		if err != nil {
			t.Fatal(err)
		}
		return createSnapshot(t, img, "json", 8, filepath.Join(root, "json-b"))
	})
}

// restoreWith restores count clones of f under policy name, the way
// snapbpf restore does: through restore.Run. Every clone's result must be
// correct.
func restoreWith(t *testing.T, f fixture, name string, input uint64, count int) ([]funcvm.VMResult, policy.PrefetchStats) {
	t.Helper()
	return restoreOpts(t, f, name, policy.Options{}, input, count)
}

// restoreOpts is restoreWith with the policy's options.
func restoreOpts(t *testing.T, f fixture, name string, o policy.Options, input uint64, count int) ([]funcvm.VMResult, policy.PrefetchStats) {
	t.Helper()
	want := f.want(t, input)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := restore.Run(ctx, &qemu.Driver{}, f.dir, restore.Config{
		Policy: name, PolicyOptions: o, Input: input, Count: count, Cold: true, Expected: want,
	})
	if err != nil {
		t.Fatalf("restore %s under %s: %v", f.fn, name, err)
	}
	if len(res.VMs) != count {
		t.Fatalf("restore %s under %s: %d results, want %d", f.fn, name, len(res.VMs), count)
	}
	for _, r := range res.VMs {
		if !r.ResultOK || r.Checksum != want || r.Error != "" {
			t.Errorf("%s vm %d input %d: checksum %s ok=%v err=%q, want %s", name, r.Index, input, r.Checksum, r.ResultOK, r.Error, want)
		}
	}
	return res.VMs, res.Prefetch
}

// setPages is the set of pages of a working set.
func setPages(s *wset.Set) map[uint64]bool {
	m := make(map[uint64]bool, s.Pages())
	for _, e := range s.Extents {
		for p := e.Page; p < e.End(); p++ {
			m[p] = true
		}
	}
	return m
}

// residentPages reports, per page, whether the file's page is cached.
func residentPages(t *testing.T, path string) []bool {
	t.Helper()
	vec, err := pagecache.Residency(path)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]bool, len(vec))
	for i, v := range vec {
		out[i] = v&1 != 0
	}
	return out
}

func countTrue(b []bool) int64 {
	var n int64
	for _, v := range b {
		if v {
			n++
		}
	}
	return n
}

func fileSHA(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// leftovers lists QEMU processes this test process started that still run.
func leftovers() []string {
	var found []string
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	me := fmt.Sprint(os.Getpid())
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || !strings.Contains(s[:i], "qemu-system") {
			continue
		}
		if f := strings.Fields(s[i+1:]); len(f) > 1 && f[1] == me {
			found = append(found, p)
		}
	}
	return found
}

// copySnapshot copies a snapshot directory (cp -a keeps the memory file
// sparse); the copy has the same snapshot ID.
func copySnapshot(t *testing.T, f fixture, out string) fixture {
	t.Helper()
	if out, err := exec.Command("cp", "-a", f.dir.Path, out).CombinedOutput(); err != nil {
		t.Fatalf("cp -a %s: %v\n%s", f.dir.Path, err, out)
	}
	d, err := snapshot.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	f.dir = d
	return f
}
