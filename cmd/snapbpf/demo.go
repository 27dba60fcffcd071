package main

import (
	"fmt"
	"path/filepath"
	"sort"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/snapbpf/snapbpf/internal/functions"
	"github.com/snapbpf/snapbpf/internal/funcvm"
	"github.com/snapbpf/snapbpf/internal/guest"
	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/vmm/qemu"
)

// newDemoCmd is the main job on the embedded default: build the guest
// image, snapshot a function, restore it cold and warm, print a table.
func newDemoCmd() *cobra.Command {
	var (
		fn     string
		runs   int
		input  uint64
		outDir string
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Build the image, snapshot a function, restore it cold and warm, compare",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			log := progress(cmd)
			agent, err := findAgent()
			if err != nil {
				return err
			}
			img, err := guest.Build(ctx, guest.BuildOptions{OutDir: defaultImageDir(), AgentPath: agent, Log: log})
			if err != nil {
				return err
			}
			snapPath := filepath.Join(outDir, fn)
			logf(log, "creating snapshot %s", snapPath)
			dir, st, err := funcvm.CreateSnapshot(ctx, &qemu.Driver{}, img, funcvm.CreateOptions{
				Function: fn, MemMiB: functions.MinGuestMiB(fn, functions.Options{}), Out: snapPath, Replace: true,
				FreePages: snapshot.FreePagesReport, Log: log,
			})
			if err != nil {
				return err
			}
			logf(log, "snapshot: boot %.0f ms, init %.0f ms, total %.1f s", st.BootMs, st.InitMs, st.TotalMs/1000)
			fmt.Fprint(cmd.OutOrStdout(), dir.Describe().String())

			rows := map[string][]funcvm.VMResult{}
			for i := 0; i < runs; i++ {
				for _, mode := range []string{"cold", "warm"} {
					logf(log, "restore %s %d/%d", mode, i+1, runs)
					rep, err := restore(cmd, dir.Path, policy.Lazy, "", funcvm.RestoreOptions{Input: input, Count: 1, Cold: mode == "cold", Warm: mode == "warm"})
					if err != nil {
						return err
					}
					for _, v := range rep.VMs {
						rows[mode] = append(rows[mode], v.VMResult)
					}
				}
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "\n%s: median of %d restores (input %d)\n", fn, runs, input)
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "mode\te2e_ms\tvmm_start_ms\tstate_load_ms\tresume_to_result_ms\tguest_fn_ms\tmajor_faults\tread_MiB\t")
			for _, mode := range []string{"warm", "cold"} {
				r := rows[mode]
				fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.0f\t%.1f\t\n", mode,
					median(r, func(v funcvm.VMResult) float64 { return v.E2EMs }),
					median(r, func(v funcvm.VMResult) float64 { return v.VMMStartMs }),
					median(r, func(v funcvm.VMResult) float64 { return v.StateLoadMs }),
					median(r, func(v funcvm.VMResult) float64 { return v.ResumeToResultMs }),
					median(r, func(v funcvm.VMResult) float64 { return v.GuestFnMs }),
					median(r, func(v funcvm.VMResult) float64 { return float64(v.MajorFaults) }),
					median(r, func(v funcvm.VMResult) float64 { return float64(v.MemFileReadBytes) / (1 << 20) }))
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&fn, "function", "json", "function to run")
	f.IntVar(&runs, "runs", 3, "restores per mode")
	f.Uint64Var(&input, "input", 1, "input seed")
	f.StringVar(&outDir, "out", filepath.Join(homeDir(), "demo"), "where the demo's snapshots go")
	return cmd
}

func median(rs []funcvm.VMResult, f func(funcvm.VMResult) float64) float64 {
	if len(rs) == 0 {
		return 0
	}
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
