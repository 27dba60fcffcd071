package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/snapbpf/snapbpf/internal/funcvm"
	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/replay"
)

// ResultsFile is the name of the raw results in a bench's output directory.
const ResultsFile = "results.json"

// resultsFormat is the results.json format version.
const resultsFormat = 1

// Results is everything a bench measured, as stored in results.json.
type Results struct {
	Format int `json:"format"`
	// Config is the settings of the latest session.
	Config   Config    `json:"config"`
	Sessions []Session `json:"sessions"`
	// Snapshots are the preparations (create, record) the sessions did.
	Snapshots []Preparation `json:"snapshots,omitempty"`
	Runs      []Run         `json:"runs"`
}

// Session is one invocation of the bench on these results.
type Session struct {
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	Cells   int       `json:"cells"`   // cells measured in this session
	Skipped int       `json:"skipped"` // cells found finished
	Failed  int       `json:"failed"`
}

// Preparation is the creation of one snapshot and the recording of the
// working sets the bench restores it with.
type Preparation struct {
	Function  string    `json:"function"`
	FreePages string    `json:"free_pages"`
	ID        string    `json:"snapshot_id"`
	Start     time.Time `json:"start"`
	CreateMs  float64   `json:"create_ms"` // 0: an existing snapshot was reused
	// Recordings are the working sets recorded in the snapshot.
	Recordings []Recording `json:"recordings,omitempty"`
	MemMiB     int         `json:"mem_mib"`
	DataBytes  int64       `json:"mem_data_bytes"` // of the memory file, not holes
}

// Recording is one working set recorded for the bench.
type Recording struct {
	File    string  `json:"file"` // in the snapshot directory
	Input   uint64  `json:"input"`
	Ms      float64 `json:"ms"`
	Pages   int64   `json:"pages"`
	Extents int     `json:"extents"`
}

// ErrOtherResults is wrapped by the errors of results a bench cannot
// resume: another format, or another configuration.
var ErrOtherResults = errors.New("results of another bench")

// recordMs is the time all recordings of p took.
func (p Preparation) recordMs() float64 {
	var t float64
	for _, r := range p.Recordings {
		t += r.Ms
	}
	return t
}

// Run is one finished cell with everything needed to read it alone.
type Run struct {
	Key
	// Source is where the numbers come from: SourceVM (real VMs; empty in
	// results written before the replay cells) or SourceReplay.
	Source  string  `json:"source,omitempty"`
	Machine Machine `json:"machine"`
	Input   uint64  `json:"input"`
	DataMiB int     `json:"data_mib"`
	MemMiB  int     `json:"mem_mib"`
	// FreePages is the snapshot's free page mode; Cache is "cold" or "warm".
	FreePages string `json:"free_pages"`
	Cache     string `json:"cache"`
	// WSInput is the input the prefetched working set was recorded on.
	WSInput    uint64    `json:"ws_input,omitempty"`
	SnapshotID string    `json:"snapshot_id"`
	Start      time.Time `json:"start"`
	WallMs     float64   `json:"wall_ms"`
	// LoadAvg is the host's 1-minute load average when the cell started:
	// the machine is shared, and this says how much.
	LoadAvg float64 `json:"load_avg"`
	// Metrics are the cell's numbers (see the Metric constants).
	Metrics  map[string]float64    `json:"metrics"`
	VMs      []funcvm.VMResult     `json:"vms,omitempty"`
	Prefetch *policy.PrefetchStats `json:"prefetch,omitempty"`
	// Replay is a replay cell's full report (package replay).
	Replay *replay.Report `json:"replay,omitempty"`
	// Detail says how a non-VM cell was measured (the fio command line).
	Detail string `json:"detail,omitempty"`
	Error  string `json:"error,omitempty"`
}

