package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/snapbpf/snapbpf/internal/capture"
	"github.com/snapbpf/snapbpf/internal/funcvm"
	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/wset"
)

func newRecordCmd() *cobra.Command {
	var (
		snapDir, mem, out, method string
		o                         policy.RecordOptions
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
working set in the snapshot directory, for restore --policy snapbpf.
With --mem and a command it works for any program that maps or reads FILE (a
Firecracker restore script, a test program) and writes the working set to --out.

Without the privileges for BPF (root, or CAP_BPF and CAP_PERFMON) it fails; use
--method mincore to record residency after the run instead (FaaSnap's method),
which includes readahead.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			var v any
			var err error
			switch {
			case snapDir != "" && mem == "":
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
					o.Margin = -1 // RecordOptions: none
				}
				o.Method = method
				v, err = recordSnapshot(cmd, snapDir, o)
			case mem != "" && snapDir == "":
				if out == "" || len(args) == 0 {
					return errors.New("record --mem FILE needs --out WS and a command after --")
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
				v, err = recordCommand(cmd, mem, out, capture.CommandOptions{Method: method, ReadaheadWindow: window}, args)
			default:
				return errors.New("record: give either --snapshot DIR, or --mem FILE --out WS -- CMD")
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
	f.Uint64Var(&o.Input, "input", 1, "input seed for the recorded invocation")
	f.BoolVar(&o.Merge, "merge", false, "union with the snapshot's existing working set (several inputs)")
	f.IntVar(&o.Runs, "runs", policy.DefaultRecordRuns, "record this many cold restores and store their union (covers run-to-run variation)")
	f.IntVar(&o.Margin, "margin", policy.DefaultMargin, "also take the memory file's data pages within this many pages of the regions where runs 2.. found pages, up to 10% more pages or 1 MiB, whichever is more (0: none)")
	f.StringVar(&mem, "mem", "", "memory file to watch (with a command)")
	f.StringVar(&out, "out", "", "working-set file to write (with --mem)")
	f.StringVar(&method, "method", capture.MethodEBPF, "ebpf, or mincore (no BPF needed; includes readahead)")
	f.DurationVar(&window, "readahead-window", capture.DefaultReadaheadWindow, "with --mem: longest the disk's readahead stays off (for every process on it) waiting for the command to open FILE")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

// wsSpace is the free space a recording wants for its working set: a set
// is a few KiB to a few hundred KiB (extents, not pages).
const wsSpace = 8 << 20

func recordSnapshot(cmd *cobra.Command, snapDir string, o policy.RecordOptions) (*policy.RecordReport, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("record --snapshot needs root: it runs QEMU and turns readahead off for the memory file (and eBPF needs CAP_BPF, CAP_PERFMON); run it as root")
	}
	dir, err := snapshot.Open(snapDir)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	// Fail before the runs, not after them with the recording lost.
	if err := snapshot.CheckFreeSpace(dir.Path, wsSpace, "the working set"); err != nil {
		return nil, err
	}
	m := dir.Manifest
	if o.Expected, err = funcvm.Expect(m.Function, m.FunctionOptions["data_mib"], o.Input); err != nil {
		return nil, err
	}
	_, rep, err := policy.Record(cmd.Context(), vmmDriver(), dir, o, progress(cmd))
	if err != nil {
		return nil, err
	}
	refined := ""
	if rep.Runs > 1 {
		refined = fmt.Sprintf("; %d added by runs 2-%d, %d around them", rep.RefinedPages, rep.Runs, rep.MarginPages)
	}
	fmt.Fprintf(progress(cmd), "recorded %s: %d pages (%.1f MiB%s) in %d extents and %d touched holes, method %s, %d lost events; first invoke e2e %.0f ms; stored in %s\n",
		m.Function, rep.Pages, float64(rep.Bytes)/(1<<20), refined, rep.Extents, rep.ZeroPages, rep.Method, rep.Lost, rep.VM.E2EMs, rep.Path)
	return rep, nil
}

// commandRecord is what record --mem prints under --json.
type commandRecord struct {
	Out               string       `json:"out"`
	Method            string       `json:"method"`
	IncludesReadahead bool         `json:"includes_readahead"`
	Lost              uint64       `json:"lost_events"`
	NoOrder           uint64       `json:"insertions_without_order"`
	HolePagesDropped  uint64       `json:"hole_pages_dropped"`
	Summary           wset.Summary `json:"working_set"`
	// WindowExpired says the command did not open --mem within
	// --readahead-window (see the warning).
	WindowExpired bool `json:"readahead_window_expired"`
}

func recordCommand(cmd *cobra.Command, mem, out string, o capture.CommandOptions, argv []string) (*commandRecord, error) {
	c, runErr := capture.RecordCommand(cmd.Context(), mem, argv, o)
	if c == nil {
		return nil, runErr
	}
	if runErr != nil && !errors.Is(runErr, capture.ErrLostEvents) {
		// The command failed: say so, but keep what it touched.
		fmt.Fprintf(progress(cmd), "warning: %v\n", runErr)
	} else if runErr != nil {
		return nil, runErr
	}
	id, err := wset.IdentifyFile(mem, "")
	if err != nil {
		return nil, err
	}
	set := c.WorkingSet(0, id, fmt.Sprintf("record --mem %s method=%s: %v", mem, c.Method, argv))
	if err := wset.Write(out, set); err != nil {
		return nil, err
	}
	if c.Method == capture.MethodMincore {
		fmt.Fprintf(progress(cmd), "note: this capture (%s) includes readahead, not only the pages the command touched\n", c.Method)
	}
	for _, w := range c.Warnings() {
		fmt.Fprintf(progress(cmd), "warning: %s\n", w)
	}
	fmt.Fprintf(progress(cmd), "wrote %s: %d pages in %d extents\n", out, set.Pages(), len(set.Extents))
	return &commandRecord{Out: out, Method: c.Method, IncludesReadahead: c.IncludesReadahead, Lost: c.Lost,
		NoOrder: c.NoOrder, HolePagesDropped: c.HolePagesDropped, Summary: set.Summary(), WindowExpired: c.ReadaheadWindowExpired > 0}, nil
}
