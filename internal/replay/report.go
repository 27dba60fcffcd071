package replay

import (
	"slices"

	"github.com/snapbpf/snapbpf/internal/prefetch"
)

// PrepareReport is a policy's offline work before the restores.
type PrepareReport struct {
	// Record phase (REAP: every fault through userfaultfd; FaaSnap: a run
	// with mincore scans), replaying the trace once, cold.
	RecordMs        float64 `json:"record_ms,omitempty"`
	RecordStallMs   float64 `json:"record_stall_ms,omitempty"`
	RecordFaults    int64   `json:"record_faults,omitempty"`
	RecordHandlerMs float64 `json:"record_handler_ms,omitempty"`
	RecordReadBytes int64   `json:"record_read_bytes,omitempty"`
	RecordLayers    int     `json:"record_layers,omitempty"`
	// The working or loading set.
	WorkingSetPages   int64 `json:"ws_pages"`
	WorkingSetExtents int   `json:"ws_extents"`
	// The compact file, for REAP and FaaSnap.
	CompactFile    string  `json:"compact_file,omitempty"`
	CompactBytes   int64   `json:"compact_bytes,omitempty"`
	CompactWriteMs float64 `json:"compact_write_ms,omitempty"`
	// FaaSnap's zero scan and regions.
	ZeroScanMs     float64 `json:"zero_scan_ms,omitempty"`
	OverlayRegions int     `json:"overlay_regions,omitempty"`
}

// VMResult is one VM of a run.
type VMResult struct {
	CompletionMs float64 `json:"completion_ms"` // restore start to the end of the guest's work
	StartMs      float64 `json:"start_ms"`      // restore start to the guest's first instruction
	ReadyWaitMs  float64 `json:"ready_wait_ms"` // of it, beyond the VMM's setup: the policy's own (REAP's read and install)
	ReplayMs     float64 `json:"replay_ms"`     // first touch to the end
	StallMs      float64 `json:"stall_ms"`      // inside touches, plus ReadyWaitMs
	MajorFaults  int64   `json:"major_faults"`
	MinorFaults  int64   `json:"minor_faults"`
	UffdFaults   int64   `json:"uffd_faults,omitempty"`
	Mappings     int     `json:"mappings"`
	AnonBytes    int64   `json:"anon_bytes"`
	Mismatches   int64   `json:"mismatched_pages,omitempty"`
	// Digest is the SHA-256 of the touched pages as the VM saw them, in
	// first-touch order (with Verify).
	Digest string `json:"digest,omitempty"`
}

// RunResult is one timed run of Concurrency VMs.
type RunResult struct {
	VMs []VMResult `json:"vms"`
	Measures
	Prefetch *prefetch.Stats `json:"prefetch,omitempty"`
	// Verify's totals, and the digest of the touched pages read from the
	// memory file itself (each VM's Digest must equal it).
	VerifiedPages int64  `json:"verified_pages,omitempty"`
	Mismatches    int64  `json:"mismatched_pages,omitempty"`
	FileDigest    string `json:"file_digest,omitempty"`
}

// Measures are what one run measured; a Report holds their medians.
type Measures struct {
	// Means over the VMs, and the slowest.
	CompletionMs    float64 `json:"completion_ms"`
	MaxCompletionMs float64 `json:"max_completion_ms"`
	StallMs         float64 `json:"stall_ms"`
	MajorFaults     float64 `json:"major_faults"`
	MinorFaults     float64 `json:"minor_faults"`
	UffdFaults      float64 `json:"uffd_faults"`
	// Totals over the VMs.
	ReadBytes  int64            `json:"read_bytes"`
	AnonBytes  int64            `json:"anon_bytes"`
	PageCache  map[string]int64 `json:"page_cache_bytes"`
	TotalBytes int64            `json:"total_memory_bytes"`
}

// Report is a replay's result: medians over the runs and each run.
type Report struct {
	Policy         string  `json:"policy"`
	Function       string  `json:"function"`
	Input          uint64  `json:"input"`
	Concurrency    int     `json:"concurrency"`
	GapScale       float64 `json:"gap_scale"`
	Slowdown       float64 `json:"slowdown"`
	VMMStartMs     float64 `json:"vmm_start_ms"`
	StateLoadMs    float64 `json:"state_load_ms"`
	ComputeMs      float64 `json:"compute_ms"` // the guest's compute at this scale
	Touches        int     `json:"touches"`
	Pages          int     `json:"pages"`
	Scatter        float64 `json:"scatter"`
	ScatteredPages int     `json:"scattered_pages"`
	Compute        string  `json:"compute"`

	Prepare *PrepareReport `json:"prepare,omitempty"`

	Measures         // medians over the runs
	Mismatches int64 `json:"mismatched_pages"` // summed over the runs

	Runs []RunResult `json:"runs"`
}

// summarise fills the report's medians from its runs.
func (r *Report) summarise() {
	med := func(get func(RunResult) float64) float64 {
		v := make([]float64, len(r.Runs))
		for i, run := range r.Runs {
			v[i] = get(run)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	r.CompletionMs = med(func(x RunResult) float64 { return x.CompletionMs })
	r.MaxCompletionMs = med(func(x RunResult) float64 { return x.MaxCompletionMs })
	r.StallMs = med(func(x RunResult) float64 { return x.StallMs })
	r.MajorFaults = med(func(x RunResult) float64 { return x.MajorFaults })
	r.MinorFaults = med(func(x RunResult) float64 { return x.MinorFaults })
	r.UffdFaults = med(func(x RunResult) float64 { return x.UffdFaults })
	r.ReadBytes = int64(med(func(x RunResult) float64 { return float64(x.ReadBytes) }))
	r.AnonBytes = int64(med(func(x RunResult) float64 { return float64(x.AnonBytes) }))
	r.TotalBytes = int64(med(func(x RunResult) float64 { return float64(x.TotalBytes) }))
	r.PageCache = map[string]int64{}
	for f := range r.Runs[0].PageCache {
		r.PageCache[f] = int64(med(func(x RunResult) float64 { return float64(x.PageCache[f]) }))
	}
	for _, run := range r.Runs {
		r.Mismatches += run.Mismatches
	}
}
