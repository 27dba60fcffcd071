package seccomp

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// childEnv makes the test binary act as a child that madvises a file
// mapping MADV_HUGEPAGE and prints the mapping's VmFlags.
const childEnv = "SECCOMP_TEST_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		os.Exit(hugepageChild(path))
	}
	os.Exit(m.Run())
}

func hugepageChild(path string) int {
	f, err := os.Open(path)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	const size = 4 << 20
	b, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_PRIVATE)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	if err := unix.Madvise(b, unix.MADV_HUGEPAGE); err != nil {
		fmt.Println("madvise:", err)
		return 1
	}
	smaps, _ := os.ReadFile("/proc/self/smaps")
	in := false
	for _, line := range strings.Split(string(smaps), "\n") {
		if fields := strings.Fields(line); len(fields) >= 6 && !strings.HasSuffix(fields[0], ":") {
			in = fields[5] == path
		}
		if in && strings.HasPrefix(line, "VmFlags:") {
			fmt.Println(line)
			return 0
		}
	}
	fmt.Println("mapping not found")
	return 1
}

func TestDenyFallocate(t *testing.T) {
	tool, err := exec.LookPath("fallocate")
	if err != nil {
		t.Skip("needs util-linux fallocate(1)")
	}
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	punch := []string{"--punch-hole", "--offset", "0", "--length", "65536", path}
	cmd := exec.Command(tool, punch...)
	if err := Wrap(cmd, Policy{DenyFallocate: true}); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not permitted") {
		t.Fatalf("fallocate under the filter: err=%v out=%q, want operation not permitted", err, out)
	}
	// Everything else still works under the filter.
	cmd = exec.Command(tool, "--help")
	Wrap(cmd, Policy{DenyFallocate: true, IgnoreHugepageAdvice: true})
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("fallocate --help under the filter: %v: %s", err, out)
	}
	// Without the filter the punch succeeds, so the check above can fail.
	if out, err := exec.Command(tool, punch...).CombinedOutput(); err != nil {
		t.Fatalf("fallocate without the filter: %v: %s", err, out)
	}
}

// TestIgnoreHugepageAdvice: under the filter, madvise(MADV_HUGEPAGE)
// succeeds but leaves no VM_HUGEPAGE ("hg") on the mapping.
func TestIgnoreHugepageAdvice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, make([]byte, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		policy Policy
		wantHG bool
	}{
		{"plain", Policy{}, true},
		{"filtered", Policy{IgnoreHugepageAdvice: true}, false},
		{"both", Policy{IgnoreHugepageAdvice: true, DenyFallocate: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(exe)
			cmd.Env = append(os.Environ(), childEnv+"="+path)
			if err := Wrap(cmd, tc.policy); err != nil {
				t.Fatal(err)
			}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			hg := false
			for _, f := range strings.Fields(string(out)) {
				hg = hg || f == "hg"
			}
			if hg != tc.wantHG {
				t.Errorf("%s: hg flag %v, want %v", strings.TrimSpace(string(out)), hg, tc.wantHG)
			}
		})
	}
}
