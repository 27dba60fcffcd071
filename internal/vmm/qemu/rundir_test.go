package qemu

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/owner"
	"github.com/snapbpf/snapbpf/internal/vmm"
)

// TestRunDirUnderRunDir: a VM's sockets live in Driver.RunDir, in a
// directory named for this process, removed by Stop.
func TestRunDirUnderRunDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs QEMU")
	}
	if _, err := exec.LookPath(DefaultBinary); err != nil {
		t.Skipf("%s not installed: %v", DefaultBinary, err)
	}
	run := filepath.Join(t.TempDir(), "run")
	mem := filepath.Join(t.TempDir(), "mem")
	if err := os.WriteFile(mem, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(mem, 16<<20); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := (&Driver{RunDir: run}).Start(ctx, vmm.Config{MemMiB: 16, MemPath: mem, Incoming: true, Accel: "tcg"})
	if err != nil {
		t.Fatal(err)
	}
	me, _ := owner.Self()
	ents, _ := os.ReadDir(run)
	if len(ents) != 1 || !strings.HasPrefix(ents[0].Name(), runDirPrefix+me.String()+"-") {
		t.Errorf("run directory %s holds %v, want one %s%s-*", run, ents, runDirPrefix, me)
	}
	if stale, _ := StaleRunDirs(run); len(stale) != 0 {
		t.Errorf("a live VM's run directory counts as stale: %v", stale)
	}
	if err := m.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(run); len(ents) != 0 {
		t.Errorf("left in %s after Stop: %v", run, ents)
	}
}

// TestCleanRunDirs removes the run directories of dead owners, including
// one whose pid now belongs to another process, and keeps live ones.
func TestCleanRunDirs(t *testing.T) {
	run := t.TempDir()
	me, err := owner.Self()
	if err != nil {
		t.Fatal(err)
	}
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	mk := func(o owner.Owner) string {
		p := filepath.Join(run, runDirPrefix+o.String()+"-123")
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "qmp.sock"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	live := mk(me)
	gone := mk(owner.Owner{PID: dead.Process.Pid, Start: 1})
	reused := mk(owner.Owner{PID: me.PID, Start: me.Start - 1})
	other := filepath.Join(run, "not-ours")
	if err := os.Mkdir(other, 0o700); err != nil {
		t.Fatal(err)
	}
	removed, err := CleanRunDirs(run)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(removed)
	want := []string{gone, reused}
	slices.Sort(want)
	if !slices.Equal(removed, want) {
		t.Errorf("removed %v, want %v", removed, want)
	}
	for _, p := range []string{live, other} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}
