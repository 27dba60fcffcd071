package funcvm

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/guest"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/vmm"
	"github.com/snapbpf/snapbpf/internal/vmm/qemu"
)

// smallTmpfs mounts a tmpfs of sizeMiB for the test.
func smallTmpfs(t *testing.T, sizeMiB int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small filesystem")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.Itoa(sizeMiB)+"m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	return dir
}

// TestCreateRefusesFullDisk: a snapshot whose memory file cannot fit is
// refused before any VM starts, with the free space and the fix.
func TestCreateRefusesFullDisk(t *testing.T) {
	mnt := smallTmpfs(t, 8)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, _, err := CreateSnapshot(ctx, &qemu.Driver{RunDir: t.TempDir()}, &guest.Image{}, CreateOptions{
		Function: "json", MemMiB: 64, Out: filepath.Join(mnt, "snap"), FreePages: snapshot.FreePagesNone,
	})
	if !errors.Is(err, snapshot.ErrNoSpace) {
		t.Fatalf("create on an 8 MiB filesystem: %v, want %v", err, snapshot.ErrNoSpace)
	}
	t.Log(err)
	for _, want := range []string{mnt, "8 MiB free", "68 MiB", "another filesystem"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// TestVMMDeathIsExplained: a VMM killed by SIGBUS (what a full disk under
// its shared memory file does) is reported with the signal and the likely
// cause, not as an empty "the VMM exited: ".
func TestVMMDeathIsExplained(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs QEMU")
	}
	if _, err := exec.LookPath(qemu.DefaultBinary); err != nil {
		t.Skipf("%s not installed: %v", qemu.DefaultBinary, err)
	}
	mem := filepath.Join(t.TempDir(), "mem")
	if err := os.WriteFile(mem, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(mem, 16<<20); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := (&qemu.Driver{RunDir: t.TempDir()}).Start(ctx, vmm.Config{MemMiB: 16, MemPath: mem, Incoming: true, Accel: "tcg"})
	if err != nil {
		t.Fatal(err)
	}
	vm := newVM(m, Timeouts{VMM: 5 * time.Second})
	defer vm.Close(context.Background())
	if err := syscall.Kill(m.PID(), syscall.SIGBUS); err != nil {
		t.Fatal(err)
	}
	// No waiting for the exit: the error must say why however early the
	// broken connection is seen.
	err = vm.Reseed(ctx)
	if err == nil {
		t.Fatal("a dead VM took entropy")
	}
	t.Log(err)
	for _, want := range []string{"SIGBUS", "disk holding the memory file is full"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// hungMachine is a VMM that never answers.
type hungMachine struct {
	vmm.Machine
	serial net.Conn
	exited chan struct{}
}

func (h *hungMachine) Serial() io.ReadWriteCloser { return h.serial }
func (h *hungMachine) Exited() <-chan struct{}    { return h.exited }
func (h *hungMachine) ExitReason() string         { return "" }
func (h *hungMachine) Stderr() string             { return "" }
func (h *hungMachine) Stop(context.Context) error { return h.serial.Close() }
func (h *hungMachine) Resume(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestResumeHasADeadline: a VMM that does not answer resume is reported
// after the VMM timeout, which the caller can set.
func TestResumeHasADeadline(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	vm := newVM(&hungMachine{serial: a, exited: make(chan struct{})}, Timeouts{VMM: 100 * time.Millisecond})
	defer vm.Close(context.Background())
	start := time.Now()
	err := vm.Resume(context.Background())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("resume of a hung VMM: %v, want a deadline error", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("resume gave up after %v, want about 100ms", el)
	}
}
