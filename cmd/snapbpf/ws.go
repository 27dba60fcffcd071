package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/snapbpf/snapbpf/internal/wset"
)

// wsMergeReport is what ws merge prints under --json.
type wsMergeReport struct {
	Out         string `json:"out"`
	Common      bool   `json:"common"` // --common: the set written is the pages common to all
	Recordings  int    `json:"recordings"`
	Pages       int64  `json:"pages"` // in the set written
	UnionPages  int64  `json:"union_pages"`
	CommonPages int64  `json:"common_pages"`
}

func newWSCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "ws", Short: "Inspect and merge working-set files"}
	var asJSON bool
	show := &cobra.Command{
		Use:   "show WS",
		Short: "Describe a working set (extents in first-touch order)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := wset.Read(args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), s.Summary())
			}
			sum := s.Summary()
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d pages (%.1f MiB) in %d extents, %d touched holes (zero-filled, no I/O)\n  memory file: %s\n  source: %s\n  created: %s\n",
				args[0], sum.Pages, float64(sum.Bytes)/(1<<20), sum.ExtentCount, sum.ZeroPages, sum.Mem, sum.Source, sum.Created.Format("2006-01-02 15:04:05Z"))
			if s.Inputs > 0 {
				var parts []string
				for _, c := range sum.Counts {
					parts = append(parts, fmt.Sprintf("%d of %d: %d", c.Count, sum.Recordings, c.Pages))
				}
				fmt.Fprintf(cmd.OutOrStdout(), "  pages by how many of the %d recordings touched them: %s\n", sum.Recordings, strings.Join(parts, ", "))
			}
			return nil
		},
	}
	show.Flags().BoolVar(&asJSON, "json", false, `print {"pages","bytes","extents":[[first_page,n_pages],...]} and more`)
	var (
		out        string
		onlyCommon bool
		mergeJSON  bool
	)
	merge := &cobra.Command{
		Use:   "merge [--common] --out WS WS1 WS2 [...]",
		Short: "Union several recordings of one memory file (first-touch order of the first), or keep what they share",
		Long: `merge writes the union of several recordings of one memory file (different
inputs), in the first one's first-touch order followed by what only the later
ones touched. With --common it writes only the pages every recording touched:
the part of the working set that does not depend on the input, which a restore
with any input uses; what an input touches beyond it then faults in.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var sets []*wset.Set
			for _, p := range args {
				s, err := wset.Read(p)
				if err != nil {
					return err
				}
				sets = append(sets, s)
			}
			u, common, err := wset.Merge(sets...)
			if err != nil {
				return err
			}
			w, what := u, "union"
			if onlyCommon {
				w, what = common, "pages common to all"
			}
			if err := wset.Write(out, w); err != nil {
				return err
			}
			if mergeJSON {
				return writeJSON(cmd.OutOrStdout(), wsMergeReport{Out: out, Common: onlyCommon, Recordings: len(sets),
					Pages: w.Pages(), UnionPages: u.Pages(), CommonPages: common.Pages()})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s of %d recordings, %d pages (union %d, common to all %d)\n",
				out, what, len(sets), w.Pages(), u.Pages(), common.Pages())
			return nil
		},
	}
	merge.Flags().StringVar(&out, "out", "", "merged working set to write")
	merge.Flags().BoolVar(&onlyCommon, "common", false, "write only the pages common to all recordings")
	merge.Flags().BoolVar(&mergeJSON, "json", false, "print what was written as one JSON object")
	merge.MarkFlagRequired("out")
	cmd.AddCommand(show, merge)
	return cmd
}
