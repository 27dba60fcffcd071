// Package restore is the one restore pipeline: every restore of a snapshot
// (the CLI's, the bench's, a recording's, a trace's) prepares its policy,
// computes the result a correct invocation returns, restores the clones
// with the policy's hooks around each VMM and always waits for the
// policy's prefetch to end, through Run.
package restore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/snapbpf/snapbpf/internal/funcvm"
	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/pyfn"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/vmm"
)

// Hooks are what the pipeline needs of a policy: its points of action
// around each VMM (funcvm.Hooks), what to call it, and the end of its
// prefetch. *policy.Policy implements it; a recording or a trace wraps one
// to act at the VMM's start too.
type Hooks interface {
	funcvm.Hooks
	Name() string
	// Readahead says whether pages outside any prefetch are read with
	// Linux's readahead.
	Readahead() bool
	// Finish waits for the prefetch, if any, and reports it. The pipeline
	// calls it once per Run, whatever happened.
	Finish() (policy.PrefetchStats, error)
}

var _ Hooks = (*policy.Policy)(nil)

// Config describes one restore of Count clones.
type Config struct {
	// Policy names the restore policy (policy.Names), prepared with
	// WorkingSet and PolicyOptions as policy.New does. Hooks, if set,
	// replace all three: a policy the caller has prepared.
	Policy        string
	WorkingSet    string // overrides the snapshot's working set for policy snapbpf
	PolicyOptions policy.Options
	Hooks         Hooks

	Input uint64
	// Payload is the input of a runtime function (a python snapshot),
	// arriving with the request; nil takes the function's input shape
	// Input (pyfn.Input). Go functions take Input, a seed.
	Payload []byte
	// Count is how many clones restore at once (0 means 1).
	Count int
	// Cold drops the memory file's cached pages first; Warm reads all of
	// it into the page cache first. At most one of them.
	Cold, Warm bool
	// Accel is tcg or kvm; empty takes the snapshot's.
	Accel string
	// Expected is the checksum a correct invocation returns. Empty, Run
	// computes it by running the function on the host (and reports how
	// long that took), unless NoCheck is set.
	Expected string
	NoCheck  bool
	Timeouts funcvm.Timeouts
	// Log receives diagnostics; nil discards them.
	Log *slog.Logger
	// MemPath and MemFile, if set, are the memory file the clones map
	// instead of the snapshot's own (funcvm.RestoreOptions).
	MemPath string
	MemFile *os.File
}

// Result is what a restore measured.
type Result struct {
	// Policy is the name of the policy the clones restored under.
	Policy string
	// Readahead says whether pages outside any prefetch were read with
	// Linux's readahead.
	Readahead bool
	Prefetch  policy.PrefetchStats
	// Expected is the checksum every clone was checked against (empty
	// with Config.NoCheck).
	Expected string
	// HostFn is how long the invocation took natively on the host when
	// Run computed Expected, 0 otherwise: with a clone's GuestFnMs, the
	// VM's compute slowdown.
	HostFn time.Duration
	// VMs are the clones' results, in clone order.
	VMs []funcvm.VMResult
}

// HostFnMs is HostFn in milliseconds.
func (r *Result) HostFnMs() float64 { return float64(r.HostFn.Microseconds()) / 1000 }

// Run restores c.Count clones of dir with driver d under c's policy and
// invokes each once. Once the policy is prepared, its prefetch is waited
// for (Hooks.Finish) before Run returns, on every path.
//
// The Result is nil if no clone was started (the policy, the expected
// result, or the page cache preparation failed); otherwise it holds every
// clone's result, and the error joins the failures of single clones with
// the prefetch's.
func Run(ctx context.Context, d vmm.Driver, dir *snapshot.Dir, c Config) (*Result, error) {
	h, err := c.hooks(dir)
	if err != nil {
		return nil, err
	}
	res, err := run(ctx, d, dir, c, h)
	pst, ferr := finish(dir, h)
	err = errors.Join(err, ferr)
	if res != nil {
		res.Prefetch = pst
	}
	return res, err
}

