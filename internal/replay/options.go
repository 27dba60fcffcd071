package replay

import (
	"log/slog"
	"time"

	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/prefetch"
	"github.com/snapbpf/snapbpf/internal/trace"
)

// The baselines a replay has besides the restore policies of package
// policy (policy.Names).
const (
	FaaSnap = "faasnap"
	REAP    = "reap"
)

// Policies lists the policies a replay can use: the restore policies,
// then the baselines.
func Policies() []string { return append(policy.Names(), FaaSnap, REAP) }

// Options describe a replay.
type Options struct {
	// Mem is the memory file; SnapshotID its snapshot's ID (may be empty
	// for a file outside a snapshot).
	Mem        string
	SnapshotID string
	Trace      *trace.Trace
	Policy     string
	// Concurrency is how many VMs restore at once from the memory file.
	Concurrency int
	// Runs repeats the timed part (cold each time) for medians.
	Runs int
	// GapScale multiplies the trace's compute gaps: 1 keeps them as the
	// TCG guest computed; 0 means native speed, 1/the trace's slowdown.
	GapScale float64
	// VMMStart and StateLoad are the VMM's own setup between the restore
	// starting and the guest's first touch: the process starting, then
	// the device state loading. Policies overlap them as their code does
	// (see timeline). Negative: as the trace's VMM took them.
	VMMStart  time.Duration
	StateLoad time.Duration
	// REAPOverlap lets REAP's working-set read overlap the VMM start;
	// vHive reads it before it starts loading the snapshot.
	REAPOverlap bool
	// Scatter moves this fraction (0..1) of the trace's non-zero pages to
	// random places in the memory file (see scatter); ScatterSeed seeds it.
	Scatter     float64
	ScatterSeed uint64
	// WorkDir holds the compact files REAP and FaaSnap make.
	WorkDir string
	// NoHugepage leaves out QEMU's MADV_HUGEPAGE in policies lazy and
	// snapbpf (what Firecracker does).
	NoHugepage bool
	// SnapBPFNoReadahead has snapbpf read the pages outside its working
	// set one per fault, as nora (policy.Options.NoReadahead), instead of
	// with readahead as lazy.
	SnapBPFNoReadahead bool
	// SnapBPFHolesAnon has snapbpf's VMM map the memory file's holes (free
	// guest pages at snapshot time, known from SEEK_HOLE without reading
	// anything) as anonymous memory, and only the data from the file: what
	// the paper's free-page marking achieves for them, on a VMM that maps
	// guest memory per region as FaaSnap's does. QEMU maps the whole file.
	SnapBPFHolesAnon bool
	// Prefetch tunes snapbpf's prefetch.
	Prefetch prefetch.Options
	// FaaSnapScan is the interval of FaaSnap's mincore scans in its record
	// run (0: DefaultFaaSnapScan).
	FaaSnapScan time.Duration
	// FaaSnapRecordNoRA records FaaSnap's loading set with readahead off:
	// FaaSnap at its best, its mincore scans seeing only touched pages
	// (FaaSnap itself keeps the host's readahead, 8 MiB on these hosts).
	FaaSnapRecordNoRA bool
	// REAPSharedRead reads REAP's working-set file once for all VMs (as
	// FaaSnap's port of REAP can) instead of once per VM (vHive).
	REAPSharedRead bool
	// Compute is ComputeSpin or ComputeSleep; empty: spin while the VMs
	// fit the host's CPUs, sleep when they do not.
	Compute string
	// IncludeLate also replays the touches the traced VMM made after the
	// invocation's result (trace.FlagLate).
	IncludeLate bool
	// Verify compares every touched page of every VM with the memory
	// file afterwards.
	Verify bool
	// Log receives diagnostics; nil discards them.
	Log *slog.Logger
}
