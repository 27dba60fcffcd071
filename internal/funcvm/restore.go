package funcvm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/snapbpf/snapbpf/internal/logging"
	"github.com/snapbpf/snapbpf/internal/majfault"
	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/procfs"
	"github.com/snapbpf/snapbpf/internal/rootfs"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/vmm"
)

// RestoreOptions describe a restore of Count clones.
type RestoreOptions struct {
	Input uint64
	// Payload is the input of a runtime function (snapshot.Manifest.Runtime),
	// which arrives with the request; Go functions take Input.
	Payload []byte
	Count   int
	// Cold drops the memory file's cached pages first.
	Cold bool
	// Warm reads the whole memory file into the page cache first: the
	// floor every policy is compared with.
	Warm bool
	// Expected is the checksum a correct invoke returns; empty skips the
	// check (callers compute it with Expect).
	Expected string
	Accel    string
	// Log receives diagnostics; nil discards them.
	Log *slog.Logger
	// Hooks let a restore policy act around each VMM start.
	Hooks Hooks
	// Timeouts bound each step; zero fields take the defaults.
	Timeouts Timeouts
	// MemPath and MemFile, if set, are the memory file the clones map
	// instead of the snapshot's own, and its open descriptor: a
	// byte-identical private copy, so that a recording sees every page its
	// VMM touches enter the page cache whatever other processes have
	// cached of the real file (record.Snapshot).
	MemPath string
	MemFile *os.File
}

// memPath is the memory file the clones map.
func (o RestoreOptions) memPath(dir *snapshot.Dir) string {
	if o.MemPath != "" {
		return o.MemPath
	}
	return dir.MemPath()
}

// Hooks are a restore policy's points of action.
type Hooks interface {
	// Begin runs once when the restore starts, before any VMM: a prefetch
	// starts here so it overlaps the VMs' setup.
	Begin(ctx context.Context) error
	// Configure adjusts each clone's VMM configuration.
	Configure(c *vmm.Config)
	// VMMStarted runs once per clone after its VMM has started (and mapped
	// the memory file) and before its state is loaded.
	VMMStarted(ctx context.Context, pid int) error
}

// VMResult is the measured restore and invocation of one clone.
type VMResult struct {
	Index            int     `json:"index"`
	E2EMs            float64 `json:"e2e_ms"`              // restore call to verified result
	VMMStartMs       float64 `json:"vmm_start_ms"`        // VMM exec to control socket ready
	StateLoadMs      float64 `json:"state_load_ms"`       // device state load
	ResumeToResultMs float64 `json:"resume_to_result_ms"` // resume, entropy, invoke, result
	GuestFnMs        float64 `json:"guest_fn_ms"`         // the function alone, guest clock
	MajorFaults      int64   `json:"major_faults"`        // of the VMM process
	// MemFileMajorFaults are the major faults of the VMM in its mapping
	// of the memory file, counted from before the state load (-1: not
	// measured); the rest of MajorFaults fell on other files (its binary,
	// libraries).
	MemFileMajorFaults int64  `json:"mem_file_major_faults"`
	MinorFaults        int64  `json:"minor_faults"`
	MemFileReadBytes   int64  `json:"mem_file_read_bytes"` // storage reads caused by the VMM
	GuestTouchedB      int64  `json:"guest_touched_bytes"` // resident guest memory of the VMM
	GuestPrivateB      int64  `json:"guest_private_bytes"` // guest pages copied on write
	Checksum           string `json:"checksum"`
	ResultOK           bool   `json:"result_ok"`
	Error              string `json:"error,omitempty"`
	// Output is a runtime function's output (its runner's answer; the
	// Checksum is of it); none for a Go function. Reports leave it out.
	Output []byte `json:"-"`
}

// Restore starts Count clones of the snapshot at once, each loads the
// device state, resumes, gets fresh entropy and invokes the function once.
// Every clone is measured and stopped; errors of single clones are in their
// results, and the returned error joins them.
func Restore(ctx context.Context, d vmm.Driver, dir *snapshot.Dir, o RestoreOptions) ([]VMResult, error) {
	if o.Count <= 0 {
		o.Count = 1
	}
	cfg, start, err := prepare(ctx, dir, o)
	if err != nil {
		return nil, err
	}
	results := make([]VMResult, o.Count)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = restoreOne(ctx, d, dir, cfg, o, start)
			results[i].Index = i
			logging.Or(o.Log).Debug("restore: clone done", "snapshot", dir.Path, "vm", i, "e2e_ms", results[i].E2EMs, "err", results[i].Error)
		}()
	}
	wg.Wait()
	var errs []error
	for _, r := range results {
		if r.Error != "" {
			errs = append(errs, fmt.Errorf("vm %d: %s", r.Index, r.Error))
		}
	}
	return results, errors.Join(errs...)
}

