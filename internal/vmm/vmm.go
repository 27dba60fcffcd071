// Package vmm is the interface between snapbpf and the virtual machine
// monitors that run function microVMs.
package vmm

import (
	"context"
	"io"
	"os"
	"strings"
)

// Config describes one VM.
type Config struct {
	Kernel    string // guest kernel image; empty for an Incoming VM
	Initramfs string
	Cmdline   string
	MemMiB    int
	CPUs      int
	// MemPath is the file that backs guest RAM.
	MemPath string
	// MemFile, if set, is MemPath already opened and checked: the VMM
	// maps this descriptor and never opens MemPath, so a file renamed
	// over MemPath meanwhile is not used.
	MemFile *os.File
	// MemShared makes guest writes go to MemPath (creating a snapshot).
	// Otherwise MemPath is mapped private, copy-on-write, and the VMM is
	// kept from changing it (restoring a snapshot).
	MemShared bool
	// Incoming starts the VM waiting for a saved device state instead of
	// booting the kernel.
	Incoming bool
	// Accel is "tcg", "kvm" or empty for DetectAccel.
	Accel string
	// FreePageReporting adds a balloon device on which the guest reports
	// free pages. A restore must use the value the snapshot was made with.
	FreePageReporting bool
	// Rootfs, if set, is a read-only root filesystem image attached as the
	// guest's first virtio block device (/dev/vda). A restore must attach
	// the same image the snapshot was made with: the guest's page cache of
	// it is part of the memory file.
	Rootfs string
	// AgentPort adds a virtio-serial port on which the agent speaks the
	// protocol instead of the UART: under TCG the emulated UART moves
	// about 35 KB/s, too slow for payloads of hundreds of KiB. Serial then
	// returns the port, and the UART's output (the guest console) goes to
	// the VMM's log. A restore must use the snapshot's value.
	AgentPort bool
	// IgnoreHugepageAdvice keeps the VMM's madvise(MADV_HUGEPAGE) on guest
	// RAM from taking effect: with it, every fault on the memory file reads
	// 4 MiB whatever the readahead setting (see package seccomp).
	IgnoreHugepageAdvice bool
	// Log receives the VMM's own output; nil discards it.
	Log io.Writer
}

// Machine is a running VM. Every method that talks to the VMM takes a
// context; Stop releases everything Start created and is safe to call more
// than once.
type Machine interface {
	// PID is the VMM process.
	PID() int
	// Serial is the guest's first serial port.
	Serial() io.ReadWriteCloser
	// Resume runs the guest's vCPUs; a new VM starts paused.
	Resume(ctx context.Context) error
	// Pause stops the vCPUs.
	Pause(ctx context.Context) error
	// SaveState writes the device state (not guest RAM, which is MemPath)
	// of a paused VM to path.
	SaveState(ctx context.Context, path string) error
	// LoadState loads a device state written by SaveState into an Incoming
	// VM from state, read from its current offset; the VM stays paused.
	LoadState(ctx context.Context, state *os.File) error
	// Stop ends the VM and removes its sockets and temporary files.
	Stop(ctx context.Context) error
	// Exited is closed when the VMM process has exited.
	Exited() <-chan struct{}
	// ExitReason says how the VMM process ended, with the likely cause
	// when a signal killed it (e.g. SIGBUS: the disk holding the memory
	// file is full); empty while it runs.
	ExitReason() string
	// Stderr is the tail of what the VMM printed, for error reports.
	Stderr() string
}

// Driver starts machines of one VMM.
type Driver interface {
	Name() string
	// Version is the VMM's version, recorded in snapshot manifests.
	Version(ctx context.Context) (string, error)
	Start(ctx context.Context, c Config) (Machine, error)
}

// DetectAccel picks "kvm" when the CPU has hardware virtualisation and
// /dev/kvm opens, and "tcg" otherwise. Some hosts expose a /dev/kvm that
// does not run a stock guest (nested, without vmx/svm), so the device alone
// is not enough.
func DetectAccel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "tcg"
	}
	hw := false
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "flags") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if f == "vmx" || f == "svm" {
				hw = true
			}
		}
		break
	}
	if !hw {
		return "tcg"
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return "tcg"
	}
	f.Close()
	return "kvm"
}
