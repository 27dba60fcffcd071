package restore

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/snapbpf/snapbpf/internal/funcvm"
	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/vmm"
)

// Instance is one restored clone kept running after its first invocation:
// a service's warm instance. Start restores it through the same steps as
// Run (policy, hooks around the VMM, state load, resume, entropy); each
// Invoke runs the function once more. One invocation at a time.
type Instance struct {
	dir     *snapshot.Dir
	hooks   Hooks
	clone   *funcvm.Clone
	noCheck bool

	mu       sync.Mutex
	finished bool
	prefetch policy.PrefetchStats
	ferr     error
}

// Invocation is what one Instance.Invoke measured.
type Invocation struct {
	// Cold says this was the instance's first invocation: VM then holds
	// the restore's timings and counters and Prefetch its policy's
	// prefetch.
	Cold     bool
	VM       funcvm.VMResult
	Prefetch policy.PrefetchStats
	// Expected is the checksum the result was checked against (empty
	// with Config.NoCheck).
	Expected string
}

// Start restores one clone of dir with driver d under c's policy and
// leaves it resumed, with fresh entropy, for Invoke. c.Count must be 0 or
// 1; c.Input and c.Expected are not used (each Invoke names its input and
// checks it). The policy's
// prefetch is finished by the first Invoke, or by Close. On error nothing
// is left running.
func Start(ctx context.Context, d vmm.Driver, dir *snapshot.Dir, c Config) (*Instance, error) {
	h, err := c.hooks(dir)
	if err != nil {
		return nil, err
	}
	i := &Instance{dir: dir, hooks: h, noCheck: c.NoCheck}
	i.clone, err = funcvm.StartClone(ctx, d, dir, c.restoreOptions(h, ""))
	if err != nil {
		_, ferr := i.finish()
		return nil, errors.Join(fmt.Errorf("restore %s: %w", dir.Path, err), ferr)
	}
	return i, nil
}

// PID is the instance's VMM process.
func (i *Instance) PID() int { return i.clone.PID() }

// Exited is closed when the instance's VMM has exited.
func (i *Instance) Exited() <-chan struct{} { return i.clone.Exited() }

// Invoke runs the function once on input and checks the result against
// the function run on the host (unless Config.NoCheck). After an error
// the instance may be broken (the guest hung or crashed): Close it.
func (i *Instance) Invoke(ctx context.Context, input uint64) (Invocation, error) {
	var inv Invocation
	// The host computes the expected result while the guest computes
	// the real one: checking then adds no latency.
	type expected struct {
		sum string
		err error
	}
	want := make(chan expected, 1)
	if !i.noCheck {
		go func() {
			m := i.dir.Manifest
			sum, err := funcvm.Expect(m.Function, m.FunctionOptions["data_mib"], input)
			want <- expected{sum, err}
		}()
	}
	i.mu.Lock()
	inv.Cold = !i.finished
	i.mu.Unlock()
	vm, err := i.clone.Invoke(ctx, input, nil, "")
	if err == nil && !i.noCheck {
		w := <-want
		switch {
		case w.err != nil:
			err = fmt.Errorf("the expected result of input %d: %w", input, w.err)
		case vm.Checksum != w.sum:
			vm.ResultOK = false
			vm.Error = fmt.Sprintf("checksum %s, want %s: the restored guest computed a wrong result", vm.Checksum, w.sum)
			err = errors.New(vm.Error)
		}
		inv.Expected = w.sum
	}
	inv.VM = vm
	if inv.Cold {
		var ferr error
		inv.Prefetch, ferr = i.finish()
		err = errors.Join(err, ferr)
	}
	if err != nil {
		return inv, fmt.Errorf("restore %s: invoke input %d: %w", i.dir.Path, input, err)
	}
	return inv, nil
}

// InvokePayload runs a runtime function (a python snapshot) once on
// payload, its input as the function takes it; the answer's output is
// VM.Output. The output is not checked: only the function run again on
// the host could say what it should be, for any payload. After an error
// the instance may be broken: Close it.
func (i *Instance) InvokePayload(ctx context.Context, payload []byte) (Invocation, error) {
	var inv Invocation
	if i.dir.Manifest.Runtime == "" {
		return inv, fmt.Errorf("restore %s: function %s runs in the agent: invoke it with an input seed", i.dir.Path, i.dir.Manifest.Function)
	}
	i.mu.Lock()
	inv.Cold = !i.finished
	i.mu.Unlock()
	vm, err := i.clone.Invoke(ctx, 0, payload, "")
	inv.VM = vm
	if inv.Cold {
		var ferr error
		inv.Prefetch, ferr = i.finish()
		err = errors.Join(err, ferr)
	}
	if err != nil {
		return inv, fmt.Errorf("restore %s: invoke on a %d-byte payload: %w", i.dir.Path, len(payload), err)
	}
	return inv, nil
}

// finish ends the policy's prefetch once.
func (i *Instance) finish() (policy.PrefetchStats, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if !i.finished {
		i.finished = true
		i.prefetch, i.ferr = finish(i.dir, i.hooks)
	}
	return i.prefetch, i.ferr
}

// Close stops the instance's VMM and ends the policy's prefetch if no
// invocation did; safe to call more than once.
func (i *Instance) Close() error {
	err := i.clone.Close()
	_, ferr := i.finish()
	return errors.Join(err, ferr)
}
