package funcvm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/guest"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/testenv"
	"github.com/snapbpf/snapbpf/internal/vmm/qemu"
)

func TestMain(m *testing.M) {
	testenv.Run(m)
}

// needVM skips tests that need root and QEMU, and builds the image.
func needVM(t *testing.T) *guest.Image { return testenv.NeedVM(t) }

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

// leftovers lists QEMU processes we started and VM temp dirs still there.
func leftovers(t *testing.T) []string {
	t.Helper()
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
			found = append(found, "process "+p)
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "snapbpf-qemu-"+me+"-*"))
	return append(found, dirs...)
}

func createTestSnapshot(t *testing.T, img *guest.Image, fn string, dataMiB int) *snapshot.Dir {
	t.Helper()
	out := filepath.Join(t.TempDir(), fn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var log bytes.Buffer
	dir, st, err := CreateSnapshot(ctx, &qemu.Driver{}, img, CreateOptions{
		Function: fn, DataMiB: dataMiB, MemMiB: 256, Out: out, FreePages: snapshot.FreePagesNone, Log: slog.New(slog.NewTextHandler(&log, nil)),
	})
	if err != nil {
		t.Fatalf("create %s snapshot: %v\n%s", fn, err, log.String())
	}
	t.Logf("%s snapshot: boot %.0f ms, init %.0f ms, save %.0f ms, total %.0f ms", fn, st.BootMs, st.InitMs, st.SaveMs, st.TotalMs)
	return dir
}

// TestSnapshotRestoreConcurrent is the end-to-end test: two
// functions, four concurrent clones each, every result verified against
// the host, the memory file unchanged, nothing left behind.
func TestSnapshotRestoreConcurrent(t *testing.T) {
	img := needVM(t)
	for _, tc := range []struct {
		fn      string
		dataMiB int
	}{
		{"json", 8},
		{"alloc", 16},
	} {
		t.Run(tc.fn, func(t *testing.T) {
			dir := createTestSnapshot(t, img, tc.fn, tc.dataMiB)
			before := fileSHA(t, dir.MemPath())
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			for _, input := range []uint64{1, 2} {
				want, err := Expect(tc.fn, tc.dataMiB, input)
				if err != nil {
					t.Fatal(err)
				}
				res, err := Restore(ctx, &qemu.Driver{}, dir, RestoreOptions{Input: input, Count: 4, Cold: input == 1, Expected: want})
				if err != nil {
					t.Fatalf("restore input %d: %v", input, err)
				}
				for _, r := range res {
					if !r.ResultOK || r.Checksum != want {
						t.Errorf("vm %d input %d: checksum %s ok=%v, want %s", r.Index, input, r.Checksum, r.ResultOK, want)
					}
					if r.E2EMs <= 0 || r.GuestFnMs <= 0 || r.MinorFaults+r.MajorFaults == 0 {
						t.Errorf("vm %d: implausible metrics %+v", r.Index, r)
					}
				}
				if input == 1 {
					t.Logf("cold vm0: %+v", res[0])
				}
			}
			if after := fileSHA(t, dir.MemPath()); after != before {
				t.Fatalf("memory file changed by restores: sha256 %s -> %s", before, after)
			}
			if l := leftovers(t); len(l) > 0 {
				t.Fatalf("left behind: %v", l)
			}
		})
	}
}

// TestClonesGetFreshEntropy: clones of one snapshot must not share random
// output, from the kernel or from the agent's own generator.
func TestClonesGetFreshEntropy(t *testing.T) {
	img := needVM(t)
	dir := createTestSnapshot(t, img, "aes", 4)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var kernel, agent [][]byte
	for i := 0; i < 2; i++ {
		k, a := cloneRandom(ctx, t, dir, true)
		kernel, agent = append(kernel, k), append(agent, a)
	}
	if bytes.Equal(kernel[0], kernel[1]) {
		t.Errorf("two clones read the same kernel random bytes %x", kernel[0])
	}
	if bytes.Equal(agent[0], agent[1]) {
		t.Errorf("two clones drew the same agent random bytes %x", agent[0])
	}
	// Without reseeding, the agent's generator repeats: the reseed is what
	// makes the difference, so the check above can fail.
	_, a1 := cloneRandom(ctx, t, dir, false)
	_, a2 := cloneRandom(ctx, t, dir, false)
	if !bytes.Equal(a1, a2) {
		t.Errorf("clones without reseed differ (%x vs %x): the snapshot should fix the generator state", a1, a2)
	}
}

func cloneRandom(ctx context.Context, t *testing.T, dir *snapshot.Dir, reseed bool) (kernel, agent []byte) {
	t.Helper()
	vm := resumedClone(ctx, t, dir, reseed)
	defer vm.Close(context.Background())
	k, a, err := vm.Random(ctx, 32)
	if err != nil {
		t.Fatal(err)
	}
	return k, a
}

// TestGuestTimeout: a guest that does not answer in time is killed and
// reported, and nothing is left running.
func TestGuestTimeout(t *testing.T) {
	img := needVM(t)
	dir := createTestSnapshot(t, img, "linpack", 0)
	old := InvokeTimeout
	InvokeTimeout = time.Millisecond
	defer func() { InvokeTimeout = old }()
	_, err := Restore(context.Background(), &qemu.Driver{}, dir, RestoreOptions{Input: 1, Count: 2})
	if err == nil || !strings.Contains(err.Error(), "did not answer in time") {
		t.Fatalf("want a timeout error, got %v", err)
	}
	if l := leftovers(t); len(l) > 0 {
		t.Fatalf("left behind: %v", l)
	}
}

// TestRestoreRefusesDamagedSnapshot: damaged files are refused by name.
func TestRestoreRefusesDamagedSnapshot(t *testing.T) {
	img := needVM(t)
	dir := createTestSnapshot(t, img, "json", 4)
	if err := os.Truncate(dir.StatePath(), 100); err != nil {
		t.Fatal(err)
	}
	_, err := snapshot.Open(dir.Path)
	if err == nil || !strings.Contains(err.Error(), dir.StatePath()) {
		t.Fatalf("truncated state: want an error naming %s, got %v", dir.StatePath(), err)
	}
}

// TestRestoreUsesCheckedFiles: files renamed over a snapshot's state and
// memory file after snapshot.Open checked them are never loaded. The VMM
// gets the descriptors Open checked, so the restore still computes the
// right result from the original files.
func TestRestoreUsesCheckedFiles(t *testing.T) {
	img := needVM(t)
	created := createTestSnapshot(t, img, "json", 8)
	dir, err := snapshot.Open(created.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	// What an attacker would swap in: device state that fails to load and
	// an all-zero memory file of the right size, on which the guest would
	// crash.
	evilState := filepath.Join(dir.Path, "evil-state")
	if err := os.WriteFile(evilState, bytes.Repeat([]byte{0xee}, int(dir.Manifest.StateSize)), 0o600); err != nil {
		t.Fatal(err)
	}
	evilMem := filepath.Join(dir.Path, "evil-mem")
	if err := os.WriteFile(evilMem, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(evilMem, dir.Manifest.MemSize); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(evilState, dir.StatePath()); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(evilMem, dir.MemPath()); err != nil {
		t.Fatal(err)
	}

	want, err := Expect("json", 8, 1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := Restore(ctx, &qemu.Driver{}, dir, RestoreOptions{Input: 1, Count: 2, Expected: want})
	if err != nil {
		t.Fatalf("restore after the swap: %v", err)
	}
	for _, r := range res {
		if !r.ResultOK {
			t.Errorf("vm %d: checksum %s, want %s", r.Index, r.Checksum, want)
		}
	}
}

// resumedClone restores one clone of dir and resumes it, reseeding its
// generators first if reseed is set, for tests that ask it for randomness.
// The caller closes it; on a failure it is closed here.
func resumedClone(ctx context.Context, t *testing.T, dir *snapshot.Dir, reseed bool) *VM {
	t.Helper()
	m, err := (&qemu.Driver{}).Start(ctx, restoreConfig(dir, ""))
	if err != nil {
		t.Fatal(err)
	}
	vm := newVM(m, Timeouts{})
	ok := false
	defer func() {
		if !ok {
			vm.Close(context.Background())
		}
	}()
	state, err := dir.OpenState()
	if err != nil {
		t.Fatal(err)
	}
	defer state.Close()
	if err := m.LoadState(ctx, state); err != nil {
		t.Fatal(err)
	}
	if err := m.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if reseed {
		if err := vm.Reseed(ctx); err != nil {
			t.Fatal(err)
		}
	}
	ok = true
	return vm
}
