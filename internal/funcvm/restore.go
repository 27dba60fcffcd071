package funcvm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/snapbpf/snapbpf/internal/majfault"
	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/vmm"
)

// RestoreOptions describe a restore of Count clones.
type RestoreOptions struct {
	Input uint64
	Count int
	// Cold drops the memory file's cached pages first.
	Cold bool
	// Warm reads the whole memory file into the page cache first: the
	// floor every policy is compared with.
	Warm bool
	// Expected is the checksum a correct invoke returns; empty skips the
	// check (callers compute it with Expect).
	Expected string
	Accel    string
	Log      io.Writer
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
}

// Restore starts Count clones of the snapshot at once, each loads the
// device state, resumes, gets fresh entropy and invokes the function once.
// Every clone is measured and stopped; errors of single clones are in their
// results, and the returned error joins them.
func Restore(ctx context.Context, d vmm.Driver, dir *snapshot.Dir, o RestoreOptions) ([]VMResult, error) {
	if o.Count <= 0 {
		o.Count = 1
	}
	if o.Cold && o.Warm {
		return nil, errors.New("restore: cold and warm at once")
	}
	mem := o.memPath(dir)
	if o.Cold {
		if _, err := pagecache.Drop(mem); err != nil {
			return nil, err
		}
	}
	if o.Warm {
		if err := pagecache.Warm(mem); err != nil {
			return nil, err
		}
	}
	cfg := restoreConfig(dir, o.Accel)
	if o.MemPath != "" {
		cfg.MemPath, cfg.MemFile = o.MemPath, o.MemFile
	}
	start := time.Now()
	if o.Hooks != nil {
		o.Hooks.Configure(&cfg)
		if err := o.Hooks.Begin(ctx); err != nil {
			return nil, err
		}
	}
	results := make([]VMResult, o.Count)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = restoreOne(ctx, d, dir, cfg, o, start)
			results[i].Index = i
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

// restoreConfig is the VM configuration that restores dir: the device
// set must match the one the snapshot was taken with.
func restoreConfig(dir *snapshot.Dir, accel string) vmm.Config {
	if accel == "" {
		accel = dir.Manifest.VMM.Accel
	}
	return vmm.Config{
		MemMiB: dir.Manifest.MemMiB, MemPath: dir.MemPath(), MemFile: dir.MemFile(), Incoming: true,
		Accel: accel, FreePageReporting: dir.Manifest.FreePages == snapshot.FreePagesReport,
	}
}

// restoreOne restores and invokes one clone. Its end-to-end time counts
// from start, the restore call, which includes the policy's Begin.
func restoreOne(ctx context.Context, d vmm.Driver, dir *snapshot.Dir, cfg vmm.Config, o RestoreOptions, start time.Time) (r VMResult) {
	fail := func(err error) VMResult {
		r.Error = err.Error()
		return r
	}
	timeouts := o.Timeouts.orDefaults()
	t := time.Now()
	sctx, cancel := context.WithTimeout(ctx, timeouts.VMM)
	defer cancel()
	m, err := d.Start(sctx, cfg)
	if err != nil {
		return fail(err)
	}
	vm := newVM(m, timeouts)
	defer vm.Close(context.Background())
	r.VMMStartMs = ms(time.Since(t))
	if o.Hooks != nil {
		if err := o.Hooks.VMMStarted(sctx, m.PID()); err != nil {
			return fail(err)
		}
	}
	faults := memFileFaults(m.PID(), cfg.MemPath)
	defer faults.Close()

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

	t = time.Now()
	if err := vm.Resume(ctx); err != nil {
		return fail(err)
	}
	if err := vm.Reseed(ctx); err != nil {
		return fail(err)
	}
	res, err := vm.Invoke(ctx, o.Input)
	if err != nil {
		return fail(err)
	}
	r.ResumeToResultMs = ms(time.Since(t))
	r.GuestFnMs = float64(res.FnNs) / 1e6
	r.Checksum = res.Checksum
	r.ResultOK = o.Expected == "" || res.Checksum == o.Expected
	r.E2EMs = ms(time.Since(start))

	// Measure before the VMM exits and its counters vanish.
	pid := m.PID()
	// The memory file's count first: the VMM keeps running, and a fault
	// between the two reads must not make it exceed the process's.
	r.MemFileMajorFaults = faults.inside()
	r.MinorFaults, r.MajorFaults, _ = procFaults(pid)
	r.MemFileReadBytes, _ = procReadBytes(pid)
	r.GuestTouchedB, r.GuestPrivateB, _ = mappingUsage(pid, cfg.MemPath)
	if !r.ResultOK {
		r.Error = fmt.Sprintf("checksum %s, want %s: the restored guest computed a wrong result", res.Checksum, o.Expected)
	}
	return r
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
