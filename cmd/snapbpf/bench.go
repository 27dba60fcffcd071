package main

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/snapbpf/snapbpf/internal/bench"
	"github.com/snapbpf/snapbpf/internal/guest"
)

func newBenchCmd() *cobra.Command {
	var (
		c                  bench.Config
		full, reportOnly   bool
		asJSON             bool
		imageDir, agentBin string
	)
	c = bench.Reduced()
	cmd := &cobra.Command{
		Use:   "bench [--functions ...] [--policies ...] [--rounds N] [--out DIR]",
		Short: "Measure restore policies on real microVMs and with the replay harness: results.json, report.md and plots",
		Long: `bench snapshots each function, restores it under each policy cold (and warm, the
floor) with N clones at once, and measures latency and host memory; it also
compares the prefetch's throughput with fio on the same requests. It then
records one first-touch trace per function on a real VM (kept in the snapshot
directory) and replays it at native speed under lazy, nora, snapbpf, faasnap,
reap and warm at every N, and with a fraction of its pages scattered
(fragmentation, --scatter). Each run says its source: vm or replay.

Each finished cell (experiment, function, policy, N, run) is saved in
DIR/results.json at once, so an interrupted bench started again with the same
--out resumes where it stopped; failed cells are retried. At the end it writes
DIR/report.md and the figures as SVG and PNG.

Functions are named as snapbpf functions lists them: the agent's Go functions
(json) and the python image's (python:json; the image is built on first use).
The defaults are the reduced set (json, bert, alloc, python:pyaes; 3 rounds; N 1,
2, 4; scatter 0, 0.5, 1); --full is every function, Go and python, 5 rounds, N up
to 8, scatter 0, 0.25, 0.5, 1.
report.md gives both sets' expected times on the machine measured. Needs root
(BPF, page cache control, userfaultfd).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if full {
				applyFull(cmd, &c)
			}
			c.Log, c.Progress = logger(cmd), meter(cmd)
			if reportOnly {
				res, err := bench.Load(filepath.Join(c.Out, bench.ResultsFile))
				if err != nil {
					return err
				}
				if len(res.Runs) == 0 {
					return fmt.Errorf("no results in %s to report", c.Out)
				}
				if err := bench.WriteReport(res, c.Out); err != nil {
					return err
				}
				return printBenchSummary(cmd, asJSON, c.Out, res)
			}
			// Wrong flags fail now, not after the image build.
			if err := c.Validate(); err != nil {
				return fmt.Errorf("bench: %w", err)
			}
			if euid() != 0 {
				return errors.New("snapbpf bench needs root (it runs QEMU, loads eBPF and drops the memory files' page cache): run it as root, or use --report-only")
			}
			img, err := benchImage(cmd, imageDir, agentBin, "")
			if err != nil {
				return err
			}
			c.Image, c.Images = img, map[string]*guest.Image{}
			for _, rt := range c.Runtimes() {
				if c.Images[rt], err = benchImage(cmd, imageDir+"-"+rt, agentBin, rt); err != nil {
					return err
				}
			}
			c.Driver = vmmDriver()
			res, err := bench.Execute(cmd.Context(), c)
			if res != nil {
				if perr := printBenchSummary(cmd, asJSON, c.Out, res); perr != nil {
					return errors.Join(err, perr)
				}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&c.Functions, "functions", c.Functions, "functions to measure (see snapbpf functions: json, python:json, ...)")
	f.StringSliceVar(&c.Policies, "policies", c.Policies, fmt.Sprintf("restore policies of %v", bench.Policies()))
	f.IntSliceVar(&c.Concurrency, "concurrency", c.Concurrency, "numbers of VMs restored at once")
	f.IntSliceVar(&c.ReplayConcurrency, "replay-concurrency", nil, "numbers of VMs replayed at once (default: --concurrency)")
	f.IntVar(&c.Runs, "rounds", c.Runs, "rounds (repeated runs) per cell")
	f.Float64SliceVar(&c.ScatterFractions, "scatter", c.ScatterFractions, "fractions of the trace's pages scattered in experiment scatter")
	f.StringSliceVar(&c.Experiments, "experiments", c.Experiments, fmt.Sprintf("experiments of %v", bench.Experiments()))
	f.Uint64Var(&c.Input, "input", c.Input, "input of every measured invocation, and of snapbpf's working set")
	f.Uint64Var(&c.OtherInput, "other-input", c.OtherInput, "input the working set of policy snapbpf-other is recorded on (0: --input + 1)")
	f.IntVar(&c.DataMiB, "data-mib", 0, "data size of every function in MiB (default: each function's)")
	f.StringArrayVar(&c.Notes, "note", nil, "a note for the report, e.g. what else ran on the machine (repeatable)")
	f.StringVar(&c.Out, "out", filepath.Join(homeDir(), "bench", "results"), "directory for results.json, report.md and plots")
	f.StringVar(&c.SnapshotDir, "snapshots", filepath.Join(homeDir(), "bench", "snapshots"), "directory for the bench's snapshots (reused while they match)")
	f.StringVar(&imageDir, "image", defaultImageDir(), "guest image directory (rebuilt from --agent when it is found; a runtime's: IMAGE-RUNTIME)")
	f.StringVar(&agentBin, "agent", "", "static snapbpf-agent binary (default: next to snapbpf)")
	f.BoolVar(&full, "full", false, "the full set: every function, Go and python, 5 rounds, N 1, 2, 4, 8 (flags given explicitly still win)")
	f.BoolVar(&reportOnly, "report-only", false, "only render report.md and the plots from DIR/results.json")
	f.BoolVar(&asJSON, "json", false, "print the final summary (files written, cells measured, skipped and failed) as one JSON object")
	aliases(cmd, map[string]string{"runs": "rounds"})
	return cmd
}

// applyFull switches to the full set, keeping flags given explicitly.
func applyFull(cmd *cobra.Command, c *bench.Config) {
	full := bench.Full()
	f := cmd.Flags()
	if !f.Changed("functions") {
		c.Functions = full.Functions
	}
	if !f.Changed("concurrency") {
		c.Concurrency = full.Concurrency
	}
	if !f.Changed("rounds") {
		c.Runs = full.Runs
	}
	if !f.Changed("scatter") {
		c.ScatterFractions = full.ScatterFractions
	}
}

// benchImage builds the guest image of runtime ("": the Go functions')
// from the agent when the agent is found, as demo does, so snapshots run
// the agent of this build; without an agent it uses the image already
// there.
func benchImage(cmd *cobra.Command, imageDir, agentBin, runtime string) (*guest.Image, error) {
	if agentBin == "" {
		p, err := findAgent()
		if err != nil {
			img, lerr := loadImage(imageDir)
			if lerr != nil {
				return nil, errors.Join(err, lerr)
			}
			return img, nil
		}
		agentBin = p
	}
	return buildImage(cmd, guest.BuildOptions{OutDir: imageDir, AgentPath: agentBin}, runtime, false)
}

// benchSummary is bench's final summary, what bench --json prints.
type benchSummary struct {
	Out     string `json:"out"`
	Results string `json:"results"` // results.json
	Report  string `json:"report"`  // report.md
	Runs    int    `json:"runs"`    // measured runs in results.json, all sessions
	// Cells, Skipped and Failed are the latest session's (0 with
	// --report-only when no session ran).
	Cells   int `json:"cells"`
	Skipped int `json:"skipped"`
	Failed  int `json:"failed"`
}

func printBenchSummary(cmd *cobra.Command, asJSON bool, out string, res *bench.Results) error {
	s := benchSummary{Out: out, Results: filepath.Join(out, bench.ResultsFile), Report: filepath.Join(out, bench.ReportFile), Runs: len(res.Runs)}
	if n := len(res.Sessions); n > 0 {
		last := res.Sessions[n-1]
		s.Cells, s.Skipped, s.Failed = last.Cells, last.Skipped, last.Failed
	}
	if asJSON {
		return writeJSON(cmd.OutOrStdout(), s)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s: %d runs; this session %d cells measured, %d found finished, %d failed; report %s\n",
		s.Results, s.Runs, s.Cells, s.Skipped, s.Failed, s.Report)
	return nil
}
