// Package vmmtest is a fake vmm.Driver for tests of everything that drives
// VMs, without QEMU or root. Each fake Machine runs the real guest agent's
// request loop (package agent) in-process, served over a pipe that stands in
// for the serial port, so the host talks to it with the real protocol.
//
// Every VMM operation is written to a Log, in the order it happened, and a
// Faults function can make any operation fail or hang until its context
// ends, for tests of ordering, timeouts and error paths.
package vmmtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/snapbpf/snapbpf/internal/agent"
	"github.com/snapbpf/snapbpf/internal/guest"
	"github.com/snapbpf/snapbpf/internal/protocol"
	"github.com/snapbpf/snapbpf/internal/vmm"
)

// A function the fake guests initialise and invoke in milliseconds
// (linpack on 1 MiB of data) and the guest RAM its snapshots take: the
// workload of the fake-VMM tests of funcvm, restore and serve.
const (
	FastFunction = "linpack"
	FastDataMiB  = 1
	FastMemMiB   = 4
)

// Op names a VMM operation, in the Log and for Faults.
type Op string

// The operations of a fake VM.
const (
	OpStart     Op = "start"
	OpResume    Op = "resume"
	OpPause     Op = "pause"
	OpSaveState Op = "save-state"
	OpLoadState Op = "load-state"
	OpStop      Op = "stop"
)

// ErrHang, returned by Driver.Faults, makes the operation block until its
// context ends and then return the context's error, as a VMM that does not
// answer does.
var ErrHang = errors.New("vmmtest: hang")

// Log is an ordered record of events, safe for concurrent use. The fake
// driver adds one per VMM operation, as "OP" for Start and "OP N" for the
// operations of machine N (numbered from 0 in start order); tests add their
// own (a hook's call, say) to see them in order with the VMM's.
type Log struct {
	mu     sync.Mutex
	events []string
}

// Add appends an event.
func (l *Log) Add(event string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, event)
}

// Events returns a copy of the events so far.
func (l *Log) Events() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// Driver is a fake vmm.Driver. Set its fields before the first Start.
type Driver struct {
	// Log receives every operation; nil keeps none.
	Log *Log
	// Faults, if set, is asked before each operation of machine m (nil
	// for OpStart, which has no machine yet). An error fails the
	// operation; ErrHang makes it hang. Stop still releases everything
	// when it fails, as the real driver's does.
	Faults func(m *Machine, op Op) error
	// Function and DataMiB are the function a restored guest holds: a
	// fake state load initialises it in the agent, as loading a real
	// snapshot brings back the guest memory it was initialised in.
	Function string
	DataMiB  int

	mu       sync.Mutex
	machines []*Machine
}

var _ vmm.Driver = (*Driver)(nil)

// Name implements vmm.Driver.
func (d *Driver) Name() string { return "fake" }

// Version implements vmm.Driver.
func (d *Driver) Version(context.Context) (string, error) { return "1.0", nil }

// Start implements vmm.Driver: the machine starts paused, its agent idle
// until the first Resume.
func (d *Driver) Start(ctx context.Context, c vmm.Config) (vmm.Machine, error) {
	if err := d.fault(ctx, nil, OpStart); err != nil {
		return nil, fmt.Errorf("start fake VMM: %w", err)
	}
	host, guest := net.Pipe()
	d.mu.Lock()
	m := &Machine{
		d: d, index: len(d.machines), cfg: c,
		host: host, guest: guest,
		exited: make(chan struct{}),
	}
	d.machines = append(d.machines, m)
	d.mu.Unlock()
	m.agent = agent.New(guest, guestSystem{})
	return m, nil
}

// Machines returns every machine started so far, in start order.
func (d *Driver) Machines() []*Machine {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.machines)
}

// Running returns the machines not stopped yet: after the code under test
// returns, any is a leak.
func (d *Driver) Running() []*Machine {
	var out []*Machine
	for _, m := range d.Machines() {
		if !m.Stopped() {
			out = append(out, m)
		}
	}
	return out
}

