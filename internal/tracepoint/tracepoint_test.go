package tracepoint

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"

	"github.com/snapbpf/snapbpf/internal/procfs"
)

func TestParseMountinfo(t *testing.T) {
	const info = `22 1 0:21 / /sys rw,nosuid shared:7 - sysfs sysfs rw
35 22 0:12 / /sys/kernel/tracing rw,nosuid shared:15 - tracefs tracefs rw
36 22 0:7 / /sys/kernel/debug rw,nosuid shared:16 - debugfs debugfs rw
37 36 0:12 / /sys/kernel/debug/tracing rw - tracefs tracefs rw
38 1 0:50 / /mnt/with\040space rw - tracefs nodev rw
bad line
`
	ms, err := procfs.ParseMountinfo(strings.NewReader(info))
	if err != nil {
		t.Fatal(err)
	}
	tr, dbg := split(ms)
	if want := []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing", "/mnt/with space"}; !slices.Equal(tr, want) {
		t.Errorf("tracefs = %q, want %q", tr, want)
	}
	if want := []string{"/sys/kernel/debug"}; !slices.Equal(dbg, want) {
		t.Errorf("debugfs = %q, want %q", dbg, want)
	}
}

// TestCheck runs against the running kernel's BTF: the tracepoints snapbpf
// attaches exist with the arguments its programs read.
func TestCheck(t *testing.T) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		t.Skipf("no kernel BTF: %v", err)
	}
	if err := Check(spec, "mm_filemap_add_to_page_cache", "*folio"); err != nil {
		t.Error(err)
	}
	if err := Check(spec, "sys_exit", "*pt_regs", "int8"); err != nil {
		t.Error(err)
	}
	if err := Check(spec, "sys_exit", "*pt_regs"); err == nil || errors.Is(err, ErrNotExist) {
		t.Errorf("Check with the wrong arguments = %v, want a mismatch", err)
	}
	if err := Check(spec, "no_such_tracepoint_snapbpf"); !errors.Is(err, ErrNotExist) {
		t.Errorf("Check of a missing tracepoint = %v, want ErrNotExist", err)
	}
}
