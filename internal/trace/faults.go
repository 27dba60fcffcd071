package trace

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/snapbpf/snapbpf/internal/bpfasm"
)

// Fault record kinds, as the programs below write them.
const (
	faultUser   = 1 // exceptions:page_fault_user, at the start of a fault
	faultKernel = 2 // exceptions:page_fault_kernel (a syscall touching user memory)
)

// x86 page fault error code bits (arch/x86/include/asm/trap_pf.h).
const (
	pfProt  = 1 << 0 // the page was present: a protection fault (copy on write)
	pfWrite = 1 << 1
)

// faultRecordSize is the size of one ring buffer record:
// time, address, error code, tid, kind.
const faultRecordSize = 32

// rawFault is one record from the kernel.
type rawFault struct {
	TimeNs uint64 // CLOCK_MONOTONIC
	Addr   uint64
	Code   uint64
	Tid    uint32
	Kind   uint32
}

// faultTracer streams every page fault of one process (its address, error
// code and time) from the kernel.
//
// When each fault was served would need a kretprobe (or fexit) on
// handle_mm_fault; the kernels here have neither kprobes nor usable fentry,
// so service times are calibrated separately (see calibrate).
//
// The programs are assembled here, not compiled from C: they are a dozen
// instructions, and the process ID they filter on is an immediate, so a
// tracer needs no map lookups and no generated objects.
type faultTracer struct {
	pid   int
	rb    *ebpf.Map
	lost  *ebpf.Map
	progs []*ebpf.Program
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
	if runtime.GOARCH != "amd64" {
		return nil, fmt.Errorf("trace: page fault tracing needs x86-64 (the exceptions tracepoints), not %s", runtime.GOARCH)
	}
	t := &faultTracer{pid: pid, done: make(chan struct{})}
	defer func() {
		if retErr != nil {
			t.close()
		}
	}()
	var err error
	t.rb, err = ebpf.NewMap(&ebpf.MapSpec{Name: "faults", Type: ebpf.RingBuf, MaxEntries: faultRingBuffer})
	if err != nil {
		return nil, privilege("create ring buffer", err)
	}
	t.lost, err = ebpf.NewMap(&ebpf.MapSpec{Name: "fault_lost", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		return nil, privilege("create counter", err)
	}
	for _, name := range []string{"page_fault_user", "page_fault_kernel"} {
		addrOff, codeOff, err := tracepointOffsets("exceptions", name)
		if err != nil {
			return nil, err
		}
		kind := faultUser
		if name == "page_fault_kernel" {
			kind = faultKernel
		}
		prog, err := t.newProgram(addrOff, codeOff, kind)
		if err != nil {
			return nil, privilege("load "+name+" program", err)
		}
		l, err := link.Tracepoint("exceptions", name, prog, nil)
		if err != nil {
			return nil, privilege("attach exceptions:"+name, err)
		}
		t.links = append(t.links, l)
	}
	t.rd, err = ringbuf.NewReader(t.rb)
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

// newProgram assembles: if the current thread group is t.pid, emit
// {ktime, *(ctx+addrOff), *(ctx+codeOff), tid, kind}; count records the
// ring buffer had no room for.
func (t *faultTracer) newProgram(addrOff, codeOff int16, kind int) (*ebpf.Program, error) {
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.FnGetCurrentPidTgid.Call(),
		asm.Mov.Reg(asm.R7, asm.R0),
		asm.RSh.Imm(asm.R0, 32),
		asm.JNE.Imm(asm.R0, int32(t.pid), "exit"),
		asm.LoadMem(asm.R8, asm.R6, addrOff, asm.DWord),
		asm.LoadMem(asm.R9, asm.R6, codeOff, asm.DWord),
		asm.FnKtimeGetNs.Call(),
		asm.StoreMem(asm.RFP, -32, asm.R0, asm.DWord),
		asm.StoreMem(asm.RFP, -24, asm.R8, asm.DWord),
		asm.StoreMem(asm.RFP, -16, asm.R9, asm.DWord),
		asm.StoreMem(asm.RFP, -8, asm.R7, asm.Word),
		asm.StoreImm(asm.RFP, -4, int64(kind), asm.Word),
		asm.LoadMapPtr(asm.R1, t.rb.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -32),
		asm.Mov.Imm(asm.R3, faultRecordSize),
		// BPF_RB_NO_WAKEUP: the reader polls, so a fault never pays
		// for waking it.
		asm.Mov.Imm(asm.R4, 1),
		asm.FnRingbufOutput.Call(),
		asm.JEq.Imm(asm.R0, 0, "exit"),
		asm.StoreImm(asm.RFP, -36, 0, asm.Word),
	}
	insns = append(insns, bpfasm.Increment(t.lost.FD(), -36, "exit")...)
	insns = append(insns,
		asm.Mov.Imm(asm.R0, 0).WithSymbol("exit"),
		asm.Return(),
	)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "snapbpf_fault", Type: ebpf.TracePoint, Instructions: insns, License: "GPL",
	})
	if err != nil {
		return nil, err
	}
	t.progs = append(t.progs, prog)
	return prog, nil
}

