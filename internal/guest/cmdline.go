package guest

import "strings"

// baseCmdline is the kernel command line for a snapbpf guest on QEMU
// microvm, chosen for TCG where every probe and delay loop is slow:
//
//   - console=ttyS0: microvm's only console is the ISA serial port; the
//     agent talks on it too, so loglevel=3 keeps the kernel to errors.
//   - lpj=10000000 tsc=reliable: without them a TCG guest spends minutes
//     calibrating delay loops and checking the TSC.
//   - rdinit=/init: run the agent from the initramfs, never look for a root
//     device (there is none).
//   - panic=-1 reboot=t: on a panic reboot at once with a triple fault, so
//     QEMU started with -no-reboot exits instead of hanging.
//   - 8250.nr_uarts=1: register only ttyS0 instead of probing four ports.
//   - i8042.noaux i8042.nokbd: microvm has no PS/2 controller; skip probing.
//   - pci=off: microvm has no PCI bus (its virtio devices are on MMIO).
//   - cryptomgr.notests: skip the crypto self-tests run at boot.
//   - random.trust_cpu=on: seed the RNG from RDRAND (which -cpu max has)
//     rather than wait for entropy.
var baseCmdline = []string{
	"console=ttyS0",
	"quiet",
	"loglevel=3",
	"lpj=10000000",
	"tsc=reliable",
	"rdinit=/init",
	"panic=-1",
	"reboot=t",
	"8250.nr_uarts=1",
	"i8042.noaux",
	"i8042.nokbd",
	"pci=off",
	"cryptomgr.notests",
	"random.trust_cpu=on",
}

// KernelCmdline returns the kernel command line a snapbpf guest boots with
// under QEMU microvm, followed by extra (for example the agent's own
// settings, which the kernel passes on to /init).
func KernelCmdline(extra ...string) string {
	return strings.Join(append(append([]string(nil), baseCmdline...), extra...), " ")
}
