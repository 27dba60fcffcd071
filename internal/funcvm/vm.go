// Package funcvm runs function microVMs: it boots one from a guest image,
// snapshots it once its function is initialised, and restores clones of the
// snapshot that each invoke the function once.
package funcvm

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/snapbpf/snapbpf/internal/protocol"
	"github.com/snapbpf/snapbpf/internal/vmm"
)

// Default timeouts for the guest. TCG guests are slow, so these are
// generous; a guest that misses one is killed and reported.
var (
	BootTimeout   = 2 * time.Minute
	InitTimeout   = 10 * time.Minute
	InvokeTimeout = 5 * time.Minute
	VMMTimeout    = 30 * time.Second // start, state load, resume, pause, save, entropy
)

// exitGrace is how long an error waits for the VMM's exit status.
const exitGrace = 200 * time.Millisecond

// Timeouts bound every step of a function VM's life, so that a hung VMM or
// guest is reported instead of waited on for ever. A zero field takes the
// package default (BootTimeout etc.).
type Timeouts struct {
	// VMM bounds each short step: the VMM start, a state load or save,
	// resume, pause and the agent's short requests (entropy, prepare).
	VMM time.Duration
	// Boot bounds a fresh guest's boot until its agent is ready.
	Boot time.Duration
	// Init bounds the function's initialisation in the guest.
	Init time.Duration
	// Invoke bounds one invocation.
	Invoke time.Duration
}

// orDefaults fills t's zero fields with the package defaults.
func (t Timeouts) orDefaults() Timeouts {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.VMM, VMMTimeout)
	def(&t.Boot, BootTimeout)
	def(&t.Init, InitTimeout)
	def(&t.Invoke, InvokeTimeout)
	return t
}

// VM is a running function VM and the connection to its agent.
type VM struct {
	M        vmm.Machine
	Agent    *protocol.Client
	timeouts Timeouts
	closed   bool
}

// newVM connects to the agent on m's serial port; t bounds its steps.
func newVM(m vmm.Machine, t Timeouts) *VM {
	return &VM{M: m, Agent: protocol.NewClient(m.Serial()), timeouts: t.orDefaults()}
}

// Close stops the VM and frees everything it holds.
func (v *VM) Close(ctx context.Context) error {
	if v.closed {
		return nil
	}
	v.closed = true
	err := v.M.Stop(ctx)
	v.Agent.Close()
	return err
}

// Resume runs the guest's vCPUs, within the VMM timeout.
func (v *VM) Resume(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, v.timeouts.VMM)
	defer cancel()
	if err := v.M.Resume(ctx); err != nil {
		return v.explain(fmt.Errorf("resume: %w", err))
	}
	return nil
}

// call sends one request with a timeout; on failure the error carries what
// the guest printed last, which is where a panic shows.
func (v *VM) call(ctx context.Context, timeout time.Duration, req protocol.Message) (protocol.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	m, err := v.Agent.Call(ctx, req)
	if err != nil {
		return m, v.explain(err)
	}
	return m, nil
}

// explain adds the guest console tail and the VMM's exit to err.
func (v *VM) explain(err error) error {
	// A VMM that dies closes its sockets a moment before it can be reaped,
	// so a broken connection is often seen first: give the exit status a
	// moment to arrive, since it says why (a signal, and its likely cause).
	grace := exitGrace
	if errors.Is(err, context.DeadlineExceeded) {
		grace = 0
	}
	select {
	case <-v.M.Exited():
	case <-time.After(grace):
	}
	select {
	case <-v.M.Exited():
		err = fmt.Errorf("%w (the VMM %s)", err, v.M.ExitReason())
		if said := lastLines(v.M.Stderr(), 5); said != "" {
			err = fmt.Errorf("%w; the VMM said: %s", err, said)
		}
	default:
	}
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w: the guest did not answer in time", err)
	}
	if log := lastLines(v.Agent.Log(), 10); log != "" {
		err = fmt.Errorf("%w; guest console:\n%s", err, log)
	}
	return err
}

// Reseed gives the guest fresh entropy: every clone of a snapshot starts
// with the same generator state.
func (v *VM) Reseed(ctx context.Context) error {
	e := make([]byte, 64)
	if _, err := io.ReadFull(rand.Reader, e); err != nil {
		return fmt.Errorf("host entropy: %w", err)
	}
	_, err := v.call(ctx, v.timeouts.VMM, protocol.Message{Type: protocol.TypeEntropy, Entropy: e})
	return err
}

// Invoke runs the function once: a Go function on the seed input, a
// runtime function on payload.
func (v *VM) Invoke(ctx context.Context, input uint64, payload []byte) (protocol.Message, error) {
	return v.call(ctx, v.timeouts.Invoke, protocol.Message{Type: protocol.TypeInvoke, Input: input, Payload: payload})
}

// Random asks the guest for n bytes from the kernel and n from the agent's
// own generator.
func (v *VM) Random(ctx context.Context, n int) (kernel, agent []byte, err error) {
	m, err := v.call(ctx, v.timeouts.VMM, protocol.Message{Type: protocol.TypeRandom, N: n})
	return m.Random, m.AgentRandom, err
}

func lastLines(s string, n int) string {
	end := len(s)
	for end > 0 && (s[end-1] == '\n' || s[end-1] == '\r') {
		end--
	}
	i := end
	for k := 0; k < n && i > 0; k++ {
		j := i - 1
		for j > 0 && s[j-1] != '\n' {
			j--
		}
		i = j
	}
	return s[i:end]
}
