package seccomp

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestCommandRefusesFallocate(t *testing.T) {
	tool, err := exec.LookPath("fallocate")
	if err != nil {
		t.Skip("needs util-linux fallocate(1)")
	}
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd, err := Command(context.Background(), tool, "--punch-hole", "--offset", "0", "--length", "65536", path)
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not permitted") {
		t.Fatalf("fallocate under the filter: err=%v out=%q, want operation not permitted", err, out)
	}
	// Everything else still works: the same program without fallocate.
	cmd, _ = Command(context.Background(), tool, "--help")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("fallocate --help under the filter: %v: %s", err, out)
	}
	// Without the filter the punch succeeds, so the test can fail.
	if out, err := exec.Command(tool, "--punch-hole", "--offset", "0", "--length", "65536", path).CombinedOutput(); err != nil {
		t.Fatalf("fallocate without the filter: %v: %s", err, out)
	}
}
