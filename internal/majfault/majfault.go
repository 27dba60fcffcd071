// Package majfault counts one process's major page faults by where they
// land: inside an address range (a VMM's mapping of a snapshot's memory
// file) or elsewhere (its binary and libraries, other files).
//
// /proc/PID/stat counts every major fault of the process, including
// faults on QEMU's own binary and libraries whose page cache the host
// evicted between runs (DAMON's pageout does that here within seconds),
// which say nothing about a restore policy. The kernel reports each major
// fault, with its address, as the software perf event PAGE_FAULTS_MAJ; a
// small BPF program on that event (bpf/majfault.c), one per CPU, filters
// by process and range and counts.
package majfault

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The program is bpf/majfault.c. Regenerate the committed majfault_bpfel.go
// and majfault_bpfel.o after editing it (needs clang, llvm-strip and
// libbpf-dev, which `make generate` installs and pins; a plain `go build`
// does not):
//
//	make generate
//
// bpfel: the fault address is read from the perf event context with CO-RE,
// so the object serves every little-endian machine.

//go:generate go tool bpf2go -tags linux -target bpfel majfault ../../bpf/majfault.c -- -I../../bpf/include -Wall -Werror -O2 -g

// Counter slots, as in bpf/majfault.c.
const (
	slotInside  = 0
	slotOutside = 1
)

// Counter counts a process's major faults inside and outside a range.
type Counter struct {
	objs   majfaultObjects
	events []int
}

// Start counts the major faults of process pid from now on, those at
// addresses in [start, end) apart from the rest.
func Start(pid int, start, end uint64) (_ *Counter, retErr error) {
	spec, err := loadMajfault()
	if err != nil {
		return nil, fmt.Errorf("majfault: load spec: %w", err)
	}
	for name, v := range map[string]any{
		majfaultVarTargetTgid: uint32(pid),
		majfaultVarRangeStart: start,
		majfaultVarRangeEnd:   end,
	} {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("majfault: set %s: %w", name, err)
		}
	}
	c := &Counter{}
	defer func() {
		if retErr != nil {
			c.Close()
		}
	}()
	if err := spec.LoadAndAssign(&c.objs, nil); err != nil {
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
		if err := unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_SET_BPF, c.objs.CountMajorFault.FD()); err != nil {
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

// Counts returns the major faults counted so far inside the range and
// outside it.
func (c *Counter) Counts() (inside, outside int64, err error) {
	var v [2]uint64
	for _, k := range []uint32{slotInside, slotOutside} {
		if err := c.objs.Counts.Lookup(k, &v[k]); err != nil {
			return 0, 0, fmt.Errorf("majfault: read counter: %w", err)
		}
	}
	return int64(v[slotInside]), int64(v[slotOutside]), nil
}

// Close stops counting and frees everything; safe to call twice.
func (c *Counter) Close() error {
	var errs []error
	for _, fd := range c.events {
		errs = append(errs, unix.Close(fd))
	}
	c.events = nil
	// Closing twice is harmless: a closed program or map closes again as a
	// no-op.
	errs = append(errs, c.objs.Close())
	return errors.Join(errs...)
}

func privilege(what string, err error) error {
	if errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("majfault: %s: %w (needs root, or CAP_BPF and CAP_PERFMON)", what, err)
	}
	return fmt.Errorf("majfault: %s: %w", what, err)
}