// fault logs op and applies the Faults answer for it.
func (d *Driver) fault(ctx context.Context, m *Machine, op Op) error {
	if d.Log != nil {
		if m == nil {
			d.Log.Add(string(op))
		} else {
			d.Log.Add(fmt.Sprintf("%s %d", op, m.index))
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if d.Faults == nil {
		return nil
	}
	err := d.Faults(m, op)
	if errors.Is(err, ErrHang) {
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

// Machine is a fake VM: a paused guest agent behind a pipe.
type Machine struct {
	d     *Driver
	index int
	cfg   vmm.Config

	host, guest net.Conn
	agent       *agent.Agent

	mu      sync.Mutex
	loaded  bool // a state was loaded (Incoming)
	running bool // between Resume and Pause
	serving bool // the agent loop was started
	stopped bool
	reason  string
	exited  chan struct{}
}

var _ vmm.Machine = (*Machine)(nil)

// Index is the machine's number, in start order from 0.
func (m *Machine) Index() int { return m.index }

// Config is the configuration the machine was started with.
func (m *Machine) Config() vmm.Config { return m.cfg }

// Stopped reports whether Stop was called or the machine crashed.
func (m *Machine) Stopped() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stopped
}

// PID implements vmm.Machine. The fake VMM has no process of its own, so
// it is the test's: what reads /proc for it finds a live process, and
// nothing outside the test is touched.
func (m *Machine) PID() int { return os.Getpid() }

// Serial implements vmm.Machine: the host's end of the agent's pipe.
func (m *Machine) Serial() io.ReadWriteCloser { return m.host }

// Resume implements vmm.Machine. The first Resume starts the agent: a
// booted guest's says it is ready, a restored one's goes on serving
// where the snapshot left it.
func (m *Machine) Resume(ctx context.Context) error {
	if err := m.d.fault(ctx, m, OpResume); err != nil {
		return fmt.Errorf("fake VM %d: resume: %w", m.index, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.stopped:
		return fmt.Errorf("fake VM %d: resume: stopped", m.index)
	case m.cfg.Incoming && !m.loaded:
		return fmt.Errorf("fake VM %d: resume: no state loaded into an incoming VM", m.index)
	}
	m.running = true
	if !m.serving {
		m.serving = true
		go m.serve(!m.cfg.Incoming)
	}
	return nil
}

// serve runs the agent until Stop closes its end of the pipe; how the
// loop ends is of no interest then.
func (m *Machine) serve(boot bool) {
	if boot {
		if err := m.agent.Ready(map[string]string{"kernel": "vmmtest", "uptime_ms": "1"}); err != nil {
			return
		}
	}
	m.agent.Serve(m.guest)
}

// Pause implements vmm.Machine. The agent goes on answering: only
// SaveState, which refuses a running VM, depends on the pause.
func (m *Machine) Pause(ctx context.Context) error {
	if err := m.d.fault(ctx, m, OpPause); err != nil {
		return fmt.Errorf("fake VM %d: pause: %w", m.index, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.running = false
	return nil
}

// SaveState implements vmm.Machine: it writes a small stand-in for the
// device state to path.
func (m *Machine) SaveState(ctx context.Context, path string) error {
	if err := m.d.fault(ctx, m, OpSaveState); err != nil {
		return fmt.Errorf("fake VM %d: save state: %w", m.index, err)
	}
	m.mu.Lock()
	running := m.running
	m.mu.Unlock()
	if running {
		return fmt.Errorf("fake VM %d: save state: the VM is running", m.index)
	}
	if err := os.WriteFile(path, []byte("vmmtest device state\n"), 0o600); err != nil {
		return fmt.Errorf("fake VM %d: save state: %w", m.index, err)
	}
	return nil
}

// LoadState implements vmm.Machine: it reads the state (any bytes) and
// initialises the Driver's Function in the agent.
func (m *Machine) LoadState(ctx context.Context, state *os.File) error {
	if err := m.d.fault(ctx, m, OpLoadState); err != nil {
		return fmt.Errorf("fake VM %d: load state: %w", m.index, err)
	}
	if !m.cfg.Incoming {
		return fmt.Errorf("fake VM %d: load state: not an incoming VM", m.index)
	}
	m.mu.Lock()
	serving := m.serving
	m.mu.Unlock()
	if serving {
		return fmt.Errorf("fake VM %d: load state: the guest has run already", m.index)
	}
	if _, err := io.ReadAll(state); err != nil {
		return fmt.Errorf("fake VM %d: load state: %w", m.index, err)
	}
	if m.d.Function != "" {
		// The agent loop is not running yet (the VM is paused), so
		// calling the agent directly races with nothing.
		if _, err := m.agent.Handle(protocol.Message{Type: protocol.TypeInit, Function: m.d.Function, DataMiB: m.d.DataMiB}); err != nil {
			return fmt.Errorf("fake VM %d: load state: %w", m.index, err)
		}
	}
	m.mu.Lock()
	m.loaded = true
	m.mu.Unlock()
	return nil
}

// Stop implements vmm.Machine: it ends the agent and closes the pipe.
func (m *Machine) Stop(ctx context.Context) error {
	err := m.d.fault(ctx, m, OpStop)
	m.end("stopped")
	if err != nil {
		return fmt.Errorf("fake VM %d: stop: %w", m.index, err)
	}
	return nil
}

// Crash ends the machine as a VMM that died would: the pipe closes and
// Exited reports reason.
func (m *Machine) Crash(reason string) { m.end(reason) }

func (m *Machine) end(reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return
	}
	m.stopped = true
	m.running = false
	m.reason = reason
	m.guest.Close()
	close(m.exited)
}

// Exited implements vmm.Machine.
func (m *Machine) Exited() <-chan struct{} { return m.exited }

// ExitReason implements vmm.Machine.
func (m *Machine) ExitReason() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reason
}

// Stderr implements vmm.Machine; the fake VMM prints nothing.
func (m *Machine) Stderr() string { return "" }

// guestSystem is the agent's guest system in a fake VM: it takes entropy
// and reports a fixed amount of memory, touching nothing on the host.
type guestSystem struct{}

func (guestSystem) AddEntropy([]byte) error { return nil }

func (guestSystem) PrepareSnapshot(reportOrder int) (protocol.Message, error) {
	info := map[string]string{}
	if reportOrder >= 0 {
		info["zeroed_bytes"] = "0"
	}
	mem, _ := guestSystem{}.MemInfo()
	return protocol.Message{Info: info, Mem: mem}, nil
}

func (guestSystem) SetReporting(order int) (protocol.Message, error) {
	return protocol.Message{Info: map[string]string{"report_order": strconv.Itoa(order)}}, nil
}

func (guestSystem) MemInfo() (map[string]int64, error) {
	return map[string]int64{"MemTotal": 256 << 20, "MemFree": 128 << 20}, nil
}

// Image is a guest image for the fake driver, which boots nothing: a
// snapshot's manifest records its names and digests, nothing reads them.
func Image() *guest.Image {
	digest := strings.Repeat("ab", 32)
	return &guest.Image{
		Kernel: "vmlinuz", Initramfs: "initrd", KernelVersion: "6.1.0-vmmtest",
		KernelSHA256: digest, InitramfsSHA256: digest, AgentSHA256: digest,
	}
}
