// Package agent is the request loop of the guest agent, snapbpf-agent: it
// reads the host's requests from the serial port and answers each one,
// keeping the initialised function between requests.
//
// What the agent does to the system it runs in (the kernel's entropy pool,
// free page reporting, /proc/meminfo) goes through a System, so the same
// loop runs as PID 1 of a guest and in-process in tests, where a fake VMM
// serves it over a pipe.
package agent

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/snapbpf/snapbpf/internal/functions"
	"github.com/snapbpf/snapbpf/internal/protocol"
	"github.com/snapbpf/snapbpf/internal/runner"
)

// System is what the agent does outside its own process.
type System interface {
	// AddEntropy credits e to the kernel's entropy pool and reseeds the
	// kernel's generator at once.
	AddEntropy(e []byte) error
	// PrepareSnapshot gets the guest ready for a snapshot: it sets the
	// free page reporting order when reportOrder >= 0 and gives free
	// memory back. The reply carries Info and Mem.
	PrepareSnapshot(reportOrder int) (protocol.Message, error)
	// SetReporting sets the free page reporting order; a negative order
	// stops reporting (the snapshot's last step, so that restored clones
	// do not report). The reply's Info carries the order set.
	SetReporting(order int) (protocol.Message, error)
	// MemInfo returns the guest's memory statistics in bytes, keyed as in
	// /proc/meminfo.
	MemInfo() (map[string]int64, error)
}

// ErrPoweroff is what Serve returns once it has answered a poweroff
// request: the caller powers the guest off.
var ErrPoweroff = errors.New("poweroff requested")

// Agent holds the guest's state between requests.
type Agent struct {
	w   *protocol.Writer
	sys System
	fn  functions.Function
	// rt and rtFn are the runtime runner and its function, for functions
	// that are not built into the agent (Message.Runtime).
	rt   *runner.Runner
	rtFn string

	// seed and rng are the agent's own random source. Every clone restored
	// from one snapshot starts with the same state, so fresh host entropy
	// is mixed in before a clone runs.
	seed [32]byte
	rng  *mrand.ChaCha8
}

// New returns an agent that writes its messages to w and acts on sys.
func New(w io.Writer, sys System) *Agent {
	a := &Agent{w: protocol.NewWriter(w), sys: sys}
	rand.Read(a.seed[:])
	a.rng = mrand.NewChaCha8(a.seed)
	return a
}

// Ready tells the host the agent is listening; info says how the guest
// came up (kernel version, boot times, module errors).
func (a *Agent) Ready(info map[string]string) error {
	return a.w.Write(protocol.Message{Type: protocol.TypeReady, Info: info})
}

// Serve answers requests read from r until the stream ends (the error that
// ended it) or a poweroff request has been answered (ErrPoweroff).
func (a *Agent) Serve(r io.Reader) error {
	pr := protocol.NewReader(r)
	for {
		req, err := pr.Read()
		if err != nil {
			if errors.Is(err, os.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) {
				return err
			}
			// A malformed line: say so and go on; the host times out on
			// its own request if the damage hid one.
			if werr := a.w.Write(protocol.Message{Type: protocol.TypeError, Error: err.Error()}); werr != nil {
				return werr
			}
			continue
		}
		reply, err := a.Handle(req)
		if err != nil {
			reply = protocol.Message{Type: protocol.TypeError, Error: err.Error()}
		} else {
			reply.Type = protocol.TypeResult
		}
		reply.ID = req.ID
		if err := a.w.Write(reply); err != nil {
			return err
		}
		if req.Type == protocol.TypePoweroff && reply.Type == protocol.TypeResult {
			return ErrPoweroff
		}
	}
}

// Handle answers one request. The reply's type and ID are left to Serve.
func (a *Agent) Handle(req protocol.Message) (protocol.Message, error) {
	switch req.Type {
	case protocol.TypeInit:
		return a.init(req)
	case protocol.TypeInvoke:
		return a.invoke(req)
	case protocol.TypeEntropy:
		return protocol.Message{}, a.mixEntropy(req.Entropy)
	case protocol.TypeRandom:
		return a.random(req.N)
	case protocol.TypePrepare:
		return a.sys.PrepareSnapshot(req.ReportOrder)
	case protocol.TypeReporting:
		return a.sys.SetReporting(req.ReportOrder)
	case protocol.TypeStats:
		mem, err := a.sys.MemInfo()
		return protocol.Message{Mem: mem}, err
	case protocol.TypePoweroff:
		return protocol.Message{}, nil
	}
	return protocol.Message{}, fmt.Errorf("unknown request type %q", req.Type)
}

func (a *Agent) init(req protocol.Message) (protocol.Message, error) {
	if a.fn != nil {
		return protocol.Message{}, fmt.Errorf("function %s already initialised", a.fn.Name())
	}
	if a.rt != nil {
		return protocol.Message{}, fmt.Errorf("function %s already initialised", a.rtFn)
	}
	if req.Runtime != "" {
		return a.initRuntime(req)
	}
	fn, err := functions.New(req.Function)
	if err != nil {
		return protocol.Message{}, err
	}
	start := time.Now()
	if err := fn.Init(functions.Options{DataMiB: req.DataMiB}); err != nil {
		return protocol.Message{}, fmt.Errorf("init %s: %w", req.Function, err)
	}
	a.fn = fn
	// Leave only live data in guest memory for the snapshot.
	runtime.GC()
	debug.FreeOSMemory()
	return protocol.Message{FnNs: time.Since(start).Nanoseconds()}, nil
}

func (a *Agent) invoke(req protocol.Message) (protocol.Message, error) {
	if a.rt != nil {
		return a.invokeRuntime(req)
	}
	if a.fn == nil {
		return protocol.Message{}, errors.New("no function initialised")
	}
	start := time.Now()
	res, err := a.fn.Invoke(req.Input)
	if err != nil {
		return protocol.Message{}, fmt.Errorf("invoke %s: %w", a.fn.Name(), err)
	}
	return protocol.Message{
		FnNs:           time.Since(start).Nanoseconds(),
		Checksum:       res.Checksum,
		OutputBytes:    res.OutputBytes,
		TouchedBytes:   res.TouchedBytes,
		AllocatedBytes: res.AllocatedBytes,
	}, nil
}

func (a *Agent) random(n int) (protocol.Message, error) {
	if n <= 0 || n > 4096 {
		return protocol.Message{}, fmt.Errorf("random: n=%d out of range 1..4096", n)
	}
	m := protocol.Message{Random: make([]byte, n), AgentRandom: make([]byte, n)}
	if _, err := rand.Read(m.Random); err != nil {
		return protocol.Message{}, err
	}
	a.rng.Read(m.AgentRandom)
	if a.rt != nil {
		r, err := a.runtimeRandom(n)
		if err != nil {
			return protocol.Message{}, err
		}
		m.RuntimeRandom = r
	}
	return m, nil
}

// mixEntropy feeds host entropy into the kernel's pool, reseeds the
// kernel's generator at once, and reseeds the agent's own.
func (a *Agent) mixEntropy(e []byte) error {
	if len(e) < 16 {
		return fmt.Errorf("entropy: %d bytes, want at least 16", len(e))
	}
	if err := a.sys.AddEntropy(e); err != nil {
		return err
	}
	h := sha256.New()
	h.Write(a.seed[:])
	h.Write(e)
	copy(a.seed[:], h.Sum(nil))
	a.rng = mrand.NewChaCha8(a.seed)
	if a.rt != nil {
		return a.reseedRuntime()
	}
	return nil
}