// StartClone restores one clone of the snapshot as Restore does, up to the
// invocation: the VMM started under o's hooks, the device state loaded,
// the guest resumed and given fresh entropy. The clone stays running for
// Clone.Invoke, once or many times (a service's warm instance), until
// Clone.Close. o.Count must be 0 or 1.
func StartClone(ctx context.Context, d vmm.Driver, dir *snapshot.Dir, o RestoreOptions) (*Clone, error) {
	if o.Count > 1 {
		return nil, fmt.Errorf("start clone: count %d: StartClone starts one clone", o.Count)
	}
	cfg, start, err := prepare(ctx, dir, o)
	if err != nil {
		return nil, err
	}
	c, r := resumeClone(ctx, d, dir, cfg, o, start)
	if r.Error != "" {
		return nil, errors.New(r.Error)
	}
	return c, nil
}

// prepare is what a restore does once before its clones: the page cache
// as o asks, the VMM configuration, the hooks' Configure and Begin. start
// is when the restore began, which every clone's end-to-end time counts
// from.
func prepare(ctx context.Context, dir *snapshot.Dir, o RestoreOptions) (cfg vmm.Config, start time.Time, err error) {
	if o.Cold && o.Warm {
		return cfg, start, errors.New("restore: cold and warm at once")
	}
	mem := o.memPath(dir)
	if o.Cold {
		if _, err := pagecache.Drop(mem); err != nil {
			return cfg, start, err
		}
	}
	if o.Warm {
		if err := pagecache.Warm(mem); err != nil {
			return cfg, start, err
		}
	}
	cfg = restoreConfig(dir, o.Accel)
	if err := CheckRootfs(dir); err != nil {
		return cfg, start, err
	}
	if o.MemPath != "" {
		cfg.MemPath, cfg.MemFile = o.MemPath, o.MemFile
	}
	start = time.Now()
	if o.Hooks != nil {
		o.Hooks.Configure(&cfg)
		if err := o.Hooks.Begin(ctx); err != nil {
			return cfg, start, err
		}
	}
	return cfg, start, nil
}

// restoreConfig is the VM configuration that restores dir: the device
// set must match the one the snapshot was taken with.
func restoreConfig(dir *snapshot.Dir, accel string) vmm.Config {
	if accel == "" {
		accel = dir.Manifest.VMM.Accel
	}
	return vmm.Config{
		MemMiB: dir.Manifest.MemMiB, MemPath: dir.MemPath(), MemFile: dir.MemFile(), Incoming: true,
		Accel: accel, FreePageReporting: dir.Manifest.FreePages == snapshot.FreePagesReport,
		Rootfs: dir.Manifest.RootfsPath, AgentPort: dir.Manifest.RootfsPath != "",
	}
}

// CheckRootfs refuses to restore a runtime snapshot with another root
// filesystem than the one it was taken with: the guest's page cache of
// the image is in the memory file, and a different image under it would
// hand the guest files that do not match what it cached.
func CheckRootfs(dir *snapshot.Dir) error {
	m := dir.Manifest
	if m.RootfsPath == "" {
		return nil
	}
	if err := rootfs.Verify(m.RootfsPath, m.RootfsSHA256); err != nil {
		return fmt.Errorf("restore %s: %w: the snapshot was taken with the other image; put it back, or create the snapshot again with this one", dir.Path, err)
	}
	return nil
}

// restoreOne restores, invokes and stops one clone. Its end-to-end time
// counts from start, the restore call, which includes the policy's Begin.
func restoreOne(ctx context.Context, d vmm.Driver, dir *snapshot.Dir, cfg vmm.Config, o RestoreOptions, start time.Time) VMResult {
	c, r := resumeClone(ctx, d, dir, cfg, o, start)
	if c == nil {
		return r
	}
	defer c.Close()
	r, _ = c.Invoke(ctx, o.Input, o.Payload, o.Expected)
	return r
}

// Clone is a restored function VM, resumed and reseeded, ready to invoke.
type Clone struct {
	vm     *VM
	mem    string
	faults memFaults
	// restore holds the restore's timings until the first invocation,
	// which reports them with its own.
	restore VMResult
	resumed time.Time
	start   time.Time
	invoked bool
	close   sync.Once
	err     error
}

