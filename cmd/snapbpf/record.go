package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/snapbpf/snapbpf/internal/capture"
	"github.com/snapbpf/snapbpf/internal/functions"
	"github.com/snapbpf/snapbpf/internal/pyfn"
	"github.com/snapbpf/snapbpf/internal/record"
	"github.com/snapbpf/snapbpf/internal/restore"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/wset"
)

func newRecordCmd() *cobra.Command {
	var (
		snapDir, mem, out, method string
		inputList                 string
		randomInputs              int
		o                         record.Options
		window                    time.Duration
		asJSON                    bool
	)
	cmd := &cobra.Command{
		Use:   "record (--snapshot DIR | --mem FILE --out WS -- CMD [ARGS...])",
		Short: "Record the pages of a memory file a workload touches (its working set)",
		Long: `record captures, with eBPF in the kernel, which pages of a memory file enter the
page cache while a workload runs, with readahead kept off so the capture is what
the workload touched.

With --snapshot it restores the snapshot cold and invokes its function --runs
times: first under nora, then under snapbpf with the set so far, adding what
each run touched beyond the prefetch; it takes the memory file's data pages
within --margin pages of the regions those runs found pages in, and stores the
working set in the snapshot directory, for restore --policy snapbpf. With
several inputs (--input 1,2,3 or --inputs N random ones) it does that for each
and stores their union, counting for each page how many inputs touched it
(ws show prints the counts); the first input's first-touch order comes first.
The recorded VMs map a private cold copy of the memory file and only their
own page loads count, so other VMs restored from the snapshot meanwhile do not
change the recording; recordings of one snapshot take turns (--no-wait: fail
instead of waiting).
With --mem and a command it works for any program that maps or reads FILE (a
Firecracker restore script, a test program) and writes the working set to --out.

Without the privileges for BPF (root, or CAP_BPF and CAP_PERFMON) it fails; use
--method mincore to record residency after the run instead (FaaSnap's method),
which includes readahead.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			var v *recordReport
			var err error
			// Cobra has checked the flag groups: --snapshot or --mem,
			// --mem with --out, --input or --inputs.
			switch {
			case snapDir != "":
				if len(args) > 0 {
					return errors.New("record --snapshot takes no command")
				}
				if o.Runs < 1 {
					return fmt.Errorf("record: --runs %d: want at least 1", o.Runs)
				}
				switch {
				case o.Margin < 0:
					return fmt.Errorf("record: --margin %d: want 0 or more pages", o.Margin)
				case o.Margin == 0:
					o.Margin = -1 // record.Options: none
				}
				o.Method = method
				seeds, ierr := recordInputs(cmd, inputList, randomInputs)
				if ierr != nil {
					return ierr
				}
				var r *record.Report
				if r, err = recordSnapshot(cmd, snapDir, seeds, randomInputs, o); err == nil {
					v = snapshotRecordReport(r)
				}
			default:
				if len(args) == 0 {
					return errors.New("record --mem FILE needs a command after --")
				}
				if err := checkMemFile(mem); err != nil {
					return err
				}
				if err := checkOutput("--out", out); err != nil {
					return err
				}
				if window <= 0 {
					return fmt.Errorf("record: --readahead-window %v: want a positive duration", window)
				}
				if asJSON {
					// stdout is the JSON's alone: the command, which
					// capture starts with this process's os.Stdout,
					// writes to stderr instead.
					cmd.SetOut(cmd.OutOrStdout())
					saved := os.Stdout
					os.Stdout = os.Stderr
					defer func() { os.Stdout = saved }()
				}
				v, err = recordCommand(cmd, mem, out, record.CommandOptions{Method: method, ReadaheadWindow: window}, args)
			}
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), v)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&snapDir, "snapshot", "", "snapshot directory to record")
	f.StringVar(&inputList, "input", "1", fmt.Sprintf("input seeds to record, comma-separated (%d to %d; a python function: its input shapes, 1 and 2); the set is their union", uint64(functions.MinInput), uint64(functions.MaxInput)))
	f.IntVar(&randomInputs, "inputs", 0, "record this many random input seeds instead of --input (a python function: input shapes)")
	f.BoolVar(&o.NoWait, "no-wait", false, "fail at once if another recording of the snapshot is running, instead of waiting for it")
	f.BoolVar(&o.Merge, "merge", false, "union with the snapshot's existing working set (several inputs)")
	f.IntVar(&o.Runs, "runs", record.DefaultRuns, "record this many cold restores and store their union (covers run-to-run variation)")
	f.IntVar(&o.Margin, "margin", record.DefaultMargin, "also take the memory file's data pages within this many pages of the regions where runs 2.. found pages, at most 2 pages for each page they found and 10% more pages or 1 MiB, whichever is more (0: none)")
	f.StringVar(&mem, "mem", "", "memory file to watch (with a command)")
	f.StringVar(&out, "out", "", "working-set file to write (with --mem)")
	f.StringVar(&method, "method", capture.MethodEBPF, "ebpf, or mincore (no BPF needed; includes readahead)")
	f.DurationVar(&window, "readahead-window", record.DefaultReadaheadWindow, "with --mem: longest the disk's readahead stays off (for every process on it) waiting for the command to open FILE")
	f.BoolVar(&asJSON, "json", false, `print one JSON object (the --mem command's own stdout then goes to stderr), the same in both modes: mode ("snapshot" or "command"), out, method, pages, bytes, extents and more, then "snapshot" (the recording report) or "working_set" (the set written)`)
	// --snapshot DIR, or --mem FILE --out WS -- CMD; the inputs and
	// the wait are the snapshot mode's (--mem runs a command of its own).
	cmd.MarkFlagsOneRequired("snapshot", "mem")
	cmd.MarkFlagsMutuallyExclusive("snapshot", "mem")
	cmd.MarkFlagsRequiredTogether("mem", "out")
	cmd.MarkFlagsMutuallyExclusive("input", "inputs")
	for _, snapOnly := range []string{"input", "inputs", "no-wait", "merge"} {
		cmd.MarkFlagsMutuallyExclusive("mem", snapOnly)
	}
	return cmd
}

// wsSpace is the free space a recording wants for its working set: a set
// is a few KiB to a few hundred KiB (extents, not pages).
const wsSpace = 8 << 20

// recordInputs are the seeds --input lists, or nil with --inputs (the
// snapshot's function decides what its random inputs are: drawInputs).
func recordInputs(cmd *cobra.Command, list string, random int) ([]uint64, error) {
	if cmd.Flags().Changed("inputs") { // not with --input: a flag group
		if random < 1 || random > maxRecordInputs {
			return nil, fmt.Errorf("record: --inputs %d: want 1 to %d inputs", random, maxRecordInputs)
		}
		return nil, nil
	}
	var seeds []uint64
	seen := map[uint64]bool{}
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		s, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("record: --input %q: %q is not a number: give seeds %d to %d, comma-separated", list, f, uint64(functions.MinInput), uint64(functions.MaxInput))
		}
		if err := functions.CheckInput(s); err != nil {
			return nil, fmt.Errorf("record: --input %s: %w", list, err)
		}
		if seen[s] {
			return nil, fmt.Errorf("record: --input %s: input %d is listed twice", list, s)
		}
		seen[s] = true
		seeds = append(seeds, s)
	}
	if len(seeds) > maxRecordInputs {
		return nil, fmt.Errorf("record: --input %s: %d inputs, at most %d", list, len(seeds), maxRecordInputs)
	}
	return seeds, nil
}

