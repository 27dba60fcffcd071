package capture

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/snapbpf/snapbpf/internal/capture/capturetest"
)

// The test binary doubles as the workload (capturetest) and, in probe
// mode, as an unprivileged process that tries to load the program.
func TestMain(m *testing.M) {
	capturetest.Main()
	if os.Getenv(capturetest.Env) == "probe" {
		if err := probe(); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// probe tries to record FILE and prints the error, for a run without
// privileges.
func probe() error {
	_, err := NewRecorder([]string{os.Getenv("FILE")})
	if err == nil {
		return fmt.Errorf("NewRecorder succeeded without privileges")
	}
	if !errors.Is(err, ErrNoPrivilege) {
		return fmt.Errorf("error does not wrap ErrNoPrivilege: %w", err)
	}
	fmt.Println(err)
	return nil
}

// needRoot skips tests that load BPF or change device settings.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads BPF and changes read_ahead_kb")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		t.Skip("needs kernel BTF (/sys/kernel/btf/vmlinux) for CO-RE")
	}
	if err := Supported(); err != nil {
		t.Skipf("BPF capture unsupported here: %v", err)
	}
}
