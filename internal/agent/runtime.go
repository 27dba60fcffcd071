package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os/exec"
	"time"

	"github.com/snapbpf/snapbpf/internal/protocol"
	"github.com/snapbpf/snapbpf/internal/runner"
)

// Runtimes is what a System implements when it can start a language
// runtime's runner (package rootfs ships it in the runtime's image).
type Runtimes interface {
	// RuntimeCommand returns the command that starts the runner of the
	// named runtime; the agent connects its stdin, stdout and stderr.
	RuntimeCommand(name string) (*exec.Cmd, error)
}

// initRuntime starts the runtime's runner and has it import and
// initialise the function and run it once on the warm-up payload, so the
// snapshot holds a warm interpreter.
func (a *Agent) initRuntime(req protocol.Message) (protocol.Message, error) {
	rs, ok := a.sys.(Runtimes)
	if !ok {
		return protocol.Message{}, fmt.Errorf("runtime %s: this guest runs no language runtimes", req.Runtime)
	}
	cmd, err := rs.RuntimeCommand(req.Runtime)
	if err != nil {
		return protocol.Message{}, err
	}
	start := time.Now()
	r, err := runner.Start(req.Runtime, cmd)
	if err != nil {
		return protocol.Message{}, err
	}
	ns, err := r.Init(req.Function, req.Payload)
	if err != nil {
		r.Close()
		return protocol.Message{}, fmt.Errorf("init %s: %w", req.Function, err)
	}
	a.rt, a.rtFn = r, req.Function
	return protocol.Message{FnNs: time.Since(start).Nanoseconds(), Info: map[string]string{"runtime_init_ns": fmt.Sprint(ns)}}, nil
}

func (a *Agent) invokeRuntime(req protocol.Message) (protocol.Message, error) {
	out, ns, err := a.rt.Invoke(req.Payload)
	if err != nil {
		return protocol.Message{}, fmt.Errorf("invoke %s: %w", a.rtFn, err)
	}
	sum := sha256.Sum256(out)
	return protocol.Message{
		FnNs:        ns,
		Output:      out,
		Checksum:    hex.EncodeToString(sum[:]),
		OutputBytes: int64(len(out)),
	}, nil
}

// reseedRuntime gives the runner's generators (Python's random, numpy's, torch's)
// fresh state drawn from the agent's freshly reseeded generator.
func (a *Agent) reseedRuntime() error {
	e := make([]byte, 32)
	a.rng.Read(e)
	return a.rt.Reseed(e)
}

func (a *Agent) runtimeRandom(n int) ([]byte, error) { return a.rt.Random(n) }
