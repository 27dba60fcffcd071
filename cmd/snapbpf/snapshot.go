package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/snapbpf/snapbpf/internal/catalog"
	"github.com/snapbpf/snapbpf/internal/funcvm"
	"github.com/snapbpf/snapbpf/internal/pyfn"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/vmm/qemu"
)

func newSnapshotCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "snapshot", Short: "Create and inspect function snapshots"}
	cmd.AddCommand(newSnapshotCreateCmd(), newSnapshotInspectCmd(), newZeroscanCmd())
	return cmd
}

func newSnapshotCreateCmd() *cobra.Command {
	var (
		o            funcvm.CreateOptions
		imageDirFlag string
		asJSON       bool
	)
	cmd := &cobra.Command{
		Use:         "create --function NAME --out DIR",
		Short:       "Boot a function VM, initialise the function and snapshot it",
		Annotations: rootOnly("it runs QEMU and writes the snapshot and its free-page holes"),
		Args:        cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fn, err := snapshotFunction(o)
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("image") {
				imageDirFlag = imageDir(fn.Runtime)
			}
			img, err := loadImage(imageDirFlag)
			if err != nil {
				return err
			}
			if o, err = fn.Create(o); err != nil {
				return err
			}
			o.Log, o.Progress = logger(cmd), meter(cmd)
			dir, st, err := funcvm.CreateSnapshot(cmd.Context(), vmmDriver(), img, o)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), snapshotCreateReport{dir.Describe(), st})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "snapshot %s created in %.1f s (boot %.0f ms, init %.0f ms, settle %.0f ms, save %.0f ms)\n",
				dir.Path, st.TotalMs/1000, st.BootMs, st.InitMs, st.SettleMs, st.SaveMs)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Function, "function", "", "function to snapshot (see snapbpf functions: a python function as python:NAME or python-torch:rnn, or with --runtime)")
	f.StringVar(&o.Runtime, "runtime", "", "the function runs in a language runtime: python (functions "+strings.Join(pyfn.NamesOf(pyfn.Runtime), ", ")+
		") or python-torch (those and "+strings.Join(pyfn.NamesOf(pyfn.RuntimeTorch), ", ")+"); default --image: IMAGE-RUNTIME")
	f.StringVar(&o.Out, "out", "", "snapshot directory to create")
	f.IntVar(&o.MemMiB, "mem-mib", 0, "guest RAM in MiB (default: sized for the function)")
	f.IntVar(&o.DataMiB, "data-mib", 0, "function data/model size in MiB (default: the function's)")
	f.StringVar(&o.FreePages, "free-pages", snapshot.FreePagesReport, "free guest pages at snapshot time: report (holes in the memory file, never read) or none (every page stored)")
	f.IntVar(&o.ReportOrder, "report-order", 0, "free page reporting order (2^order pages per report)")
	f.BoolVar(&o.Replace, "replace", false, "replace an existing snapshot at --out atomically")
	f.StringVar(&o.Accel, "accel", "", "tcg or kvm (default: kvm where the CPU has vmx/svm, else tcg)")
	f.StringVar(&imageDirFlag, "image", defaultImageDir(), "guest image directory (snapbpf image build; default for a runtime's function: IMAGE-RUNTIME)")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	cmd.MarkFlagRequired("function")
	cmd.MarkFlagRequired("out")
	checkFlags(cmd, func() error {
		// An empty --function is the required flag's error, a moment later.
		if o.Function != "" {
			fn, err := snapshotFunction(o)
			if err != nil {
				return err
			}
			if _, err := fn.Create(o); err != nil {
				return err
			}
		}
		switch {
		case o.MemMiB < 0:
			return fmt.Errorf("--mem-mib %d: want a size in MiB, or 0 to size the guest for the function", o.MemMiB)
		case o.DataMiB < 0:
			return fmt.Errorf("--data-mib %d: want a size in MiB, or 0 for the function's default", o.DataMiB)
		case o.FreePages != snapshot.FreePagesReport && o.FreePages != snapshot.FreePagesNone:
			return fmt.Errorf("--free-pages %q: want %s or %s", o.FreePages, snapshot.FreePagesReport, snapshot.FreePagesNone)
		case o.ReportOrder < 0:
			return fmt.Errorf("--report-order %d: want 0 or more", o.ReportOrder)
		}
		return checkAccel(o.Accel)
	})
	return cmd
}