// drawInputs are n distinct random inputs of m's function: seeds of a
// Go function, input shapes of a runtime function (which has only
// pyfn.Shapes).
func drawInputs(m snapshot.Manifest, n int) ([]uint64, error) {
	lo, hi := uint64(functions.MinInput), uint64(functions.MaxInput)
	if m.Runtime != "" {
		lo, hi = 1, pyfn.Shapes
		if n > pyfn.Shapes {
			all := make([]string, pyfn.Shapes)
			for i := range all {
				all[i] = strconv.Itoa(i + 1)
			}
			return nil, fmt.Errorf("record: --inputs %d: %s function %s has %d input shapes: record them all with --input %s", n, m.Runtime, m.Function, pyfn.Shapes, strings.Join(all, ","))
		}
	}
	seen := map[uint64]bool{}
	var seeds []uint64
	for len(seeds) < n {
		s := lo + rand.Uint64N(hi-lo+1)
		if !seen[s] {
			seen[s] = true
			seeds = append(seeds, s)
		}
	}
	return seeds, nil
}

// maxRecordInputs bounds the inputs of one recording: each costs --runs
// restores.
const maxRecordInputs = 64

func recordSnapshot(cmd *cobra.Command, snapDir string, seeds []uint64, random int, o record.Options) (*record.Report, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("record --snapshot needs root: it runs QEMU and turns readahead off for the memory file (and eBPF needs CAP_BPF, CAP_PERFMON); run it as root")
	}
	dir, err := snapshot.Open(snapDir)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	// Fail before the runs, not after them with the recording lost. The
	// recorded VMs map a private copy of the memory file's data (see
	// record.Snapshot), on the same filesystem.
	data, _, err := snapshot.MemLayout(dir.MemPath())
	if err != nil {
		return nil, err
	}
	if err := snapshot.CheckFreeSpace(dir.Path, wsSpace+data, "the working set and the recording's private copy of the memory file"); err != nil {
		return nil, err
	}
	m := dir.Manifest
	if seeds == nil {
		if seeds, err = drawInputs(m, random); err != nil {
			return nil, err
		}
	}
	for _, seed := range seeds {
		want, _, err := restore.Expected(cmd.Context(), m, seed)
		if err != nil {
			return nil, err
		}
		o.Inputs = append(o.Inputs, record.Input{Seed: seed, Expected: want})
	}
	o.Log, o.Progress = logger(cmd), meter(cmd)
	_, rep, err := record.Snapshot(cmd.Context(), vmmDriver(), dir, o)
	if err != nil {
		return nil, err
	}
	attrs := []any{"function", m.Function, "pages", rep.Pages, "mib", fmt.Sprintf("%.1f", float64(rep.Bytes)/(1<<20)), "extents", rep.Extents,
		"touched_holes", rep.ZeroPages, "method", rep.Method, "lost_events", rep.Lost, "foreign_pages", rep.ForeignPages,
		"first_e2e_ms", rep.VM.E2EMs, "copy_ms", rep.CopyMs, "record_ms", rep.RecordMs, "path", rep.Path}
	if rep.Runs > 1 {
		attrs = append(attrs, "refined_pages", rep.RefinedPages, "runs", rep.Runs, "margin_pages", rep.MarginPages)
	}
	if len(rep.Inputs) > 1 {
		attrs = append(attrs, "inputs", rep.Inputs, "input_pages", rep.InputPages)
	}
	logger(cmd).Info("record: recorded", attrs...)
	return rep, nil
}

