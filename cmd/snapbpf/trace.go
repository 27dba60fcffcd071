package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/snapbpf/snapbpf/internal/funcvm"
	"github.com/snapbpf/snapbpf/internal/record"
	"github.com/snapbpf/snapbpf/internal/restore"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/trace"
)

// traceReport is what trace prints under --json.
type traceReport struct {
	Out     string          `json:"out"`
	Summary trace.Summary   `json:"trace"`
	VM      funcvm.VMResult `json:"vm"`
}

func newTraceCmd() *cobra.Command {
	var (
		snapDir, out string
		o            record.TraceOptions
		crossCheck   bool
		asJSON       bool
	)
	cmd := &cobra.Command{
		Use:   "trace --snapshot DIR --out TRACE",
		Short: "Record every first touch of a guest page after a restore (a page-access trace for replay)",
		Long: `trace restores the snapshot once with the memory file cold and readahead off,
invokes its function and records, with eBPF on the VMM's page faults, every first
touch of a guest page: its page, its time since the guest resumed, read or write,
and how long the host took to serve it. Holes of the memory file are included.

The trace file is versioned and checksummed; snapbpf replay replays it under each
restore policy. trace show prints a trace's summary.`,
		Annotations: rootOnly("it runs QEMU, turns readahead off for the memory file and loads eBPF programs"),
		Args:        cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput("--out", out); err != nil {
				return err
			}
			o.CrossCheck = crossCheck
			rep, err := recordTrace(cmd, snapDir, out, o)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), rep)
			}
			printTraceSummary(cmd.OutOrStdout(), out, rep.Summary)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&snapDir, "snapshot", "", "snapshot directory to trace")
	f.StringVar(&out, "out", "", "trace file to write")
	f.Uint64Var(&o.Input, "input", 1, "input seed for the traced invocation (a python function: its input shape, 1 or 2)")
	f.StringVar(&o.Accel, "accel", "", "tcg or kvm (default: the one the snapshot was made with)")
	f.BoolVar(&crossCheck, "cross-check", true, "also capture page-cache insertions and store the count, to compare")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	cmd.MarkFlagRequired("snapshot")
	cmd.MarkFlagRequired("out")
	checkFlags(cmd, func() error { return checkAccel(o.Accel) })
	cmd.AddCommand(newTraceShowCmd())
	return cmd
}

func newTraceShowCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show TRACE",
		Short: "Print a trace's summary",
		Args:  cobra.ExactArgs(1),
		// The parent's root check does not apply to reading a file.
		Annotations: map[string]string{},
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := trace.Read(args[0])
			if err != nil {
				return err
			}
			s := t.Summary()
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), traceShowReport{s, t.Meta})
			}
			printTraceSummary(cmd.OutOrStdout(), args[0], s)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the summary and metadata as JSON")
	return cmd
}

// hostRuns is how many times the invocation runs natively for its time.
const hostRuns = 3

func recordTrace(cmd *cobra.Command, snapDir, out string, o record.TraceOptions) (*traceReport, error) {
	dir, err := snapshot.Open(snapDir)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	o.Expected, o.HostFn, err = restore.ExpectedMedian(cmd.Context(), dir.Manifest, o.Input, hostRuns)
	if err != nil {
		return nil, err
	}
	o.Log = logger(cmd)
	t, vm, err := record.Trace(cmd.Context(), vmmDriver(), dir, o)
	if err != nil {
		return nil, err
	}
	if err := trace.Write(out, t); err != nil {
		return nil, err
	}
	s := t.Summary()
	if t.Meta.CapturedPages >= 0 {
		data := s.Pages - s.HolePages
		if int64(data) != t.Meta.CapturedPages {
			logger(cmd).Info("trace: data pages differ from the page-cache capture", "trace_pages", data, "captured_pages", t.Meta.CapturedPages)
		}
	}
	return &traceReport{Out: out, Summary: s, VM: *vm}, nil
}

func printTraceSummary(w io.Writer, path string, s trace.Summary) {
	fmt.Fprintf(w, "%s: %s input %d: %d pages touched (%d read, %d written first, %d later written), %d holes, %d major in the recording, %d after the result\n",
		path, s.Function, s.Input, s.Pages, s.ReadPages, s.WritePages, s.Upgrades, s.HolePages, s.MajorPages, s.LatePages)
	fmt.Fprintf(w, "  span %.1f ms after resume, %.1f ms of it serving faults (modelled); guest fn %.1f ms, host fn %.2f ms, compute slowdown %.1fx\n",
		s.DurationMs, s.StallMs, s.GuestFnMs, s.HostFnMs, s.Slowdown)
	if s.LostRecords > 0 {
		fmt.Fprintf(w, "  %d fault records lost: the trace is incomplete\n", s.LostRecords)
	}
}

// traceShowReport is what trace show --json prints.
type traceShowReport struct {
	Summary trace.Summary `json:"trace"`
	Meta    trace.Meta    `json:"meta"`
}
