package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/readahead"
)

// Default locations; SNAPBPF_HOME moves them all.
func homeDir() string {
	if h := os.Getenv("SNAPBPF_HOME"); h != "" {
		return h
	}
	return "/var/lib/snapbpf"
}

func defaultImageDir() string { return filepath.Join(homeDir(), "image") }

// euid is the effective user ID the privilege checks see; tests replace it
// to run commands as a user other than root.
var euid = os.Geteuid

func newRootCmd() *cobra.Command {
	var lf logFlags
	root := &cobra.Command{
		Use:           "snapbpf",
		Short:         "Fast microVM snapshot restore with eBPF working-set capture and page-cache prefetch",
		SilenceUsage:  true,
		SilenceErrors: true,
		// Cobra has checked the arguments and each command's flag values
		// (checkFlags) by now; required and grouped flags it checks only
		// after this hook, so they are checked here, before the privilege
		// check: a user who is not root and mistyped a flag is told about
		// the flag, not only to come back as root.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := cmd.ValidateRequiredFlags(); err != nil {
				return err
			}
			if err := cmd.ValidateFlagGroups(); err != nil {
				return err
			}
			l, m, err := lf.output(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			ctx := context.WithValue(cmd.Context(), loggerKey{}, l)
			cmd.SetContext(context.WithValue(ctx, meterKey{}, m))
			setDefaultLogger(l)
			if why, ok := cmd.Annotations[needsRoot]; ok && euid() != 0 {
				return fmt.Errorf("snapbpf %s needs root (%s): run it as root, e.g. with sudo", cmd.Name(), why)
			}
			repairReadahead(l)
			return nil
		},
	}
	lf.register(root.PersistentFlags())
	root.AddCommand(newImageCmd(), newSnapshotCmd(), newRestoreCmd(), newRecordCmd(), newWSCmd(), newPrefetchCmd(), newDemoCmd(), newFunctionsCmd(), newBenchCmd(), newTraceCmd(), newReplayCmd(), newCheckCmd(), newVersionCmd(), newFnCmd(), newNodesCmd(), newLoadCmd(), newServeCmd())
	return root
}

// startupRepair is what repairReadahead found, for check to report.
var startupRepair struct {
	found []readahead.Finding
	err   error
}

// repairReadahead puts back the read_ahead_kb of any disk that a snapbpf
// process killed in a readahead window left at 0 (or that a stopped one
// holds past its deadline). Every command does it first, whatever it is,
// so a disk is not left slow until the next restore happens to need it.
// Only root can change read_ahead_kb, so other users leave it to root.
func repairReadahead(log *slog.Logger) {
	if euid() != 0 {
		return
	}
	found, err := readahead.Repair()
	if err != nil {
		log.Error("readahead: repair of a window left by another snapbpf process failed", "err", err)
	}
	startupRepair.found, startupRepair.err = found, err
}

// needsRoot annotates commands that need root, with the reason.
const needsRoot = "needs-root"

func rootOnly(why string) map[string]string { return map[string]string{needsRoot: why} }

// checkFlags adds check to cmd's argument validation, which cobra runs
// before any pre-run hook, so before the privilege check. It is for checks
// of flag values alone: what needs a file or a privilege to check belongs
// in RunE.
func checkFlags(cmd *cobra.Command, check func() error) {
	args := cmd.Args
	cmd.Args = func(c *cobra.Command, a []string) error {
		if args != nil {
			if err := args(c, a); err != nil {
				return err
			}
		}
		return check()
	}
}

// checkAccel checks an --accel value.
func checkAccel(accel string) error {
	switch accel {
	case "", "tcg", "kvm":
		return nil
	}
	return fmt.Errorf("--accel %q: want tcg or kvm", accel)
}

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// checkMemFile fails before any work when the --mem file is missing or not
// a regular file (the library would only say so once it drops the cache).
func checkMemFile(path string) error {
	if fi, err := os.Stat(path); err != nil {
		return fmt.Errorf("memory file: %w; give --mem the file the command maps or reads", err)
	} else if !fi.Mode().IsRegular() {
		return fmt.Errorf("memory file %s: not a regular file; give --mem the file the command maps or reads", path)
	}
	return nil
}

// checkOutput fails before any work when the file that work ends by
// writing cannot be created, so a recording is not lost at the end.
func checkOutput(flag, path string) error {
	dir := filepath.Dir(path)
	if fi, err := os.Stat(dir); err != nil {
		return fmt.Errorf("%s %s: %w; create the directory first", flag, path, err)
	} else if !fi.IsDir() {
		return fmt.Errorf("%s %s: %s is not a directory", flag, path, dir)
	}
	if err := unix.Access(dir, unix.W_OK); err != nil {
		return fmt.Errorf("%s %s: cannot write in %s: %w", flag, path, dir, err)
	}
	return nil
}

// aliases keeps old flag names of cmd working as aliases of new ones
// (old → new). The old names are normalised to the new ones as they are
// parsed, so they appear nowhere in help, and Changed, flag groups and
// errors all speak of the new name.
func aliases(cmd *cobra.Command, oldToNew map[string]string) {
	cmd.Flags().SetNormalizeFunc(func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
		if n, ok := oldToNew[name]; ok {
			name = n
		}
		return pflag.NormalizedName(name)
	})
}