// snapshotFunction is the function snapshot create's --function and
// --runtime name.
func snapshotFunction(o funcvm.CreateOptions) (catalog.Function, error) {
	ref := o.Function
	switch {
	case o.Runtime == "":
	case !pyfn.IsRuntime(o.Runtime):
		return catalog.Function{}, fmt.Errorf("--runtime %q: want one of %s (or none for the agent's Go functions)", o.Runtime, strings.Join(pyfn.Runtimes(), ", "))
	case strings.Contains(o.Function, ":"):
		return catalog.Function{}, fmt.Errorf("--function %q with --runtime %s: give the function's name alone", o.Function, o.Runtime)
	default:
		ref = o.Runtime + ":" + o.Function
	}
	f, err := catalog.Parse(ref)
	if err != nil {
		return f, fmt.Errorf("--function: %w", err)
	}
	return f, nil
}

func newSnapshotInspectCmd() *cobra.Command {
	var asJSON, fix bool
	cmd := &cobra.Command{
		Use:   "inspect DIR",
		Short: "Validate a snapshot as a restore would, and describe it",
		Long: `Validate a snapshot as a restore would and describe it: ownership and
modes, symbolic links, the manifest, the device state's digest, the sizes,
every working set (intact, recorded for this snapshot), and what interrupted
work left in or next to it and in the run directories. Exits non-zero when a
restore would fail. --fix first removes the leftovers whose process is gone.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if fix {
				if err := removeLeftovers(cmd, args[0]); err != nil {
					return err
				}
			}
			return inspect(cmd, args[0], asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON (problems and warnings included)")
	cmd.Flags().BoolVar(&fix, "fix", false, "remove temporary files and run directories left by processes that are gone")
	return cmd
}

// inspect prints what snapshot.Dir.Inspect finds, plus the stale run
// directories, and fails if a restore would.
func inspect(cmd *cobra.Command, path string, asJSON bool) error {
	dir, err := snapshot.Open(path)
	if err != nil {
		if asJSON {
			if jerr := writeJSON(cmd.OutOrStdout(), snapshot.Description{Path: path, Problems: []string{err.Error()}}); jerr != nil {
				return jerr
			}
		}
		return err
	}
	defer dir.Close()
	d := dir.Inspect()
	stale, err := qemu.StaleRunDirs(runDir())
	for _, p := range stale {
		d.Warnings = append(d.Warnings, fmt.Sprintf("%s: run directory of a process that is gone; snapbpf snapshot inspect --fix removes it", p))
	}
	if err != nil {
		d.Warnings = append(d.Warnings, err.Error())
	}
	if asJSON {
		if err := writeJSON(cmd.OutOrStdout(), d); err != nil {
			return err
		}
	} else {
		fmt.Fprint(cmd.OutOrStdout(), d.String())
	}
	if len(d.Problems) > 0 {
		return fmt.Errorf("snapshot %s: a restore would fail: %s", dir.Path, strings.Join(d.Problems, "; "))
	}
	return nil
}

// removeLeftovers removes what processes that are gone left in and next to
// the snapshot at path and in the run directories, saying what it removed.
func removeLeftovers(cmd *cobra.Command, path string) error {
	removed, err := snapshot.RemoveLeftovers(path)
	runs, rerr := qemu.CleanRunDirs(runDir())
	for _, p := range append(removed, runs...) {
		logger(cmd).Info("removed", "path", p)
	}
	return errors.Join(err, rerr)
}

// snapshotCreateReport is what snapshot create --json prints.
type snapshotCreateReport struct {
	Snapshot snapshot.Description `json:"snapshot"`
	Stats    funcvm.CreateStats   `json:"stats"`
}
