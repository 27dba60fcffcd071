package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/zeroscan"
)

// zeroscanReport is snapshot zeroscan's output: the scan next to what free
// page reporting left as holes when the snapshot was made.
type zeroscanReport struct {
	Snapshot     string `json:"snapshot"`
	Function     string `json:"function"`
	FreePages    string `json:"free_pages"`
	MemMiB       int    `json:"mem_mib"`
	MemDataBytes int64  `json:"mem_data_bytes"`
	MemHoleBytes int64  `json:"mem_hole_bytes"`
	*zeroscan.Result
}

func newZeroscanCmd() *cobra.Command {
	var (
		o      zeroscan.Options
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "zeroscan DIR",
		Short: "Find the all-zero pages of a snapshot's memory file by reading it (FaaSnap's method)",
		Long: `zeroscan reads a snapshot's memory file and counts the 4 KiB data pages that hold
only zeroes, as FaaSnap does before a restore, to compare with the holes free page
reporting made at snapshot time. Holes are skipped, not read. Non-zero pages are
grouped into regions; zero gaps shorter than --merge-gap pages are merged into the
regions around them (FaaSnap maps each region separately, so small gaps are not
worth their own mapping). The scan reads the file through the page cache, so it
warms the cache for a following restore; --cold drops the file's cached pages first.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := snapshot.Open(args[0])
			if err != nil {
				return err
			}
			defer dir.Close()
			res, err := zeroscan.File(dir.MemPath(), o)
			if err != nil {
				return err
			}
			m := dir.Manifest
			rep := zeroscanReport{Snapshot: dir.Path, Function: m.Function, FreePages: m.FreePages, MemMiB: m.MemMiB,
				MemDataBytes: m.MemDataBytes, MemHoleBytes: m.MemHoleBytes, Result: res}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), rep)
			}
			printZeroscan(cmd, rep)
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.Cold, "cold", false, "drop the memory file's cached pages before the scan (time includes storage reads)")
	f.IntVar(&o.MergeGapPages, "merge-gap", zeroscan.MergeGapPages, "merge zero gaps shorter than this many pages into the regions around them")
	f.BoolVar(&o.KeepRegions, "regions", false, "list the merged non-zero regions (with --json)")
	f.BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

func printZeroscan(cmd *cobra.Command, r zeroscanReport) {
	w := cmd.OutOrStdout()
	mib := func(n int64) float64 { return float64(n*pages.Size) / (1 << 20) }
	fmt.Fprintf(w, "%s (%s, %d MiB guest, free pages %s)\n", r.Snapshot, r.Function, r.MemMiB, r.FreePages)
	fmt.Fprintf(w, "holes (free page reporting): %.1f MiB; data: %.1f MiB\n",
		float64(r.MemHoleBytes)/(1<<20), float64(r.MemDataBytes)/(1<<20))
	fmt.Fprintf(w, "zero scan: %d data pages read (%.1f MiB) in %.1f ms (cold=%v): %d zero (%.1f MiB), %d non-zero (%.1f MiB)\n",
		r.DataPages, float64(r.ReadBytes)/(1<<20), r.ElapsedMs, r.Cold, r.ZeroPages, mib(r.ZeroPages), r.NonZeroPages, mib(r.NonZeroPages))
	fmt.Fprintf(w, "non-zero regions: %d raw, %d merged (gaps < %d pages) spanning %d pages (%.1f MiB)\n",
		r.RawRegions, r.MergedRegions, r.MergeGap, r.MergedPages, mib(r.MergedPages))
}
