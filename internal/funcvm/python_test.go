package funcvm

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/guest"
	"github.com/snapbpf/snapbpf/internal/protocol"
	"github.com/snapbpf/snapbpf/internal/pyfn"
	"github.com/snapbpf/snapbpf/internal/rootfs"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/testenv"
	"github.com/snapbpf/snapbpf/internal/vmm/qemu"
)

func createPythonSnapshot(t *testing.T, img *guest.Image, fn string) *snapshot.Dir {
	t.Helper()
	warm, err := pyfn.Input(fn, 1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var log bytes.Buffer
	dir, st, err := CreateSnapshot(ctx, &qemu.Driver{}, img, CreateOptions{
		Function: fn, Runtime: pyfn.Runtime, Payload: warm, MemMiB: pyfn.GuestMiB(fn),
		Out: filepath.Join(t.TempDir(), fn), Log: slog.New(slog.NewTextHandler(&log, nil)),
	})
	if err != nil {
		t.Fatalf("create %s snapshot: %v\n%s", fn, err, log.String())
	}
	t.Logf("%s snapshot: boot %.0f ms, init %.0f ms, settle %.0f ms, data %d MiB", fn, st.BootMs, st.InitMs, st.SettleMs, dir.Manifest.MemDataBytes>>20)
	if dir.Manifest.Runtime != pyfn.Runtime || dir.Manifest.RootfsSHA256 != img.RootfsSHA256 {
		t.Fatalf("manifest records runtime %q, rootfs %s; want %s, %s", dir.Manifest.Runtime, dir.Manifest.RootfsSHA256, pyfn.Runtime, img.RootfsSHA256)
	}
	return dir
}

// TestPythonRestoreVerified restores python functions with both input
// shapes, checks each result against the host's run of the same runner
// over the same image, and wants the two shapes' results to differ.
func TestPythonRestoreVerified(t *testing.T) {
	img := testenv.NeedPython(t)
	for _, fn := range []string{"pyaes", "matmul"} {
		t.Run(fn, func(t *testing.T) {
			dir := createPythonSnapshot(t, img, fn)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			warm, _ := pyfn.Input(fn, 1)
			var sums []string
			for shape := uint64(1); shape <= pyfn.Shapes; shape++ {
				in, _ := pyfn.Input(fn, shape)
				want, out, hostTime, err := pyfn.Expect(ctx, img.Rootfs, fn, warm, in)
				if err != nil {
					t.Fatal(err)
				}
				res, err := Restore(ctx, &qemu.Driver{}, dir, RestoreOptions{Payload: in, Expected: want, Cold: true})
				if err != nil {
					t.Fatalf("restore, shape %d: %v", shape, err)
				}
				t.Logf("shape %d (%d bytes in): guest fn %.0f ms (host %v), resume to result %.0f ms: %.60s", shape, len(in), res[0].GuestFnMs, hostTime.Round(time.Millisecond), res[0].ResumeToResultMs, out)
				sums = append(sums, res[0].Checksum)
			}
			if sums[0] == sums[1] {
				t.Fatalf("shapes 1 and 2 gave the same result %s", sums[0])
			}
		})
	}
}

// TestPythonClonesRandom: clones of a python snapshot draw different
// numbers from Python's random and numpy's, because the agent reseeds
// them; without the reseed they draw the same (so the check can fail).
func TestPythonClonesRandom(t *testing.T) {
	img := testenv.NeedPython(t)
	dir := createPythonSnapshot(t, img, "linpack") // numpy loaded
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
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
