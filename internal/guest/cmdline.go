package guest

import (
	"fmt"
	"strings"
	"sync"
)

// baseCmdline is the kernel command line for a snapbpf guest on QEMU
// microvm under TCG, where every probe and delay loop is slow. Measured on
// the 6.1 cloud kernel (boot to /init, see the package tests):
//
//   - console=ttyS0 quiet loglevel=3: microvm's console is its one ISA
//     serial port, which the agent uses too; the kernel prints only errors
//     there. Printing the full boot log costs ~0.6 s under TCG.
//   - lpj=10000000 tsc=reliable: without them the guest spends minutes
//     calibrating delay loops and watching the TSC.
//   - rdinit=/init: run the agent from the initramfs and never look for a
//     root device (there is none).
//   - panic=-1 reboot=t: reboot at once on a panic, by triple fault (microvm
//     has no keyboard controller or reset register to try first), so a QEMU
//     started with -no-reboot exits instead of hanging.
//   - pci=off: microvm has no PCI bus (its virtio devices are virtio-mmio,
//     found through ACPI); without it the kernel prints a PCI error.
//   - cryptomgr.notests: skips the crypto self-tests, ~0.2 s of a ~0.8 s
//     kernel boot under TCG.
//
// Tried and left out because they changed nothing measurable: 8250.nr_uarts=1
// (and it would hide a second serial port), i8042.noaux/nokbd,
// random.trust_cpu=on (the kernel's default), mitigations=off, nokaslr.
var baseCmdline = []string{
	"console=ttyS0",
	"quiet",
	"loglevel=3",
	"lpj=10000000",
	"tsc=reliable",
	"rdinit=/init",
	"panic=-1",
	"reboot=t",
	"pci=off",
	"cryptomgr.notests",
}

var tscOnce struct {
	sync.Once
	khz int
}

// KernelCmdline returns the kernel command line a snapbpf guest boots with
// under QEMU microvm, followed by extra (for example settings for the agent:
// the kernel passes name=value words it does not know to /init as
// environment variables).
//
// When the host's TSC frequency is known (HostTSCKHz) it is passed as
// tsc_early_khz. Under TCG the guest reads the host's TSC, and on a busy
// host the guest's calibration of it against the emulated PIT fails; the
// kernel then marks the TSC unstable and was seen to hang early in boot
// (4 of 6 boots with the host's two cores loaded by other guests; 0 of 6
// with tsc_early_khz).
func KernelCmdline(extra ...string) string {
	tscOnce.Do(func() {
		if khz, err := HostTSCKHz(); err == nil {
			tscOnce.khz = khz
		}
	})
	args := append([]string(nil), baseCmdline...)
	if tscOnce.khz > 0 {
		args = append(args, fmt.Sprintf("tsc_early_khz=%d", tscOnce.khz))
	}
	return strings.Join(append(args, extra...), " ")
}