// Metric names.
const (
	MetricE2EMs        = "e2e_ms"                // mean over the cell's VMs
	MetricE2EMaxMs     = "e2e_max_ms"            // slowest VM
	MetricGuestFnMs    = "guest_fn_ms"           // the function alone in the guest, mean over VMs
	MetricHostFnMs     = "host_fn_ms"            // the same invocation natively on the host
	MetricCacheBytes   = "mem_cache_bytes"       // memory file's page cache after the run
	MetricPrivateBytes = "mem_private_bytes"     // sum of the VMs' private guest pages
	MetricTotalBytes   = "mem_total_bytes"       // the two above: host memory for guest RAM
	MetricReadBytes    = "read_bytes"            // storage reads by the VMMs
	MetricMajorFaults  = "major_faults"          // sum over the VMs
	MetricMemFaults    = "mem_file_major_faults" // of them, in the memory file's mapping
	MetricPrefetchMs   = "prefetch_ms"           // prefetch start to all pages cached
	MetricBytes        = "bytes"                 // ExpPrefetch: bytes read
	MetricMs           = "ms"                    // ExpPrefetch: time to read them
	MetricMBps         = "mb_per_s"              // ExpPrefetch: Bytes / Ms, in 10^6 B/s
	MetricRequests     = "requests"              // ExpPrefetch: reads issued
	MetricMissedBytes  = "missed_bytes"          // ExpPrefetch, fio: requested bytes it left uncached
	// MetricTouchedPages are the data pages of the memory file the
	// function's trace on the input touches (ExpLatency, N=1), and
	// MetricUntouchedPages the data pages in the memory file's page cache
	// after the restore that it does not: read for nothing (by readahead,
	// a prefetch of pages the run did not need, or warm's whole file).
	MetricTouchedPages   = "touched_pages"
	MetricUntouchedPages = "untouched_pages"
	// MetricWSPages are the data pages of the working set a snapbpf
	// restore prefetched, and MetricWSUntouched those of them the trace
	// does not touch.
	MetricWSPages     = "ws_pages"
	MetricWSUntouched = "ws_untouched_pages"
)

// OK reports whether the run finished without error.
func (r *Run) OK() bool { return r.Error == "" }

// Load reads path; a missing file is empty results.
func Load(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &Results{Format: resultsFormat}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read results: %w", err)
	}
	var r Results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	if r.Format != resultsFormat {
		return nil, fmt.Errorf("%s: %w: results format %d, this snapbpf reads %d", path, ErrOtherResults, r.Format, resultsFormat)
	}
	return &r, nil
}

// Save writes the results to path atomically: a reader, or a bench that
// resumes after a crash, sees the old file or the new one, never a part.
func (r *Results) Save(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	return writeAtomic(path, append(b, '\n'))
}

// writeAtomic writes data to a temporary file beside path, syncs it and
// renames it over path.
func writeAtomic(path string, data []byte) (retErr error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if retErr != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Finished reports whether the cell k has a run without error.
func (r *Results) Finished(k Key) bool {
	for i := range r.Runs {
		if r.Runs[i].Key == k && r.Runs[i].OK() {
			return true
		}
	}
	return false
}

// Put stores a run, replacing an earlier run of the same cell (a failed
// attempt being retried).
func (r *Results) Put(run Run) {
	for i := range r.Runs {
		if r.Runs[i].Key == run.Key {
			r.Runs[i] = run
			return
		}
	}
	r.Runs = append(r.Runs, run)
}

// Select returns the finished runs that match exp, fn, pol and n; empty
// strings and n=0 match anything.
func (r *Results) Select(exp, fn, pol string, n int) []Run {
	var out []Run
	for _, run := range r.Runs {
		if !run.OK() || exp != "" && run.Experiment != exp || fn != "" && run.Function != fn ||
			pol != "" && run.Policy != pol || n != 0 && run.N != n {
			continue
		}
		out = append(out, run)
	}
	return out
}

// compatible reports why runs made under old cannot be mixed with runs
// made under c, if they cannot.
func compatible(old, c Config) error {
	if len(old.Functions) == 0 {
		return nil // new results
	}
	if old.Input != c.Input || old.otherInput() != c.otherInput() || old.DataMiB != c.DataMiB {
		return fmt.Errorf("%w: these were measured with input %d, other input %d and data size %d MiB (0: defaults), not %d, %d and %d",
			ErrOtherResults, old.Input, old.otherInput(), old.DataMiB, c.Input, c.otherInput(), c.DataMiB)
	}
	return nil
}
