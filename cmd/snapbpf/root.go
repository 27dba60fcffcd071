package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
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

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "snapbpf",
		Short:         "Fast microVM snapshot restore with eBPF working-set capture and page-cache prefetch",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if why, ok := cmd.Annotations[needsRoot]; ok && os.Geteuid() != 0 {
				return fmt.Errorf("snapbpf %s needs root (%s): run it as root, e.g. with sudo", cmd.Name(), why)
			}
			repairReadahead()
			return nil
		},
	}
	root.AddCommand(newImageCmd(), newSnapshotCmd(), newRestoreCmd(), newRecordCmd(), newWSCmd(), newPrefetchCmd(), newDemoCmd(), newFunctionsCmd(), newBenchCmd(), newTraceCmd(), newReplayCmd(), newCheckCmd(), newVersionCmd())
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
func repairReadahead() {
	if os.Geteuid() != 0 {
		return
	}
	found, err := readahead.Repair()
	if err != nil {
		slog.Error("readahead: repair of a window left by another snapbpf process failed", "err", err)
	}
	startupRepair.found, startupRepair.err = found, err
}

// needsRoot annotates commands that need root, with the reason.
const needsRoot = "needs-root"

func rootOnly(why string) map[string]string { return map[string]string{needsRoot: why} }

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// progress returns where progress lines go: stderr, so stdout stays
// parseable under --json.
func progress(cmd *cobra.Command) io.Writer { return cmd.ErrOrStderr() }

func logf(w io.Writer, format string, a ...any) {
	if w != nil {
		fmt.Fprintf(w, format+"\n", a...)
	}
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
