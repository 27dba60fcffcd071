package main

import (
	"fmt"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/snapbpf/snapbpf/internal/capture"
	"github.com/snapbpf/snapbpf/internal/catalog"
	"github.com/snapbpf/snapbpf/internal/funcvm"
	"github.com/snapbpf/snapbpf/internal/guest"
	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/record"
	"github.com/snapbpf/snapbpf/internal/restore"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/stats"
)

// demoMode is one column of the demo's comparison.
type demoMode struct {
	name, policy string
	cold, warm   bool
}

var demoModes = []demoMode{
	{"warm (cached)", policy.Lazy, false, true},
	{policy.Lazy, policy.Lazy, true, false},
	{policy.NoRA, policy.NoRA, true, false},
	{policy.SnapBPF, policy.SnapBPF, true, false},
}

// newDemoCmd is the main job on the embedded default: build the guest
// image, snapshot a function, record its working set, restore it with each
// policy from a cold cache, and print a comparison.
func newDemoCmd() *cobra.Command {
	var (
		fn     string
		runs   int
		input  uint64
		outDir string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:         "demo",
		Short:       "Build the image, snapshot a function, record it, restore it with each policy, compare",
		Annotations: rootOnly("it builds the image, runs QEMU and loads eBPF"),
		Args:        cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			log := logger(cmd)
			// The recording, minutes in, needs the snapshot on a disk
			// filesystem; say so before the image and snapshot are built.
			where, err := existingAncestor(outDir)
			if err != nil {
				return fmt.Errorf("demo --out %s: %w", outDir, err)
			}
			if err := capture.CheckFS(where); err != nil {
				return fmt.Errorf("demo --out %s (SNAPBPF_HOME): %w", outDir, err)
			}
			agent, err := findAgent()
			if err != nil {
				return err
			}
			f, err := catalog.Parse(fn)
			if err != nil {
				return fmt.Errorf("--function: %w", err)
			}
			// A runtime function's image is built on first use: its root
			// filesystem takes minutes, then comes from the cache.
			img, err := buildImage(cmd, guest.BuildOptions{OutDir: imageDir(f.Runtime), AgentPath: agent}, f.Runtime, false)
			if err != nil {
				return err
			}
			snapPath := filepath.Join(outDir, f.FileName())
			log.Info("demo: creating snapshot", "path", snapPath)
			o, err := f.Create(funcvm.CreateOptions{Out: snapPath, Replace: true, FreePages: snapshot.FreePagesReport, Log: log, Progress: meter(cmd)})
			if err != nil {
				return err
			}
			dir, st, err := funcvm.CreateSnapshot(ctx, vmmDriver(), img, o)
			if err != nil {
				return err
			}
			log.Info("demo: snapshot created", "boot_ms", st.BootMs, "init_ms", st.InitMs, "total_ms", st.TotalMs)
			if !asJSON {
				fmt.Fprint(cmd.OutOrStdout(), dir.Describe().String())
			}

			log.Info("demo: recording the working set", "input", input)
			if _, err := recordSnapshot(cmd, dir.Path, []uint64{input}, 0, record.Options{}); err != nil {
				return err
			}

			rows := map[string][]vmReport{}
			for i := 0; i < runs; i++ {
				for _, m := range demoModes {
					log.Info("demo: restore", "mode", m.name, "round", i+1, "rounds", runs)
					rep, err := runRestore(ctx, dir.Path, restore.Config{Policy: m.policy, Input: input, Count: 1, Cold: m.cold, Warm: m.warm, Log: log})
					if err != nil {
						return err
					}
					rows[m.name] = append(rows[m.name], rep.VMs...)
				}
			}
			rep := demoSummary(f.Ref(), input, runs, rows)
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), rep)
			}
			printDemo(cmd, rep)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&fn, "function", "bert", "function to run (see snapbpf functions; a python function by its name, e.g. pyaes, or as python:NAME)")
	f.IntVar(&runs, "rounds", 3, "restores per policy")
	f.Uint64Var(&input, "input", 1, "input seed (a python function: its input shape, 1 or 2)")
	f.StringVar(&outDir, "out", filepath.Join(homeDir(), "demo"), "where the demo's snapshots go")
	f.BoolVar(&asJSON, "json", false, "print the comparison (medians per policy) as one JSON object")
	aliases(cmd, map[string]string{"runs": "rounds"})
	checkFlags(cmd, func() error {
		if _, err := catalog.Parse(fn); err != nil {
			return fmt.Errorf("--function: %w", err)
		}
		if runs < 1 {
			return fmt.Errorf("--rounds %d: want at least 1", runs)
		}
		return nil
	})
	return cmd
}