// tracepointOffsets reads where the address and error_code fields of a
// tracepoint's record are, from its format file.
func tracepointOffsets(group, name string) (addr, code int16, err error) {
	var f *os.File
	for _, root := range []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"} {
		f, err = os.Open(fmt.Sprintf("%s/events/%s/%s/format", root, group, name))
		if err == nil {
			break
		}
	}
	if f == nil {
		return 0, 0, fmt.Errorf("trace: tracepoint %s:%s: %w (is tracefs mounted? mount -t tracefs nodev /sys/kernel/tracing)", group, name, err)
	}
	defer f.Close()
	addr, code = -1, -1
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		var off int16 = -1
		for _, part := range strings.Split(line, ";") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(part), "offset:"); ok {
				n, err := strconv.ParseInt(v, 10, 16)
				if err == nil {
					off = int16(n)
				}
			}
		}
		switch {
		case strings.Contains(line, " address;"):
			addr = off
		case strings.Contains(line, " error_code;"):
			code = off
		}
	}
	if addr < 0 || code < 0 {
		return 0, 0, fmt.Errorf("trace: tracepoint %s:%s has no address and error_code fields", group, name)
	}
	return addr, code, sc.Err()
}

// faultPoll is how often the reader drains the ring buffer.
const faultPoll = 10 * time.Millisecond

func (t *faultTracer) read() {
	defer close(t.done)
	var rec ringbuf.Record
	t.rd.SetDeadline(time.Now().Add(faultPoll))
	for {
		err := t.rd.ReadInto(&rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.rd.SetDeadline(time.Now().Add(faultPoll))
			continue
		}
		if errors.Is(err, ringbuf.ErrFlushed) || errors.Is(err, ringbuf.ErrClosed) {
			return
		}
		if err != nil {
			t.readErr = fmt.Errorf("trace: read ring buffer: %w", err)
			return
		}
		b := rec.RawSample
		if len(b) < faultRecordSize {
			continue
		}
		le := binary.LittleEndian
		r := rawFault{
			TimeNs: le.Uint64(b[0:]), Addr: le.Uint64(b[8:]), Code: le.Uint64(b[16:]),
			Tid: le.Uint32(b[24:]), Kind: le.Uint32(b[28:]),
		}
		t.mu.Lock()
		t.events = append(t.events, r)
		t.mu.Unlock()
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
	for _, l := range t.links {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("trace: detach: %w", err))
		}
	}
	t.links = nil
	if err := t.rd.Flush(); err != nil {
		errs = append(errs, fmt.Errorf("trace: flush ring buffer: %w", err))
	}
	<-t.done
	if t.readErr != nil {
		errs = append(errs, t.readErr)
	}
	var lost uint64
	if err := t.lost.Lookup(uint32(0), &lost); err != nil {
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
	for _, p := range t.progs {
		errs = append(errs, p.Close())
	}
	t.progs = nil
	for _, m := range []**ebpf.Map{&t.rb, &t.lost} {
		if *m != nil {
			errs = append(errs, (*m).Close())
			*m = nil
		}
	}
	return errors.Join(errs...)
}
