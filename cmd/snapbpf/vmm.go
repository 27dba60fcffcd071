package main

import (
	"log/slog"
	"path/filepath"

	"github.com/snapbpf/snapbpf/internal/vmm"
	"github.com/snapbpf/snapbpf/internal/vmm/qemu"
)

// runDir holds the VMs' run directories (their sockets).
func runDir() string { return filepath.Join(homeDir(), "run") }

// vmmDriver returns the VMM driver of every command that starts VMs. It
// first removes the run directories that processes killed before they could
// clean up left behind, so a kill -9 leaks them only until the next start.
func vmmDriver() *qemu.Driver {
	removed, err := qemu.CleanRunDirs(runDir())
	for _, p := range removed {
		slog.Debug("removed stale run directory", "path", p)
	}
	if err != nil {
		// Leftovers waste a few bytes; they must not stop the command.
		slog.Warn("cleaning stale run directories", "err", err)
	}
	return &qemu.Driver{RunDir: runDir()}
}

// restoreDriver is the VMM driver restore and demo start their clones
// with: QEMU, or in tests the fake VMM of package vmmtest.
var restoreDriver = func() vmm.Driver { return vmmDriver() }