// demoReport is the demo's comparison, what demo --json prints.
type demoReport struct {
	Function string     `json:"function"`
	Input    uint64     `json:"input"`
	Rounds   int        `json:"rounds"`
	Policies []demoLine `json:"policies"`
}

// demoLine is one policy's medians over the rounds.
type demoLine struct {
	Name             string  `json:"name"`
	Policy           string  `json:"policy"`
	Cold             bool    `json:"cold"`
	E2EMs            float64 `json:"e2e_ms"`
	VsWarm           float64 `json:"vs_warm"`
	VMMStartMs       float64 `json:"vmm_start_ms"`
	ResumeToResultMs float64 `json:"resume_to_result_ms"`
	GuestFnMs        float64 `json:"guest_fn_ms"`
	MajorFaults      float64 `json:"major_faults"`
	MemFileFaults    float64 `json:"mem_file_major_faults"`
	ReadMiB          float64 `json:"vmm_read_mib"`
	PrefetchMiB      float64 `json:"prefetch_mib"`
	PrefetchMs       float64 `json:"prefetch_ms"`
}

func demoSummary(fn string, input uint64, rounds int, rows map[string][]vmReport) demoReport {
	rep := demoReport{Function: fn, Input: input, Rounds: rounds}
	warm := median(rows[demoModes[0].name], func(v vmReport) float64 { return v.E2EMs })
	for _, m := range demoModes {
		r := rows[m.name]
		l := demoLine{Name: m.name, Policy: m.policy, Cold: m.cold,
			E2EMs:            median(r, func(v vmReport) float64 { return v.E2EMs }),
			VMMStartMs:       median(r, func(v vmReport) float64 { return v.VMMStartMs }),
			ResumeToResultMs: median(r, func(v vmReport) float64 { return v.ResumeToResultMs }),
			GuestFnMs:        median(r, func(v vmReport) float64 { return v.GuestFnMs }),
			MajorFaults:      median(r, func(v vmReport) float64 { return float64(v.MajorFaults) }),
			MemFileFaults:    median(r, func(v vmReport) float64 { return float64(v.MemFileMajorFaults) }),
			ReadMiB:          median(r, func(v vmReport) float64 { return float64(v.MemFileReadBytes) / (1 << 20) }),
			PrefetchMiB:      median(r, func(v vmReport) float64 { return float64(v.Bytes) / (1 << 20) }),
			PrefetchMs:       median(r, func(v vmReport) float64 { return v.CompleteMs }),
		}
		if warm > 0 {
			l.VsWarm = l.E2EMs / warm
		}
		rep.Policies = append(rep.Policies, l)
	}
	return rep
}

func printDemo(cmd *cobra.Command, r demoReport) {
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "\n%s, input %d: median of %d restores each; all but warm start with the memory file out of the page cache\n", r.Function, r.Input, r.Rounds)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "policy\te2e_ms\tvs_warm\tvmm_start_ms\tresume_to_result_ms\tguest_fn_ms\tmajor_faults\ton_mem_file\tvmm_read_MiB\tprefetch_MiB\tprefetch_ms\t")
	for _, l := range r.Policies {
		fmt.Fprintf(tw, "%s\t%.0f\t%.2fx\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.1f\t%.1f\t%.0f\t\n", l.Name, l.E2EMs, l.VsWarm,
			l.VMMStartMs, l.ResumeToResultMs, l.GuestFnMs, l.MajorFaults, l.MemFileFaults, l.ReadMiB, l.PrefetchMiB, l.PrefetchMs)
	}
	tw.Flush()
}

func median[T any](rs []T, f func(T) float64) float64 {
	if len(rs) == 0 {
		return 0
	}
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	return stats.Median(v)
}
