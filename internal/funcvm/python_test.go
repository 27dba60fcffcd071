package funcvm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/guest"
	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/protocol"
	"github.com/snapbpf/snapbpf/internal/pyfn"
	"github.com/snapbpf/snapbpf/internal/rootfs"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/testenv"
	"github.com/snapbpf/snapbpf/internal/vmm/qemu"
)

func createPythonSnapshot(t *testing.T, img *guest.Image, fn string) *snapshot.Dir {
	t.Helper()
	dir, err := makePythonSnapshot(t, img, fn, filepath.Join(t.TempDir(), fn))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// makePythonSnapshot snapshots python function fn from img into out.
func makePythonSnapshot(t *testing.T, img *guest.Image, fn, out string) (*snapshot.Dir, error) {
	warm, err := pyfn.Input(fn, 1)
	if err != nil {
		return nil, err
	}
	// Generous: import torch alone took 2 to 7 minutes under TCG on a
	// loaded host.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	var log bytes.Buffer
	dir, st, err := CreateSnapshot(ctx, &qemu.Driver{}, img, CreateOptions{
		Function: fn, Runtime: img.Runtime, Payload: warm, MemMiB: pyfn.GuestMiB(fn),
		Out: out, Log: slog.New(slog.NewTextHandler(&log, nil)),
	})
	if err != nil {
		return nil, fmt.Errorf("create %s snapshot: %w\n%s", fn, err, log.String())
	}
	t.Logf("%s snapshot: boot %.0f ms, init %.0f ms, settle %.0f ms, data %d MiB", fn, st.BootMs, st.InitMs, st.SettleMs, dir.Manifest.MemDataBytes>>20)
	if dir.Manifest.Runtime != img.Runtime || dir.Manifest.RootfsSHA256 != img.RootfsSHA256 {
		return nil, fmt.Errorf("manifest records runtime %q, rootfs %s; want %s, %s", dir.Manifest.Runtime, dir.Manifest.RootfsSHA256, img.Runtime, img.RootfsSHA256)
	}
	return dir, nil
}

// ownPython is the python image with a root filesystem file of the test
// binary's own: no host runner mounts it (they mount the shared image's),
// so what of it is in the host's page cache after a restore is what the
// restored guest read from its disk.
var ownPython struct {
	once sync.Once
	img  guest.Image
	err  error
}

// pySnaps are the test binary's snapshots of python functions over
// ownPython's image, one per function, shared by the tests that only
// restore them.
var pySnaps sync.Map // function name -> *pySnap

type pySnap struct {
	once sync.Once
	dir  *snapshot.Dir
	err  error
}

// pythonSnapshot is the shared snapshot of python function fn over the
// image ownPythonImage returns.
func pythonSnapshot(t *testing.T, fn string) (*guest.Image, *snapshot.Dir) {
	t.Helper()
	img := ownPythonImage(t)
	v, _ := pySnaps.LoadOrStore(fn, &pySnap{})
	s := v.(*pySnap)
	s.once.Do(func() {
		root, err := testenv.Dir()
		if err != nil {
			s.err = err
			return
		}
		s.dir, s.err = makePythonSnapshot(t, img, fn, filepath.Join(root, "python-"+fn))
	})
	if s.err != nil {
		t.Fatal(s.err)
	}
	return img, s.dir
}

func ownPythonImage(t *testing.T) *guest.Image {
	t.Helper()
	shared := testenv.NeedPython(t)
	ownPython.once.Do(func() {
		root, err := testenv.Dir()
		if err != nil {
			ownPython.err = err
			return
		}
		ownPython.img = *shared
		ownPython.img.Rootfs = filepath.Join(root, "own-rootfs.erofs")
		ownPython.err = copyFileErr(shared.Rootfs, ownPython.img.Rootfs)
	})
	if ownPython.err != nil {
		t.Fatal(ownPython.err)
	}
	return &ownPython.img
}

// TestPythonRestoreVerified restores every python function with both
// input shapes, checks each result against the host's run of the same
// runner over the same image, and wants the two shapes' results to
// differ. The guest must read nothing from its disk after a restore: the
// files the function uses are in its page cache, which is in the memory
// file (so the memory file's working set covers them).
func TestPythonRestoreVerified(t *testing.T) {
	shared := testenv.NeedPython(t)
	for _, fn := range pyfn.NamesOf(pyfn.Runtime) {
		t.Run(fn, func(t *testing.T) {
			img, dir := pythonSnapshot(t, fn)
			restoreShapesVerified(t, shared.Rootfs, img.Rootfs, dir)
		})
	}
}

// restoreShapesVerified restores dir's function cold with each input
// shape, checks each result against the host's run of the same runner
// over hostImage, and wants the shapes' results to differ. With ownImage
// (the snapshot's image, a file no host runner mounts) it wants the guest
// to read none of it.
func restoreShapesVerified(t *testing.T, hostImage, ownImage string, dir *snapshot.Dir) {
	t.Helper()
	fn := dir.Manifest.Function
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	warm, _ := pyfn.Input(fn, 1)
	var sums []string
	for shape := uint64(1); shape <= pyfn.Shapes; shape++ {
		in, _ := pyfn.Input(fn, shape)
		want, out, hostTime, err := pyfn.Expect(ctx, hostImage, fn, warm, in)
		if err != nil {
			t.Fatal(err)
		}
		if ownImage != "" {
			if left, err := pagecache.Drop(ownImage); err != nil || left > 0 {
				t.Fatalf("drop the image's page cache: %d pages left, %v", left, err)
			}
		}
		res, err := Restore(ctx, &qemu.Driver{}, dir, RestoreOptions{Payload: in, Expected: want, Cold: true})
		if err != nil {
			t.Fatalf("restore, shape %d: %v", shape, err)
		}
		var disk int64
		if ownImage != "" {
			if disk, err = pagecache.Cached(ownImage); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("shape %d (%d bytes in): guest fn %.0f ms (host %v), resume to result %.0f ms, %d pages read from the disk: %.60q",
			shape, len(in), res[0].GuestFnMs, hostTime.Round(time.Millisecond), res[0].ResumeToResultMs, disk, out)
		if disk > 0 {
			t.Errorf("shape %d: the restored guest read %d pages of its root filesystem: a file it used was not in its page cache at the snapshot", shape, disk)
		}
		sums = append(sums, res[0].Checksum)
	}
	if sums[0] == sums[1] {
		t.Fatalf("shapes 1 and 2 gave the same result %s", sums[0])
	}
}

// TestPythonTorchRNN restores the torch rnn function (a snapshot taken
// after import torch, its init and a warm-up call) with both input shapes,
// each result checked against the host's run over the same image, and
// wants clones to draw different numbers from torch's generator too.
// It runs when the machine has the python-torch image (or with
// SNAPBPF_TEST_TORCH=1, which builds it).
func TestPythonTorchRNN(t *testing.T) {
	img := testenv.NeedPythonTorch(t)
	dir := createPythonSnapshot(t, img, "rnn")
	// The host's runs mount the same image: its page cache says nothing
	// about the guest's reads here.
	restoreShapesVerified(t, img.Rootfs, "", dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// random, numpy, torch: 16 bytes each.
	a, b := pythonRandom(ctx, t, dir, true), pythonRandom(ctx, t, dir, true)
	if len(a) != 48 || len(b) != 48 || bytes.Equal(a[32:], b[32:]) {
		t.Fatalf("reseeded clones drew %x and %x: want 48 bytes, torch's (the last 16) different", a, b)
	}
	if c, d := pythonRandom(ctx, t, dir, false), pythonRandom(ctx, t, dir, false); !bytes.Equal(c, d) {
		t.Fatalf("clones without reseed differ (%x vs %x): the snapshot should fix the generators", c, d)
	}
}

// TestPythonClonesRandom: clones of a python snapshot draw different
// numbers from Python's random and numpy's, because the agent reseeds
// them; without the reseed they draw the same (so the check can fail).
func TestPythonClonesRandom(t *testing.T) {
	_, dir := pythonSnapshot(t, "linpack") // numpy loaded
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	a, b := pythonRandom(ctx, t, dir, true), pythonRandom(ctx, t, dir, true)
	if len(a) != 32 || bytes.Equal(a[:16], b[:16]) || bytes.Equal(a[16:], b[16:]) {
		t.Fatalf("reseeded clones drew %x and %x: want 16 bytes of random and 16 of numpy, all different", a, b)
	}
	if c, d := pythonRandom(ctx, t, dir, false), pythonRandom(ctx, t, dir, false); !bytes.Equal(c, d) {
		t.Fatalf("clones without reseed differ (%x vs %x): the snapshot should fix the generators", c, d)
	}
}

func pythonRandom(ctx context.Context, t *testing.T, dir *snapshot.Dir, reseed bool) []byte {
	t.Helper()
	vm := resumedClone(ctx, t, dir, reseed)
	defer vm.Close(context.Background())
	r, err := vm.call(ctx, time.Minute, protocol.Message{Type: protocol.TypeRandom, N: 16})
	if err != nil {
		t.Fatal(err)
	}
	return r.RuntimeRandom
}

// TestPythonRestoreRefusesChangedImage: a snapshot taken over one root
// filesystem image is not restored over a changed one; and the payload
// channel's speed is measured on the way (hello echoes its input).
func TestPythonRestoreRefusesChangedImage(t *testing.T) {
	img := testenv.NeedPython(t)
	// A private copy of the image, to change afterwards.
	own := *img
	own.Rootfs = filepath.Join(t.TempDir(), "rootfs.erofs")
	copyFile(t, img.Rootfs, own.Rootfs)
	dir := createPythonSnapshot(t, &own, "hello")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, n := range []int{16, 64 << 10, 200 << 10} {
		in := bytes.Repeat([]byte("x"), n)
		res, err := Restore(ctx, &qemu.Driver{}, dir, RestoreOptions{Payload: in, Expected: pyfn.Checksum(append([]byte("hello, "), in...))})
		if err != nil {
			t.Fatalf("restore with %d bytes: %v", n, err)
		}
		t.Logf("payload %d bytes in and out: resume to result %.0f ms, guest fn %.1f ms", n, res[0].ResumeToResultMs, res[0].GuestFnMs)
	}
	f, err := os.OpenFile(own.Rootfs, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A byte in the middle: the image is as large as before.
	if _, err := f.WriteAt([]byte{0xff}, 64<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = Restore(ctx, &qemu.Driver{}, dir, RestoreOptions{Payload: []byte("x")})
	if !errors.Is(err, rootfs.ErrChanged) {
		t.Fatalf("restore over a changed image: %v, want rootfs.ErrChanged", err)
	}
	t.Logf("refused: %v", err)
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	if err := copyFileErr(src, dst); err != nil {
		t.Fatal(err)
	}
}

func copyFileErr(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
