package record

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/snapbpf/snapbpf/internal/tracepoint"
)

// The programs are bpf/faults.c. Regenerate the committed faults_bpfel.go
// and faults_bpfel.o after editing it (needs clang, llvm-strip and
// libbpf-dev, which `make generate` installs and pins; a plain `go build`
// does not):
//
//	make generate

//go:generate go tool bpf2go -tags linux -target bpfel -type fault faults ../../bpf/faults.c -- -I../../bpf/include -Wall -Werror -O2 -g

// Fault record kinds, as in bpf/faults.c.
const (
	faultUser   = 1 // page_fault_user, at the start of a fault
	faultKernel = 2 // page_fault_kernel (a syscall touching user memory)
)

// x86 page fault error code bits (arch/x86/include/asm/trap_pf.h).
const (
	pfProt  = 1 << 0 // the page was present: a protection fault (copy on write)
	pfWrite = 1 << 1
)

// rawFault is one record from the kernel, struct fault in bpf/faults.c.
type rawFault = faultsFault

// faultTracepoints are the x86 exceptions tracepoints the programs attach
// to, which pass (address, regs, error_code).
var faultTracepoints = []string{"page_fault_user", "page_fault_kernel"}

// faultTracer streams every page fault of one process (its address, error
// code and time) from the kernel.
//
// When each fault was served would need a kretprobe (or fexit) on
// handle_mm_fault; the kernels here have neither kprobes nor usable fentry,
// so service times are calibrated separately (see calibrate).
type faultTracer struct {
	pid   int
	objs  faultsObjects
	links []link.Link
	rd    *ringbuf.Reader

	mu      sync.Mutex
	events  []rawFault
	done    chan struct{}
	readErr error
	stopped bool
}

// faultRingBuffer holds ~1M records: every fault of a 4 GiB guest twice.
const faultRingBuffer = 32 << 20

// startFaultTracer attaches the fault programs for process pid and starts
// reading. Nothing else is recorded.
func startFaultTracer(pid int) (_ *faultTracer, retErr error) {
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("trace: kernel BTF: %w", err)
	}
	for _, name := range faultTracepoints {
		if err := tracepoint.Check(kernel, name, "uint8", "*pt_regs", "uint8"); err != nil {
			return nil, fmt.Errorf("trace: page fault tracing needs the x86 exceptions tracepoints: %w", err)
		}
	}
	spec, err := loadFaults()
	if err != nil {
		return nil, fmt.Errorf("trace: load spec: %w", err)
	}
	spec.Maps[faultsMapFaults].MaxEntries = faultRingBuffer
	if err := spec.Variables[faultsVarTargetTgid].Set(uint32(pid)); err != nil {
		return nil, fmt.Errorf("trace: set target_tgid: %w", err)
	}
	t := &faultTracer{pid: pid, done: make(chan struct{})}
	defer func() {
		if retErr != nil {
			t.close()
		}
	}()
	if err := spec.LoadAndAssign(&t.objs, nil); err != nil {
		return nil, privilege("load fault programs", err)
	}
	for _, tp := range []struct {
		name string
		prog *ebpf.Program
	}{
		{faultTracepoints[0], t.objs.OnPageFaultUser},
		{faultTracepoints[1], t.objs.OnPageFaultKernel},
	} {
		l, err := tracepoint.Attach(tp.name, tp.prog)
		if err != nil {
			return nil, privilege("attach", err)
		}
		t.links = append(t.links, l)
	}
	t.rd, err = ringbuf.NewReader(t.objs.Faults)
	if err != nil {
		return nil, fmt.Errorf("trace: ring buffer reader: %w", err)
	}
	go t.read()
	return t, nil
}

func privilege(what string, err error) error {
	if errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("trace: %s: %w (needs root, or CAP_BPF and CAP_PERFMON)", what, err)
	}
	return fmt.Errorf("trace: %s: %w", what, err)
}

// faultPoll is how often the reader drains the ring buffer.
const faultPoll = 10 * time.Millisecond

func (t *faultTracer) read() {
	defer close(t.done)
	err := tracepoint.Drain(t.rd, faultPoll, func(sample []byte) {
		var r rawFault
		if _, err := binary.Decode(sample, binary.LittleEndian, &r); err != nil {
			return // shorter than struct fault: not ours
		}
		t.mu.Lock()
		t.events = append(t.events, r)
		t.mu.Unlock()
	})
	if err != nil {
		t.readErr = fmt.Errorf("trace: %w", err)
	}
}

// stop detaches the programs, drains what the kernel queued and returns
// every record in time order, with the count of records lost.
func (t *faultTracer) stop() ([]rawFault, uint64, error) {
	if t.stopped {
		return nil, 0, errors.New("trace: fault tracer already stopped")
	}
	t.stopped = true
	var errs []error
	if err := tracepoint.Detach(t.links, t.rd); err != nil {
		errs = append(errs, fmt.Errorf("trace: %w", err))
	}
	t.links = nil
	<-t.done
	if t.readErr != nil {
		errs = append(errs, t.readErr)
	}
	var lost uint64
	if err := t.objs.Lost.Lookup(uint32(0), &lost); err != nil {
		errs = append(errs, fmt.Errorf("trace: read lost counter: %w", err))
	}
	ev := t.events
	// Records from different CPUs reach the ring slightly out of order.
	slices.SortStableFunc(ev, func(a, b rawFault) int {
		switch {
		case a.TimeNs < b.TimeNs:
			return -1
		case a.TimeNs > b.TimeNs:
			return 1
		}
		return 0
	})
	errs = append(errs, t.close())
	return ev, lost, errors.Join(errs...)
}

// close frees everything; safe to call more than once.
func (t *faultTracer) close() error {
	var errs []error
	for _, l := range t.links {
		errs = append(errs, l.Close())
	}
	t.links = nil
	if t.rd != nil {
		errs = append(errs, t.rd.Close())
		if !t.stopped {
			<-t.done
		}
		t.rd = nil
	}
	// Safe twice: closed programs and maps close again as no-ops.
	errs = append(errs, t.objs.Close())
	return errors.Join(errs...)
}
