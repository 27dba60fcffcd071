package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/replay"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/trace"
)

func newReplayCmd() *cobra.Command {
	var (
		snapDir, tracePath, policies string
		o                            replay.Options
		asJSON                       bool
	)
	cmd := &cobra.Command{
		Use:   "replay --snapshot DIR --trace TRACE --policies P[,P...]",
		Short: "Replay a page-access trace under restore policies (lazy, nora, snapbpf, faasnap, reap) and measure them",
		Long: `replay maps the snapshot's guest memory in this process the way each policy's VMM
would, touches the trace's pages in order with the recorded compute gaps between
touches, and reports completion time, time stalled on memory, faults, bytes read
and memory used (anonymous, page cache per file, total over the VMs).

Gaps are scaled by --gap-scale: 1 keeps them as the TCG guest computed, the
default 0 divides them by the compute slowdown measured when the trace was
recorded (native speed). reap and faasnap first run their record phase and
write their compact file (into --work-dir); every run starts with the memory
file and compact files out of the page cache. --scatter relocates that
fraction of the trace's non-zero pages across the memory file (fragmentation).`,
		Annotations: rootOnly("it drops page caches, and reap needs userfaultfd"),
		Args:        cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			reps, err := runReplays(cmd, snapDir, tracePath, policies, o)
			if len(reps) > 0 {
				if asJSON {
					if jerr := writeReplayJSON(cmd.OutOrStdout(), reps); jerr != nil {
						return jerr
					}
				} else {
					printReplays(cmd.OutOrStdout(), reps)
				}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&snapDir, "snapshot", "", "snapshot directory the trace was recorded on")
	f.StringVar(&tracePath, "trace", "", "trace file (snapbpf trace)")
	f.StringVar(&policies, "policies", policy.SnapBPF, fmt.Sprintf("policies, comma-separated, or all: %v", replay.Policies()))
	f.IntVar(&o.Concurrency, "concurrency", 1, "VMs restored at once from the snapshot")
	f.IntVar(&o.Runs, "rounds", 1, "timed rounds per policy (medians are reported)")
	f.Float64Var(&o.GapScale, "gap-scale", 0, "scale of the recorded compute gaps: 1 = as in the TCG guest; 0 = native speed (1/slowdown)")
	f.DurationVar(&o.VMMStart, "vmm-start", -1, "VMM process start before the state load (negative: as the traced VMM took)")
	f.DurationVar(&o.StateLoad, "state-load", -1, "VMM state load before the guest runs (negative: as the traced VMM took)")
	f.BoolVar(&o.REAPOverlap, "reap-overlap", false, "let reap's working-set read overlap the VMM start (vHive reads it first)")
	f.Float64Var(&o.Scatter, "scatter", 0, "fraction (0..1) of the trace's non-zero pages relocated at random across the memory file")
	f.Uint64Var(&o.ScatterSeed, "scatter-seed", 1, "seed of --scatter")
	f.StringVar(&o.WorkDir, "work-dir", "", "where reap and faasnap write their compact files (default: DIR/replay)")
	f.BoolVar(&o.NoHugepage, "no-hugepage", false, "lazy and snapbpf without QEMU's MADV_HUGEPAGE (as Firecracker maps memory)")
	f.BoolVar(&o.SnapBPFNoReadahead, "no-readahead", false, "snapbpf reads pages outside its working set one per fault (the paper's policy) instead of with readahead")
	f.BoolVar(&o.REAPSharedRead, "reap-shared-read", false, "reap reads its working-set file once for all VMs (default: once per VM, as vHive)")
	f.BoolVar(&o.SnapBPFHolesAnon, "snapbpf-holes-anon", false, "snapbpf maps the memory file's holes (free pages) anonymous, as the paper's free-page marking backs them; needs a VMM that maps per region")
	f.StringVar(&o.Prefetch.Engine, "prefetch-engine", "", "snapbpf's prefetch engine (default: the prefetch package's)")
	f.IntVar(&o.Prefetch.Workers, "prefetch-workers", 0, "snapbpf's prefetch concurrency (0: the engine's default)")
	f.BoolVar(&o.FaaSnapRecordNoRA, "faasnap-record-nora", false, "record faasnap's loading set with readahead off (only touched pages; FaaSnap keeps the host's readahead)")
	f.DurationVar(&o.FaaSnapScan, "faasnap-scan", 0, "interval of faasnap's mincore scans in its record run (default 1ms)")
	f.StringVar(&o.Compute, "compute", "", "spin (a busy CPU per VM) or sleep (as if each VM had its own CPU) between touches; default: spin while the VMs fit the CPUs")
	f.BoolVar(&o.IncludeLate, "include-late", false, "also replay the trace's touches after the invocation's result (to compare fault counts with a real VM)")
	f.BoolVar(&o.Verify, "verify", false, "compare every touched page with the memory file afterwards")
	f.BoolVar(&asJSON, "json", false, "print a JSON array with one report per policy (an array for one policy too)")
	cmd.MarkFlagRequired("snapshot")
	cmd.MarkFlagRequired("trace")
	aliases(cmd, map[string]string{"policy": "policies", "runs": "rounds"})
	checkFlags(cmd, func() error {
		_, err := replayPolicies(policies)
		return err
	})
	return cmd
}

// replayPolicies parses replay's --policies: names, comma-separated, or all.
func replayPolicies(list string) ([]string, error) {
	if list == "all" {
		return replay.Policies(), nil
	}
	names := strings.Split(list, ",")
	for i, name := range names {
		names[i] = strings.TrimSpace(name)
		if err := replay.CheckPolicy(names[i]); err != nil {
			return nil, fmt.Errorf("--policies: %w", err)
		}
	}
	return names, nil
}

func runReplays(cmd *cobra.Command, snapDir, tracePath, policies string, o replay.Options) ([]*replay.Report, error) {
	names, err := replayPolicies(policies)
	if err != nil {
		return nil, err
	}
	dir, err := snapshot.Open(snapDir)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	t, err := trace.Read(tracePath)
	if err != nil {
		return nil, err
	}
	if o.WorkDir == "" {
		o.WorkDir = filepath.Join(dir.Path, "replay")
	}
	if err := os.MkdirAll(o.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	o.Mem, o.SnapshotID, o.Trace, o.Log = dir.MemPath(), dir.Manifest.ID, t, logger(cmd)
	var reps []*replay.Report
	job := meter(cmd).Start("replay", len(names))
	defer job.Done()
	for _, name := range names {
		o.Policy = name
		job.Step(name)
		logger(cmd).Info("replay: replaying", "trace", tracePath, "policy", o.Policy, "vms", max(o.Concurrency, 1), "rounds", max(o.Runs, 1))
		rep, err := replay.Run(cmd.Context(), o)
		if err != nil {
			return reps, err
		}
		reps = append(reps, rep)
	}
	return reps, nil
}

func printReplays(w io.Writer, reps []*replay.Report) {
	r0 := reps[0]
	fmt.Fprintf(w, "%s input %d: %d touches of %d pages, %d VMs, gap scale %.4g (slowdown %.1fx), compute %.1f ms (%s), VMM start %.1f + state load %.1f ms, scatter %g\n",
		r0.Function, r0.Input, r0.Touches, r0.Pages, r0.Concurrency, r0.GapScale, r0.Slowdown, r0.ComputeMs, r0.Compute, r0.VMMStartMs, r0.StateLoadMs, r0.Scatter)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "policy\tcompletion_ms\tmax_ms\tstall_ms\tmajor\tminor\tuffd\tread_MiB\tanon_MiB\tcache_MiB\ttotal_MiB\t")
	for _, r := range reps {
		var cache int64
		for _, c := range r.PageCache {
			cache += c
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.0f\t%.0f\t%.0f\t%.1f\t%.1f\t%.1f\t%.1f\t\n", r.Policy, r.CompletionMs, r.MaxCompletionMs,
			r.StallMs, r.MajorFaults, r.MinorFaults, r.UffdFaults, mib(r.ReadBytes), mib(r.AnonBytes), mib(cache), mib(r.TotalBytes))
	}
	tw.Flush()
	for _, r := range reps {
		if p := r.Prepare; p != nil && p.RecordMs > 0 {
			fmt.Fprintf(w, "%s record phase: %.1f ms (%.1f stalled, %d faults, handler %.1f ms), working set %d pages in %d regions, compact file %.1f MiB written in %.0f ms\n",
				r.Policy, p.RecordMs, p.RecordStallMs, p.RecordFaults, p.RecordHandlerMs, p.WorkingSetPages, p.WorkingSetExtents, mib(p.CompactBytes), p.CompactWriteMs)
		}
		if r.Mismatches > 0 {
			fmt.Fprintf(w, "%s: %d touched pages differ from the memory file\n", r.Policy, r.Mismatches)
		}
	}
}

// writeReplayJSON prints replay's --json: always an array, one report per
// policy, however many policies.
func writeReplayJSON(w io.Writer, reps []*replay.Report) error { return writeJSON(w, reps) }

func mib(b int64) float64 { return float64(b) / (1 << 20) }
