// Package runner is the client of a language runtime's runner process
// (rootfs/python/runner.py): JSON requests, one per line, on its stdin, and
// one JSON reply per line on its stdout. The agent uses it in the guest;
// the host uses it in a chroot of the same image to verify results.
package runner

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"sync"
)

// Runner is a started runner process. Its methods are not safe for
// concurrent use: one request at a time.
type Runner struct {
	name string
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Reader

	mu     sync.Mutex
	stderr strings.Builder
}

// maxLine bounds one reply: payloads of a few MiB in base64.
const maxLine = 64 << 20

// Start starts cmd (whose stdin, stdout and stderr it takes over) as the
// runner of runtime name and waits for its ready line.
func Start(name string, cmd *exec.Cmd) (*Runner, error) {
	r := &Runner{name: name, cmd: cmd}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("runtime %s: %w", name, err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("runtime %s: %w", name, err)
	}
	cmd.Stderr = (*stderrTail)(r)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start runtime %s (%s): %w", name, cmd.Path, err)
	}
	r.in, r.out = in, bufio.NewReaderSize(out, 1<<20)
	var ready struct {
		Ready bool `json:"ready"`
	}
	if err := r.read(&ready); err != nil || !ready.Ready {
		r.Close()
		return nil, fmt.Errorf("runtime %s did not come up: %v%s", name, err, r.stderrTail())
	}
	return r, nil
}

// Init has the runner import function fn, run its init and one warm-up
// call on warmup, and freeze its heap; it returns the runner's time for it.
func (r *Runner) Init(fn string, warmup []byte) (int64, error) {
	var reply struct {
		FnNs int64 `json:"fn_ns"`
	}
	err := r.call(map[string]any{"op": "init", "function": fn, "warmup": warmup}, &reply)
	return reply.FnNs, err
}

// Invoke runs the function once on input and returns its output and the
// function's own time.
func (r *Runner) Invoke(input []byte) ([]byte, int64, error) {
	var reply struct {
		Output []byte `json:"output"`
		FnNs   int64  `json:"fn_ns"`
	}
	err := r.call(map[string]any{"op": "invoke", "input": input}, &reply)
	return reply.Output, reply.FnNs, err
}

// Reseed gives the runtime's generators (Python's random, numpy's, torch's) state
// derived from entropy (at least 16 bytes).
func (r *Runner) Reseed(entropy []byte) error {
	var reply struct{}
	return r.call(map[string]any{"op": "reseed", "entropy": entropy}, &reply)
}

// Random returns n bytes from Python's random followed by n from numpy's
// generator when numpy is loaded and n from torch's when torch is.
func (r *Runner) Random(n int) ([]byte, error) {
	var reply struct {
		Random []byte `json:"random"`
		Numpy  []byte `json:"numpy"`
		Torch  []byte `json:"torch"`
	}
	err := r.call(map[string]any{"op": "random", "n": n}, &reply)
	return slices.Concat(reply.Random, reply.Numpy, reply.Torch), err
}

// Close ends the runner.
func (r *Runner) Close() error {
	if r.in != nil {
		r.in.Close()
	}
	if r.cmd.Process != nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
	}
	return nil
}

// stderrTail keeps the tail of what the runner printed, for errors.
type stderrTail Runner

func (w *stderrTail) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stderr.Write(b)
	if w.stderr.Len() > 8<<10 {
		s := w.stderr.String()
		w.stderr.Reset()
		w.stderr.WriteString(s[len(s)-4<<10:])
	}
	return len(b), nil
}

func (r *Runner) stderrTail() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := strings.TrimSpace(r.stderr.String()); s != "" {
		return "; it printed: " + s
	}
	return ""
}

// call sends one request and decodes its reply into reply. A reply with
// "ok": false is an error carrying the runner's message.
func (r *Runner) call(req map[string]any, reply any) error {
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("runtime %s: encode %v: %w", r.name, req["op"], err)
	}
	if _, err := r.in.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("runtime %s: send %v: %w%s", r.name, req["op"], err, r.stderrTail())
	}
	return r.read(reply)
}

func (r *Runner) read(reply any) error {
	line, err := r.readLine()
	if err != nil {
		return fmt.Errorf("runtime %s: read reply: %w%s", r.name, err, r.stderrTail())
	}
	var status struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(line, &status); err != nil {
		return fmt.Errorf("runtime %s: malformed reply %.200q: %w", r.name, line, err)
	}
	if !status.OK {
		return fmt.Errorf("runtime %s: %s", r.name, status.Error)
	}
	return json.Unmarshal(line, reply)
}

func (r *Runner) readLine() ([]byte, error) {
	var line []byte
	for {
		frag, err := r.out.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > maxLine {
			return nil, fmt.Errorf("reply longer than %d bytes", maxLine)
		}
		switch {
		case err == nil:
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return nil, err
		}
	}
}
