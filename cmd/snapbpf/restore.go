package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/snapbpf/snapbpf/internal/funcvm"
	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/restore"
	"github.com/snapbpf/snapbpf/internal/snapshot"
)

// restoreReport is restore's output.
type restoreReport struct {
	Snapshot string `json:"snapshot"`
	Function string `json:"function"`
	Input    uint64 `json:"input"`
	Count    int    `json:"count"`
	Cold     bool   `json:"cold"`
	Warm     bool   `json:"warm"`
	Policy   string `json:"policy"`
	// Readahead says whether pages outside any prefetch were read with
	// Linux's readahead (lazy, or snapbpf without --no-readahead).
	Readahead bool `json:"readahead"`
	policy.PrefetchStats
	VMs []vmReport `json:"vms"`
}

// vmReport is one clone's result with the restore's policy and prefetch,
// so each entry stands on its own in a script.
type vmReport struct {
	funcvm.VMResult
	Policy string `json:"policy"`
	policy.PrefetchStats
	// HostFnMs is the same invocation run natively on the host: with
	// guest_fn_ms, the VM's compute slowdown.
	HostFnMs float64 `json:"host_fn_ms"`
}

func newRestoreCmd() *cobra.Command {
	var (
		snapDir string
		c       restore.Config
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:         "restore --snapshot DIR",
		Short:       "Restore clones of a snapshot concurrently, invoke each once and verify the results",
		Annotations: rootOnly("it runs QEMU and controls readahead of the memory file"),
		Args:        cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c.Log = logger(cmd)
			rep, err := runRestore(cmd.Context(), snapDir, c)
			// Stopped by a signal, the clones measured nothing: the
			// error says so, a table would only show zeroes.
			if rep != nil && cmd.Context().Err() == nil {
				if asJSON {
					if jerr := writeJSON(cmd.OutOrStdout(), rep); jerr != nil {
						return jerr
					}
				} else {
					printVMs(cmd.OutOrStdout(), rep)
				}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&snapDir, "snapshot", "", "snapshot directory")
	f.Uint64Var(&c.Input, "input", 1, "input seed for the invocation (a python function: its input shape, 1 or 2)")
	f.IntVar(&c.Count, "concurrency", 1, "clones restored at once")
	f.BoolVar(&c.Cold, "cold", false, "drop the memory file's cached pages first")
	f.StringVar(&c.Accel, "accel", "", "tcg or kvm (default: the one the snapshot was made with)")
	f.BoolVar(&c.Warm, "warm", false, "read the whole memory file into the page cache first")
	f.StringVar(&c.Policy, "policy", policy.Lazy, fmt.Sprintf("restore policy %v", policy.Names()))
	f.StringVar(&c.WorkingSet, "ws", "", "working set for --policy snapbpf (default: the snapshot's, from snapbpf record)")
	f.BoolVar(&asJSON, "json", false, "print one JSON object with a vms array")
	f.BoolVar(&c.PolicyOptions.NoReadahead, "no-readahead", false, "policy snapbpf: read pages outside the working set one per fault (the paper's policy, for comparison; slower than lazy on inputs the recording did not see)")
	// Readahead outside the working set became snapbpf's default; the
	// old opt-in stays accepted so scripts keep working.
	var keep bool
	f.BoolVar(&keep, "keep-readahead", false, "")
	f.MarkDeprecated("keep-readahead", "readahead outside the working set is now snapbpf's default (--no-readahead turns it off)")
	cmd.MarkFlagsMutuallyExclusive("keep-readahead", "no-readahead")
	prefetchFlags(f, "prefetch-", &c.PolicyOptions.Prefetch)
	cmd.MarkFlagRequired("snapshot")
	cmd.MarkFlagsMutuallyExclusive("cold", "warm")
	aliases(cmd, map[string]string{"count": "concurrency"})
	checkFlags(cmd, func() error {
		if c.Count < 1 {
			return fmt.Errorf("--concurrency %d: restore at least 1 clone", c.Count)
		}
		if !slices.Contains(policy.Names(), c.Policy) {
			return fmt.Errorf("--policy %q: want one of %v", c.Policy, policy.Names())
		}
		if c.PolicyOptions.NoReadahead && c.Policy != policy.SnapBPF {
			return fmt.Errorf("--no-readahead is an option of --policy %s only (policy %s)", policy.SnapBPF, c.Policy)
		}
		return checkAccel(c.Accel)
	})
	return cmd
}

// runRestore restores the snapshot in snapDir as c says, through the
// restore pipeline, and reports it. The report is nil when no clone ran.
func runRestore(ctx context.Context, snapDir string, c restore.Config) (*restoreReport, error) {
	dir, err := snapshot.Open(snapDir)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	res, err := restore.Run(ctx, restoreDriver(), dir, c)
	if res == nil {
		return nil, err
	}
	rep := &restoreReport{
		Snapshot: dir.Path, Function: dir.Manifest.Function, Input: c.Input, Count: len(res.VMs),
		Cold: c.Cold, Warm: c.Warm, Policy: res.Policy, Readahead: res.Readahead, PrefetchStats: res.Prefetch,
	}
	for _, v := range res.VMs {
		rep.VMs = append(rep.VMs, vmReport{VMResult: v, Policy: res.Policy, PrefetchStats: res.Prefetch, HostFnMs: res.HostFnMs()})
	}
	return rep, err
}

func printVMs(w io.Writer, r *restoreReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "%s (%s), input %d, policy %s, cold=%v", r.Snapshot, r.Function, r.Input, r.Policy, r.Cold)
	if r.Bytes > 0 {
		fmt.Fprintf(w, ", prefetched %.1f MiB in %.0f ms", float64(r.Bytes)/(1<<20), r.CompleteMs)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(tw, "vm\te2e_ms\tvmm_start_ms\tstate_load_ms\tresume_to_result_ms\tguest_fn_ms\tmajor_faults\ton_mem_file\tminor_faults\tread_MiB\tok\t")
	for _, v := range r.VMs {
		fmt.Fprintf(tw, "%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t%d\t%d\t%.1f\t%v\t\n", v.Index, v.E2EMs, v.VMMStartMs, v.StateLoadMs,
			v.ResumeToResultMs, v.GuestFnMs, v.MajorFaults, v.MemFileMajorFaults, v.MinorFaults, float64(v.MemFileReadBytes)/(1<<20), v.ResultOK)
	}
	tw.Flush()
	for _, v := range r.VMs {
		if v.Error != "" {
			fmt.Fprintf(w, "vm %d: %s\n", v.Index, v.Error)
		}
	}
}