// recordReport is what record prints under --json, in either mode: the
// fields both modes have, then those of one mode only (omitted in the
// other).
type recordReport struct {
	// Mode is "snapshot" (--snapshot) or "command" (--mem ... -- CMD).
	Mode string `json:"mode"`
	// Out is the working-set file written.
	Out               string `json:"out"`
	Method            string `json:"method"`
	IncludesReadahead bool   `json:"includes_readahead"`
	Pages             int64  `json:"pages"`
	Bytes             int64  `json:"bytes"`
	Extents           int    `json:"extents"`
	ZeroPages         int64  `json:"zero_pages"`
	Lost              uint64 `json:"lost_events"`
	NoOrder           uint64 `json:"insertions_without_order"`
	HolePagesDropped  uint64 `json:"hole_pages_dropped"`
	ForeignPages      uint64 `json:"foreign_pages"`

	// Snapshot is, with --snapshot, the recording's report: runs,
	// inputs, refined and margin pages, the first VM, times.
	Snapshot *record.Report `json:"snapshot,omitempty"`
	// WorkingSet is, with --mem, the set written (ws show --json).
	WorkingSet *wset.Summary `json:"working_set,omitempty"`
	// WindowExpired says, with --mem, the command did not open --mem
	// within --readahead-window (see the warning).
	WindowExpired bool `json:"readahead_window_expired,omitempty"`
}

// snapshotRecordReport is record --snapshot's report as record --json
// prints it.
func snapshotRecordReport(r *record.Report) *recordReport {
	return &recordReport{Mode: "snapshot", Out: r.Path, Method: r.Method, IncludesReadahead: r.IncludesReadahead,
		Pages: r.Pages, Bytes: r.Bytes, Extents: r.Extents, ZeroPages: r.ZeroPages, Lost: r.Lost, NoOrder: r.NoOrder,
		HolePagesDropped: r.HolePagesDropped, ForeignPages: r.ForeignPages, Snapshot: r}
}

func recordCommand(cmd *cobra.Command, mem, out string, o record.CommandOptions, argv []string) (*recordReport, error) {
	c, runErr := record.Command(cmd.Context(), mem, argv, o)
	if c == nil {
		return nil, runErr
	}
	if runErr != nil && !errors.Is(runErr, capture.ErrLostEvents) {
		// The command failed: say so, but keep what it touched.
		logger(cmd).Warn("record: the command failed; keeping what it touched", "err", runErr)
	} else if runErr != nil {
		return nil, runErr
	}
	id, err := wset.IdentifyFile(mem, "")
	if err != nil {
		return nil, err
	}
	set := c.WorkingSet(0, id, fmt.Sprintf("record --mem %s method=%s: %v", mem, c.Method, argv))
	if c.ForeignPages > 0 {
		logger(cmd).Info("record: left out pages that processes outside the command's process tree brought into the cache meanwhile", "pages", c.ForeignPages, "processes", c.ForeignProcesses, "mem", mem)
	}
	if c.UnattributedPages > 0 {
		logger(cmd).Warn("record: some of those pages came from processes that exited before they could be traced to the command: a short-lived child of the command would be one", "pages", c.UnattributedPages)
	}
	if err := wset.Write(out, set); err != nil {
		return nil, err
	}
	if c.Method == capture.MethodMincore {
		logger(cmd).Info("record: this capture includes readahead, not only the pages the command touched", "method", c.Method)
	}
	for _, w := range c.Warnings() {
		logger(cmd).Warn("record: capture limit", "warning", w)
	}
	logger(cmd).Info("record: wrote working set", "path", out, "pages", set.Pages(), "extents", len(set.Extents))
	sum := set.Summary()
	return &recordReport{Mode: "command", Out: out, Method: c.Method, IncludesReadahead: c.IncludesReadahead,
		Pages: sum.Pages, Bytes: sum.Bytes, Extents: sum.ExtentCount, ZeroPages: sum.ZeroPages, Lost: c.Lost,
		NoOrder: c.NoOrder, HolePagesDropped: c.HolePagesDropped, ForeignPages: c.ForeignPages,
		WorkingSet: &sum, WindowExpired: c.ReadaheadWindowExpired > 0}, nil
}
