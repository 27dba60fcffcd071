package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/blockdev"
	"github.com/snapbpf/snapbpf/internal/vmm"
)

// Machine describes where a run was measured, without naming the host.
type Machine struct {
	CPU    string `json:"cpu"`
	NProc  int    `json:"nproc"`
	MemMiB int64  `json:"mem_mib"`
	Kernel string `json:"kernel"` // uname -r
	VMM    string `json:"vmm"`    // driver and version
	Accel  string `json:"accel"`
	Disk   Disk   `json:"disk"`
}

// Disk is the block device under the snapshots.
type Disk struct {
	Device       string `json:"device,omitempty"` // e.g. vda
	Model        string `json:"model,omitempty"`
	Rotational   bool   `json:"rotational"`
	Scheduler    string `json:"scheduler,omitempty"`
	ReadAheadKB  int    `json:"read_ahead_kb,omitempty"`
	MaxSectorsKB int    `json:"max_sectors_kb,omitempty"`
}

func (m Machine) String() string {
	disk := m.Disk.Device
	if disk == "" {
		disk = "unknown disk"
	} else {
		// As sysfs says: virtio disks report rotational whatever is behind.
		rot := 0
		if m.Disk.Rotational {
			rot = 1
		}
		disk = fmt.Sprintf("%s (rotational=%d", disk, rot)
		if m.Disk.Scheduler != "" {
			disk += ", " + m.Disk.Scheduler
		}
		disk += ")"
		if m.Disk.Model != "" {
			disk += " " + m.Disk.Model
		}
	}
	return fmt.Sprintf("%s, %d CPUs, %d MiB RAM, Linux %s, %s (%s), disk %s",
		m.CPU, m.NProc, m.MemMiB, m.Kernel, m.VMM, m.Accel, disk)
}

// DetectMachine describes this host; dir is a path on the disk whose
// device is described (the snapshot directory).
func DetectMachine(ctx context.Context, d vmm.Driver, accel, dir string) Machine {
	m := Machine{CPU: cpuModel(), NProc: runtime.NumCPU(), Accel: accel}
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		m.MemMiB = int64(si.Totalram) * int64(si.Unit) >> 20
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	m.VMM = d.Name()
	if v, err := d.Version(ctx); err == nil {
		m.VMM += " " + v
	}
	m.Disk = diskOf(dir)
	return m
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

// diskOf finds the whole block device holding path through sysfs: the
// device number of the filesystem, then its parent if it is a partition.
// Anything not found stays empty (overlay or tmpfs have no disk).
func diskOf(path string) Disk {
	var st unix.Stat_t
	for p := path; ; p = filepath.Dir(p) {
		if unix.Stat(p, &st) == nil || p == filepath.Dir(p) {
			break
		}
	}
	q, err := blockdev.ForDev(uint64(st.Dev))
	if err != nil {
		return Disk{}
	}
	in := q.Info()
	return Disk{
		Device:       in.Name,
		Model:        in.Model,
		Rotational:   in.Rotational,
		Scheduler:    in.Scheduler,
		ReadAheadKB:  int(in.ReadAheadKB),
		MaxSectorsKB: int(in.MaxSectorsKB),
	}
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// loadAvg is the 1-minute load average, 0 if unknown.
func loadAvg() float64 {
	f := strings.Fields(readTrim("/proc/loadavg"))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
