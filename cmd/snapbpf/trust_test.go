package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/snapshot"
)

// fakeSnapshot commits a snapshot of the json function whose state no VMM
// can load: enough for what happens before a VM runs.
func fakeSnapshot(t *testing.T, out string) *snapshot.Dir {
	t.Helper()
	b, err := snapshot.Create(out, snapshot.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Abort()
	if err := os.WriteFile(b.StatePath(), bytes.Repeat([]byte("state "), 100), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b.MemPath(), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(b.MemPath(), 16<<20); err != nil {
		t.Fatal(err)
	}
	sum := strings.Repeat("ab", 32)
	d, err := b.Commit(snapshot.Manifest{
		Function: "json", FunctionOptions: map[string]int{"data_mib": 1}, MemMiB: 16,
		KernelSHA256: sum, AgentSHA256: sum, FreePages: snapshot.FreePagesNone,
		VMM: snapshot.VMMInfo{Name: "qemu-microvm", Version: "7.2", Accel: "tcg"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// run runs the CLI with ctx and returns its output and error.
func run(ctx context.Context, args ...string) (string, error) {
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	return out.String(), err
}

// TestSymlinkedMemRefused: a memory file replaced by a symbolic link to a
// same-size file elsewhere, as a user who can write the directory could
// plant, is refused by inspect and restore, naming the file.
func TestSymlinkedMemRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("restore needs root")
	}
	t.Setenv("SNAPBPF_HOME", t.TempDir())
	d := fakeSnapshot(t, filepath.Join(t.TempDir(), "snap"))
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.Rename(d.MemPath(), outside); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, d.MemPath()); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"snapshot", "inspect", d.Path},
		{"restore", "--snapshot", d.Path},
	} {
		_, err := run(context.Background(), args...)
		if err == nil || !strings.Contains(err.Error(), d.MemPath()) || !strings.Contains(err.Error(), "symbolic link") {
			t.Errorf("%v: error %v, want one naming %s as a symbolic link", args, err, d.MemPath())
		}
	}
}

// TestRestoreInterruptedPrintsNoTable: a restore stopped by a signal (its
// context canceled) prints the error, not a table of zero measurements.
func TestRestoreInterruptedPrintsNoTable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("restore needs root")
	}
	t.Setenv("SNAPBPF_HOME", t.TempDir())
	d := fakeSnapshot(t, filepath.Join(t.TempDir(), "snap"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out, err := run(ctx, "restore", "--snapshot", d.Path)
	if err == nil {
		t.Fatal("interrupted restore succeeded")
	}
	if strings.Contains(out, "e2e_ms") {
		t.Errorf("interrupted restore printed a table:\n%s", out)
	}
}

// TestRecordRefusesFullDisk: a recording whose working set could not be
// stored fails before its runs, not after them.
func TestRecordRefusesFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small filesystem")
	}
	t.Setenv("SNAPBPF_HOME", t.TempDir())
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	d := fakeSnapshot(t, filepath.Join(mnt, "snap"))
	// Fill the filesystem but for 2 MiB.
	fill := filepath.Join(mnt, "fill")
	if err := os.WriteFile(fill, make([]byte, 22<<20-4096*4), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := run(context.Background(), "record", "--snapshot", d.Path, "--runs", "1")
	if err == nil || !strings.Contains(err.Error(), "MiB free") || !strings.Contains(err.Error(), "working set") {
		t.Fatalf("record on a full disk: %v, want a refusal naming the free space", err)
	}
	t.Logf("%v (after %v)", err, time.Since(start))
}

// TestInspectChecksWhatRestoreChecks: a working set a restore would refuse
// makes inspect fail, listing the problem under --json; --fix removes the
// run directory of a dead process.
func TestInspectChecksWhatRestoreChecks(t *testing.T) {
	home := t.TempDir()
	t.Setenv("SNAPBPF_HOME", home)
	d := fakeSnapshot(t, filepath.Join(t.TempDir(), "snap"))
	if err := d.AddFile("wset/default.ws", func(w io.Writer) error { _, err := w.Write([]byte("not a working set")); return err }); err != nil {
		t.Fatal(err)
	}
	out, err := run(context.Background(), "snapshot", "inspect", "--json", d.Path)
	if err == nil {
		t.Fatalf("inspect passed a snapshot with a damaged working set:\n%s", out)
	}
	var desc snapshot.Description
	if err := json.Unmarshal([]byte(out), &desc); err != nil {
		t.Fatalf("inspect --json: %v\n%s", err, out)
	}
	if len(desc.Problems) != 1 || !strings.Contains(desc.Problems[0], d.File("wset/default.ws")) {
		t.Errorf("problems %q, want one naming %s", desc.Problems, d.File("wset/default.ws"))
	}

	// A run directory whose owner (pid 1 with another start time) is gone.
	stale := filepath.Join(home, "run", "snapbpf-qemu-1-1-123")
	if err := os.MkdirAll(stale, 0o700); err != nil {
		t.Fatal(err)
	}
	out, _ = run(context.Background(), "snapshot", "inspect", d.Path)
	if !strings.Contains(out, stale) {
		t.Errorf("inspect does not mention the stale run directory %s:\n%s", stale, out)
	}
	if out, _ = run(context.Background(), "snapshot", "inspect", "--fix", d.Path); !strings.Contains(out, "msg=removed path="+stale) {
		t.Errorf("inspect --fix did not say it removed %s:\n%s", stale, out)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale run directory still there after --fix: %v", err)
	}
}
