package bench

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/snapbpf/snapbpf/internal/vmm"
)

// versionDriver is a vmm.Driver that only knows its name and version.
type versionDriver struct{ vmm.Driver }

func (versionDriver) Name() string                            { return "fakevmm" }
func (versionDriver) Version(context.Context) (string, error) { return "1.2.3", nil }

func TestDetectMachine(t *testing.T) {
	m := DetectMachine(context.Background(), versionDriver{}, "tcg", t.TempDir())
	if m.CPU == "" || m.NProc < 1 || m.MemMiB <= 0 || m.Kernel == "" {
		t.Errorf("machine = %+v", m)
	}
	if m.VMM != "fakevmm 1.2.3" || m.Accel != "tcg" {
		t.Errorf("VMM %q accel %q", m.VMM, m.Accel)
	}
	host, _ := os.Hostname()
	// (Short names such as "vm" occur in any text.)
	if len(host) >= 4 && strings.Contains(m.String(), host) {
		t.Errorf("machine description names the host: %s", m)
	}
	// Where the temporary directory is on a block device, it is found.
	if m.Disk.Device != "" && m.Disk.MaxSectorsKB <= 0 {
		t.Errorf("disk %+v without max_sectors_kb", m.Disk)
	}
}
