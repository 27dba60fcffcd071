// Package owner names the process that owns a temporary file or directory,
// so that a later process can tell a leftover of a dead one (killed with
// SIGKILL, say, before it could clean up) from the live work of another.
package owner

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/snapbpf/snapbpf/internal/procfs"
)

// Owner is a process: its pid and its start time, which together name it
// even after the pid is reused, and, where it is recorded, the boot.
type Owner struct {
	PID int `json:"pid"`
	// Start is the process's start time in clock ticks after boot, field
	// 22 of /proc/PID/stat.
	Start uint64 `json:"start_time"`
	// Boot is the kernel's boot ID when the owner was taken with Of; an
	// owner parsed from a name (Parse) has none and is not checked
	// against the boot.
	Boot string `json:"boot_id,omitempty"`
}

// Self is the calling process.
func Self() (Owner, error) { return Of(os.Getpid()) }

// Of is process pid, with the boot it runs in.
func Of(pid int) (Owner, error) {
	boot, err := BootID()
	if err != nil {
		return Owner{}, err
	}
	st, err := procfs.ReadStat(pid)
	if err != nil {
		return Owner{}, err
	}
	return Owner{PID: pid, Start: st.StartTime, Boot: boot}, nil
}

// BootID is the running kernel's boot ID: a process of another boot is gone
// whatever its pid and start time.
func BootID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("boot id: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// String renders o as "PID-START", the form Parse reads back and that
// goes into names.
func (o Owner) String() string { return fmt.Sprintf("%d-%d", o.PID, o.Start) }

// Parse reads "PID-START" from the start of s, as String writes it, and
// returns the rest of s after a following "-" (if any).
func Parse(s string) (o Owner, rest string, ok bool) {
	p, s, ok := strings.Cut(s, "-")
	if !ok {
		return Owner{}, "", false
	}
	st, rest, _ := strings.Cut(s, "-")
	pid, err1 := strconv.Atoi(p)
	start, err2 := strconv.ParseUint(st, 10, 64)
	if err1 != nil || err2 != nil || pid <= 0 {
		return Owner{}, "", false
	}
	return Owner{PID: pid, Start: start}, rest, true
}

// Alive reports whether o still runs: a process with its pid exists, is
// not a zombie (which can hold nothing any more) and started when o did (so
// it is not a new process that reused the pid), in the same boot if o
// records one.
func (o Owner) Alive() bool {
	if o.Boot != "" {
		if boot, err := BootID(); err != nil || boot != o.Boot {
			return false
		}
	}
	st, err := procfs.ReadStat(o.PID)
	return err == nil && st.StartTime == o.Start && st.State != "Z" && st.State != "X"
}
