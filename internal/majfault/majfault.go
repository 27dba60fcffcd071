// Package majfault counts one process's major page faults by where they
// land: inside an address range (a VMM's mapping of a snapshot's memory
// file) or elsewhere (its binary and libraries, other files).
//
// /proc/PID/stat counts every major fault of the process, including
// faults on QEMU's own binary and libraries whose page cache the host
// evicted between runs (DAMON's pageout does that here within seconds),
// which say nothing about a restore policy. The kernel reports each major
// fault, with its address, as the software perf event PAGE_FAULTS_MAJ; a
// small BPF program on that event, one per CPU, filters by process and
// range and counts.
package majfault

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/snapbpf/snapbpf/internal/bpfasm"
	"golang.org/x/sys/unix"
)

// addrOffset is offsetof(struct bpf_perf_event_data, addr) on x86-64:
// after struct pt_regs (21 registers) and sample_period.
const addrOffset = 21*8 + 8

// Counter counts a process's major faults inside and outside a range.
type Counter struct {
	counts *ebpf.Map
	prog   *ebpf.Program
	events []int
}

// Start counts the major faults of process pid from now on, those at
// addresses in [start, end) apart from the rest.
func Start(pid int, start, end uint64) (_ *Counter, retErr error) {
	if runtime.GOARCH != "amd64" {
		return nil, fmt.Errorf("majfault: needs x86-64 (the perf event context layout), not %s", runtime.GOARCH)
	}
	c := &Counter{}
	defer func() {
		if retErr != nil {
			c.Close()
		}
	}()
	var err error
	c.counts, err = ebpf.NewMap(&ebpf.MapSpec{Name: "majfault", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 2})
	if err != nil {
		return nil, privilege("create counters", err)
	}
	c.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "snapbpf_majflt", Type: ebpf.PerfEvent, License: "GPL",
		Instructions: program(c.counts.FD(), pid, start, end),
	})
	if err != nil {
		return nil, privilege("load program", err)
	}
	cpus, err := onlineCPUs()
	if err != nil {
		return nil, err
	}
	for _, cpu := range cpus {
		attr := unix.PerfEventAttr{
			Type:   unix.PERF_TYPE_SOFTWARE,
			Config: unix.PERF_COUNT_SW_PAGE_FAULTS_MAJ,
			Size:   uint32(unsafe.Sizeof(unix.PerfEventAttr{})),
			Sample: 1, // every fault runs the program
			Bits:   unix.PerfBitDisabled,
		}
		fd, err := unix.PerfEventOpen(&attr, -1, cpu, -1, unix.PERF_FLAG_FD_CLOEXEC)
		if errors.Is(err, unix.ENODEV) {
			continue // went offline since
		}
		if err != nil {
			return nil, privilege(fmt.Sprintf("open major-fault event on CPU %d", cpu), err)
		}
		c.events = append(c.events, fd)
		if err := unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_SET_BPF, c.prog.FD()); err != nil {
			return nil, fmt.Errorf("majfault: attach to CPU %d: %w", cpu, err)
		}
		if err := unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_ENABLE, 0); err != nil {
			return nil, fmt.Errorf("majfault: enable on CPU %d: %w", cpu, err)
		}
	}
	return c, nil
}

// onlineCPUs lists the CPUs the kernel runs tasks on: all of them, not
// only those this process may use (runtime.NumCPU), since the counted
// process may run anywhere.
func onlineCPUs() ([]int, error) {
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return nil, fmt.Errorf("majfault: %w", err)
	}
	return parseCPUList(strings.TrimSpace(string(b)))
}

// parseCPUList parses the kernel's CPU list format: "0-3,5,7-8".
func parseCPUList(s string) ([]int, error) {
	var cpus []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("majfault: CPU list %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("majfault: CPU list %q: bad range %q", s, part)
			}
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

// program assembles: if the current thread group is pid, add one to
// counts[0] when the fault address is in [start, end), else to counts[1].
func program(counts, pid int, start, end uint64) asm.Instructions {
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.FnGetCurrentPidTgid.Call(),
		asm.RSh.Imm(asm.R0, 32),
		asm.JNE.Imm(asm.R0, int32(pid), "exit"),
		asm.LoadMem(asm.R7, asm.R6, addrOffset, asm.DWord),
		asm.Mov.Imm(asm.R8, 1), // outside
		asm.LoadImm(asm.R1, int64(start), asm.DWord),
		asm.JLT.Reg(asm.R7, asm.R1, "count"),
		asm.LoadImm(asm.R1, int64(end), asm.DWord),
		asm.JGE.Reg(asm.R7, asm.R1, "count"),
		asm.Mov.Imm(asm.R8, 0), // inside
		asm.StoreMem(asm.RFP, -4, asm.R8, asm.Word).WithSymbol("count"),
	}
	insns = append(insns, bpfasm.Increment(counts, -4, "exit")...)
	return append(insns,
		asm.Mov.Imm(asm.R0, 0).WithSymbol("exit"),
		asm.Return(),
	)
}

// Counts returns the major faults counted so far inside the range and
// outside it.
func (c *Counter) Counts() (inside, outside int64, err error) {
	var v [2]uint64
	for k := range v {
		if err := c.counts.Lookup(uint32(k), &v[k]); err != nil {
			return 0, 0, fmt.Errorf("majfault: read counter: %w", err)
		}
	}
	return int64(v[0]), int64(v[1]), nil
}

// Close stops counting and frees everything; safe to call twice.
func (c *Counter) Close() error {
	var errs []error
	for _, fd := range c.events {
		errs = append(errs, unix.Close(fd))
	}
	c.events = nil
	if c.prog != nil {
		errs = append(errs, c.prog.Close())
		c.prog = nil
	}
	if c.counts != nil {
		errs = append(errs, c.counts.Close())
		c.counts = nil
	}
	return errors.Join(errs...)
}

func privilege(what string, err error) error {
	if errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("majfault: %s: %w (needs root, or CAP_BPF and CAP_PERFMON)", what, err)
	}
	return fmt.Errorf("majfault: %s: %w", what, err)
}
