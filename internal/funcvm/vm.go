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

// Timeouts for the guest. TCG guests are slow, so these are generous; a
// guest that misses one is killed and reported.
var (
	BootTimeout   = 2 * time.Minute
	InitTimeout   = 10 * time.Minute
	InvokeTimeout = 5 * time.Minute
	VMMTimeout    = 30 * time.Second // start, state load, pause, save
)

// VM is a running function VM and the connection to its agent.
type VM struct {
	M      vmm.Machine
	Agent  *protocol.Client
	closed bool
}

// newVM connects to the agent on m's serial port.
func newVM(m vmm.Machine) *VM {
	return &VM{M: m, Agent: protocol.NewClient(m.Serial())}
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
	select {
	case <-v.M.Exited():
		err = fmt.Errorf("%w (the VMM exited: %s)", err, lastLines(v.M.Stderr(), 5))
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
	_, err := v.call(ctx, VMMTimeout, protocol.Message{Type: protocol.TypeEntropy, Entropy: e})
	return err
}

// Invoke runs the function once on input.
func (v *VM) Invoke(ctx context.Context, input uint64) (protocol.Message, error) {
	return v.call(ctx, InvokeTimeout, protocol.Message{Type: protocol.TypeInvoke, Input: input})
}

// Random asks the guest for n bytes from the kernel and n from the agent's
// own generator.
func (v *VM) Random(ctx context.Context, n int) (kernel, agent []byte, err error) {
	m, err := v.call(ctx, VMMTimeout, protocol.Message{Type: protocol.TypeRandom, N: n})
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
