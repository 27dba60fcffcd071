package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/snapbpf/snapbpf/internal/prefetch"
	"github.com/snapbpf/snapbpf/internal/wset"
)

func newPrefetchCmd() *cobra.Command {
	var (
		mem, ws string
		wait    bool
		asJSON  bool
		noZero  bool
		o       prefetch.Options
	)
	cmd := &cobra.Command{
		Use:   "prefetch --mem FILE --ws WS",
		Short: "Bring a working set into a memory file's page cache",
		Long: `prefetch issues asynchronous reads of the working set's pages of FILE into the
page cache, merged into large requests, skipping holes. The holes the
recording saw touched (the set's zero extents) are filled with zeroes after
the data, which costs no I/O. Without --wait it returns once every request is
issued; with --wait, once every page is cached.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := wset.Read(ws)
			if err != nil {
				return err
			}
			// Any file, not only a snapshot's: it has no snapshot ID of
			// its own, so size and fingerprint decide.
			if err := s.CheckFile(mem, ""); err != nil {
				return err
			}
			if !noZero {
				o.Zero = s.Zero
			}
			job, err := prefetch.Start(cmd.Context(), mem, s.Extents, o)
			if err != nil {
				return err
			}
			var st prefetch.Stats
			if wait {
				st, err = job.Wait()
			} else {
				st, err = job.WaitIssued()
			}
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), st)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %.1f MiB in %d requests (%d extents) + %.1f MiB zero-filled, engine %s: issued in %.1f ms",
				mem, float64(st.Bytes)/(1<<20), st.Requests, st.Extents, float64(st.ZeroBytes)/(1<<20), st.Engine, float64(st.IssueDur.Microseconds())/1000)
			if wait {
				fmt.Fprintf(cmd.OutOrStdout(), ", complete in %.1f ms", float64(st.CompleteDur.Microseconds())/1000)
			}
			fmt.Fprintln(cmd.OutOrStdout())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&mem, "mem", "", "memory file")
	f.StringVar(&ws, "ws", "", "working-set file")
	f.BoolVar(&wait, "wait", false, "wait until every page is in the page cache")
	f.BoolVar(&asJSON, "json", false, "print statistics as JSON")
	f.BoolVar(&noZero, "no-zero", false, "do not fill the set's touched holes with zeroes")
	prefetchFlags(f, "", &o)
	cmd.MarkFlagRequired("mem")
	cmd.MarkFlagRequired("ws")
	return cmd
}

// prefetchFlags adds the flags that tune a prefetch, each name after
// prefix.
func prefetchFlags(f *pflag.FlagSet, prefix string, o *prefetch.Options) {
	f.StringVar(&o.Engine, prefix+"engine", "", fmt.Sprintf("prefetch engine %v (default %s)", prefetch.Engines(), prefetch.DefaultEngine))
	f.IntVar(&o.Workers, prefix+"workers", 0, "prefetch concurrency (0: the engine's default)")
	f.IntVar(&o.GapPages, prefix+"gap", 0, fmt.Sprintf("merge extents across gaps of up to this many pages (0: %d)", prefetch.DefaultGapPages))
	f.BoolVar(&o.OffsetOrder, prefix+"offset-order", false, "issue prefetch requests in file order, not first-touch order")
}
