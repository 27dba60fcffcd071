package guest

import (
	"math"
	"strings"
	"testing"
)

func TestKernelCmdline(t *testing.T) {
	got := KernelCmdline("snapbpf.mode=test", "foo=bar")
	words := strings.Fields(got)
	for _, w := range []string{"console=ttyS0", "lpj=10000000", "tsc=reliable", "panic=-1", "quiet", "rdinit=/init", "reboot=t"} {
		if !strings.Contains(" "+got+" ", " "+w+" ") {
			t.Errorf("cmdline %q lacks %s", got, w)
		}
	}
	if n := len(words); words[n-2] != "snapbpf.mode=test" || words[n-1] != "foo=bar" {
		t.Errorf("extra words not at the end: %q", got)
	}
	if KernelCmdline() == got {
		t.Error("extra words leaked into a later call")
	}
}

func TestParseCPUInfo(t *testing.T) {
	info := "processor\t: 0\ncpu MHz\t\t: 2600.000\nflags\t\t: fpu tsc constant_tsc tsc_known_freq\n\nprocessor\t: 1\ncpu MHz\t\t: 1.0\nflags\t\t: fpu\n"
	flags, mhz := parseCPUInfo(info)
	if mhz != 2600 || !flags["tsc_known_freq"] || !flags["constant_tsc"] || flags["aperfmperf"] {
		t.Fatalf("parseCPUInfo = %v, %v", flags, mhz)
	}
}

// The measured TSC rate must agree with what HostTSCKHz reports (which may
// come from cpuinfo) to well under the kernel's own tolerance.
func TestHostTSCKHz(t *testing.T) {
	khz, err := HostTSCKHz()
	if err != nil {
		t.Skipf("host TSC frequency unknown: %v", err)
	}
	measured, err := measureTSCKHz()
	if err != nil {
		t.Skipf("cannot measure the TSC: %v", err)
	}
	if diff := math.Abs(float64(measured-khz)) / float64(khz); diff > 0.005 {
		t.Fatalf("HostTSCKHz %d kHz, measured %d kHz (%.2f%% apart)", khz, measured, diff*100)
	}
	if !strings.Contains(KernelCmdline(), "tsc_early_khz=") {
		t.Errorf("cmdline %q lacks tsc_early_khz though the host's is known", KernelCmdline())
	}
	t.Logf("host TSC %d kHz (measured %d kHz)", khz, measured)
}
