package main

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/snapbpf/snapbpf/internal/functions"
	"github.com/snapbpf/snapbpf/internal/protocol"
)

// agent holds the guest's state between requests.
type agent struct {
	w  *protocol.Writer
	fn functions.Function

	// seed and rng are the agent's own random source. Every clone restored
	// from one snapshot starts with the same state, so fresh host entropy
	// is mixed in before a clone runs.
	seed [32]byte
	rng  *mrand.ChaCha8
}

func newAgent(w *protocol.Writer) *agent {
	a := &agent{w: w}
	rand.Read(a.seed[:])
	a.rng = mrand.NewChaCha8(a.seed)
	return a
}

// serve answers requests until the stream ends.
func (a *agent) serve(r *protocol.Reader) error {
	for {
		req, err := r.Read()
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return err
			}
			// A malformed line: say so and go on; the host times out on
			// its own request if the damage hid one.
			a.w.Write(protocol.Message{Type: protocol.TypeError, Error: err.Error()})
			continue
		}
		reply, err := a.handle(req)
		if err != nil {
			reply = protocol.Message{Type: protocol.TypeError, Error: err.Error()}
		} else {
			reply.Type = protocol.TypeResult
		}
		reply.ID = req.ID
		if err := a.w.Write(reply); err != nil {
			return err
		}
	}
}

func (a *agent) handle(req protocol.Message) (protocol.Message, error) {
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
		return prepareSnapshot(req)
	case protocol.TypeStats:
		mem, err := meminfo()
		return protocol.Message{Mem: mem}, err
	case protocol.TypePoweroff:
		go func() {
			time.Sleep(10 * time.Millisecond) // let the reply out
			os.Exit(0)                        // main powers off
		}()
		return protocol.Message{}, nil
	}
	return protocol.Message{}, fmt.Errorf("unknown request type %q", req.Type)
}

func (a *agent) init(req protocol.Message) (protocol.Message, error) {
	if a.fn != nil {
		return protocol.Message{}, fmt.Errorf("function %s already initialised", a.fn.Name())
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

func (a *agent) invoke(req protocol.Message) (protocol.Message, error) {
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

func (a *agent) random(n int) (protocol.Message, error) {
	if n <= 0 || n > 4096 {
		return protocol.Message{}, fmt.Errorf("random: n=%d out of range 1..4096", n)
	}
	m := protocol.Message{Random: make([]byte, n), AgentRandom: make([]byte, n)}
	if _, err := rand.Read(m.Random); err != nil {
		return protocol.Message{}, err
	}
	a.rng.Read(m.AgentRandom)
	return m, nil
}

// mixEntropy feeds host entropy into the kernel's pool, reseeds the
// kernel's generator at once, and reseeds the agent's own.
func (a *agent) mixEntropy(e []byte) error {
	if len(e) < 16 {
		return fmt.Errorf("entropy: %d bytes, want at least 16", len(e))
	}
	if err := addKernelEntropy(e); err != nil {
		return err
	}
	h := sha256.New()
	h.Write(a.seed[:])
	h.Write(e)
	copy(a.seed[:], h.Sum(nil))
	a.rng = mrand.NewChaCha8(a.seed)
	return nil
}

// meminfo returns /proc/meminfo in bytes.
func meminfo() (map[string]int64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		n, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			continue
		}
		if len(fields) > 1 && fields[1] == "kB" {
			n *= 1024
		}
		out[k] = n
	}
	return out, sc.Err()
}