// hooks are c's policy, prepared for dir.
func (c Config) hooks(dir *snapshot.Dir) (Hooks, error) {
	if c.Hooks != nil {
		return c.Hooks, nil
	}
	p, err := policy.New(c.Policy, dir, c.WorkingSet, c.PolicyOptions)
	if err != nil {
		return nil, fmt.Errorf("restore %s: %w", dir.Path, err)
	}
	return p, nil
}

// finish ends h's prefetch, naming the restore in its error.
func finish(dir *snapshot.Dir, h Hooks) (policy.PrefetchStats, error) {
	pst, err := h.Finish()
	if err != nil {
		err = fmt.Errorf("restore %s: policy %s: %w", dir.Path, h.Name(), err)
	}
	return pst, err
}

// run is Run once the policy's hooks are ready, up to its Finish.
func run(ctx context.Context, d vmm.Driver, dir *snapshot.Dir, c Config, h Hooks) (*Result, error) {
	res := &Result{Policy: h.Name(), Readahead: h.Readahead(), Expected: c.Expected}
	m := dir.Manifest
	if err := funcvm.CheckRootfs(dir); err != nil {
		return nil, err
	}
	payload := c.Payload
	if m.Runtime != "" && payload == nil {
		p, err := pyfn.Input(m.Function, c.Input)
		if err != nil {
			return nil, fmt.Errorf("restore %s: %w", dir.Path, err)
		}
		payload = p
	}
	if res.Expected == "" && !c.NoCheck {
		var err error
		if m.Runtime != "" {
			res.Expected, res.HostFn, err = expectRuntime(ctx, m, payload, 1)
		} else {
			res.Expected, res.HostFn, err = funcvm.ExpectTimed(m.Function, m.FunctionOptions["data_mib"], c.Input)
		}
		if err != nil {
			return nil, fmt.Errorf("restore %s: the expected result: %w", dir.Path, err)
		}
	}
	c.Payload = payload
	vms, err := funcvm.Restore(ctx, d, dir, c.restoreOptions(h, res.Expected))
	if err != nil {
		err = fmt.Errorf("restore %s: %w", dir.Path, err)
	}
	if vms == nil {
		return nil, err
	}
	res.VMs = vms
	return res, err
}

// restoreOptions are funcvm's options for c under hooks h.
func (c Config) restoreOptions(h Hooks, expected string) funcvm.RestoreOptions {
	return funcvm.RestoreOptions{
		Input: c.Input, Payload: c.Payload, Count: c.Count, Cold: c.Cold, Warm: c.Warm, Expected: expected,
		Accel: c.Accel, Log: c.Log, Hooks: h, Timeouts: c.Timeouts, MemPath: c.MemPath, MemFile: c.MemFile,
	}
}

// expectRuntime runs a runtime function on the host, over the snapshot's
// own image, on payload, runs times (the median time).
func expectRuntime(ctx context.Context, m snapshot.Manifest, payload []byte, runs int) (string, time.Duration, error) {
	if !pyfn.IsRuntime(m.Runtime) {
		return "", 0, fmt.Errorf("runtime %q: this snapbpf checks only the functions of %s", m.Runtime, strings.Join(pyfn.Runtimes(), ", "))
	}
	warmup, err := pyfn.Input(m.Function, 1)
	if err != nil {
		return "", 0, err
	}
	sum, _, d, err := pyfn.ExpectMedian(ctx, m.RootfsPath, m.Function, warmup, payload, runs)
	return sum, d, err
}

// Expected is the checksum a correct invocation of dir's function on input
// returns, and the host's time for it: the Go function run natively, or a
// runtime function's input shape run by its runner over the snapshot's
// image.
func Expected(ctx context.Context, m snapshot.Manifest, input uint64) (string, time.Duration, error) {
	return ExpectedMedian(ctx, m, input, 1)
}

// ExpectedMedian is Expected with the median host time of runs
// invocations: the time that divides a guest's into its slowdown.
func ExpectedMedian(ctx context.Context, m snapshot.Manifest, input uint64, runs int) (string, time.Duration, error) {
	if m.Runtime == "" {
		return funcvm.ExpectMedian(m.Function, m.FunctionOptions["data_mib"], input, runs)
	}
	payload, err := pyfn.Input(m.Function, input)
	if err != nil {
		return "", 0, err
	}
	return expectRuntime(ctx, m, payload, runs)
}