// resumeClone starts one clone's VMM, loads the state, resumes it and gives
// it entropy. On failure the clone is nil, its VMM stopped, and r says what
// failed and how far the restore got.
func resumeClone(ctx context.Context, d vmm.Driver, dir *snapshot.Dir, cfg vmm.Config, o RestoreOptions, start time.Time) (_ *Clone, r VMResult) {
	fail := func(err error) (*Clone, VMResult) {
		r.Error = err.Error()
		return nil, r
	}
	timeouts := o.Timeouts.orDefaults()
	t := time.Now()
	sctx, cancel := context.WithTimeout(ctx, timeouts.VMM)
	defer cancel()
	m, err := d.Start(sctx, cfg)
	if err != nil {
		return fail(err)
	}
	c := &Clone{vm: newVM(m, timeouts), mem: cfg.MemPath, start: start}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	r.VMMStartMs = ms(time.Since(t))
	if o.Hooks != nil {
		if err := o.Hooks.VMMStarted(sctx, m.PID()); err != nil {
			return fail(err)
		}
	}
	c.faults = memFileFaults(m.PID(), cfg.MemPath)

	t = time.Now()
	state, err := dir.OpenState()
	if err != nil {
		return fail(err)
	}
	err = m.LoadState(sctx, state)
	state.Close()
	if err != nil {
		return fail(err)
	}
	r.StateLoadMs = ms(time.Since(t))

	c.resumed = time.Now()
	if err := c.vm.Resume(ctx); err != nil {
		return fail(err)
	}
	if err := c.vm.Reseed(ctx); err != nil {
		return fail(err)
	}
	ok = true
	c.restore = r
	return c, r
}

// PID is the clone's VMM process.
func (c *Clone) PID() int { return c.vm.M.PID() }

// Exited is closed when the clone's VMM has exited.
func (c *Clone) Exited() <-chan struct{} { return c.vm.M.Exited() }

// Invoke runs the function once on input (a runtime function on payload)
// and checks its checksum against
// expected (empty: no check). The first invocation's result is the
// restore's: its timings count from the restore call and its counters
// (faults, reads, memory) are the VMM's since it started. A later one
// reports only the invocation: E2EMs and ResumeToResultMs are the call,
// GuestFnMs the function. The error is set, and r.Error, when the call
// failed or the result is wrong; after a failed call (a timeout, a crash)
// the clone is unusable and should be closed.
func (c *Clone) Invoke(ctx context.Context, input uint64, payload []byte, expected string) (r VMResult, err error) {
	first := !c.invoked
	c.invoked = true
	t := time.Now()
	if first {
		r, t = c.restore, c.resumed
	}
	res, err := c.vm.Invoke(ctx, input, payload)
	if err != nil {
		r.Error = err.Error()
		return r, err
	}
	r.ResumeToResultMs = ms(time.Since(t))
	r.GuestFnMs = float64(res.FnNs) / 1e6
	r.Checksum, r.Output = res.Checksum, res.Output
	r.ResultOK = expected == "" || res.Checksum == expected
	if first {
		r.E2EMs = ms(time.Since(c.start))
		c.measure(&r)
	} else {
		r.E2EMs = r.ResumeToResultMs
	}
	if !r.ResultOK {
		r.Error = fmt.Sprintf("checksum %s, want %s: the restored guest computed a wrong result", res.Checksum, expected)
		return r, errors.New(r.Error)
	}
	return r, nil
}

// measure reads the VMM's counters into r, before the VMM exits and they
// vanish.
func (c *Clone) measure(r *VMResult) {
	pid := c.vm.M.PID()
	// The memory file's count first: the VMM keeps running, and a fault
	// between the two reads must not make it exceed the process's.
	r.MemFileMajorFaults = c.faults.inside()
	if st, err := procfs.ReadStat(pid); err == nil {
		r.MinorFaults, r.MajorFaults = st.MinorFaults, st.MajorFaults
	}
	r.MemFileReadBytes, _ = procfs.ReadBytes(pid)
	r.GuestTouchedB, r.GuestPrivateB, _ = mappingUsage(pid, c.mem)
}

// Close stops the clone's VMM and frees what it holds; safe to call more
// than once.
func (c *Clone) Close() error {
	c.close.Do(func() {
		c.faults.Close()
		c.err = c.vm.Close(context.Background())
	})
	return c.err
}

// memFaults counts a VMM's major faults on its memory file mapping; a
// zero value (counting unavailable) reports -1.
type memFaults struct{ c *majfault.Counter }

// memFileFaults starts counting the major faults process pid takes in its
// mapping of mem. Counting is a measurement, so a failure to start it
// only leaves it unmeasured.
func memFileFaults(pid int, mem string) memFaults {
	start, end, err := mappingRange(pid, mem)
	if err != nil {
		return memFaults{}
	}
	c, err := majfault.Start(pid, start, end)
	if err != nil {
		return memFaults{}
	}
	return memFaults{c}
}

func (f memFaults) inside() int64 {
	if f.c == nil {
		return -1
	}
	n, _, err := f.c.Counts()
	if err != nil {
		return -1
	}
	return n
}

func (f memFaults) Close() {
	if f.c != nil {
		f.c.Close()
	}
}
