package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/snapbpf/snapbpf/internal/blockdev"
	"github.com/snapbpf/snapbpf/internal/capture"
	"github.com/snapbpf/snapbpf/internal/replay/uffd"
	"github.com/snapbpf/snapbpf/internal/tracepoint"
	"github.com/snapbpf/snapbpf/internal/vmm"
	"github.com/snapbpf/snapbpf/internal/vmm/qemu"
)

// Check statuses: fail stops what Need lists from working; warn works
// with the limit Detail says.
const (
	checkOK   = "ok"
	checkWarn = "warn"
	checkFail = "fail"
)

// hostCheck is one finding of snapbpf check.
type hostCheck struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Detail string `json:"detail"`
	Need   string `json:"needed_by"`
}

type checkReport struct {
	OK     bool        `json:"ok"` // no check failed
	Home   string      `json:"home"`
	Checks []hostCheck `json:"checks"`
	// BPFAttach says how the BPF programs attach: with no tracefs or
	// debugfs, so the mounts below are for information only.
	BPFAttach string   `json:"bpf_attach"`
	Tracefs   []string `json:"tracefs_mounts"` // where tracefs is mounted, if anywhere
	Debugfs   []string `json:"debugfs_mounts"`
}

func newCheckCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check what this host supports: QEMU, acceleration, BPF capture, the kernel's tracepoints, the filesystem",
		Long: `check tries what snapbpf needs of this host, without changing it: QEMU and
its acceleration, loading the eBPF capture program and how it attaches (raw
tracepoints: tracefs and debugfs are reported but never needed), the kernel's
optional tracepoint features, the filesystem of SNAPBPF_HOME (page cache and readahead
per block device), userfaultfd for the REAP baseline, fio for the benchmark.
It exits non-zero when a check fails, naming what that stops and what to do.
Like every snapbpf command, it first puts back the read_ahead_kb of any disk
that a killed snapbpf left lowered, and reports it here.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rep := checkHost(cmd.Context(), homeDir())
			if asJSON {
				if err := writeJSON(cmd.OutOrStdout(), rep); err != nil {
					return err
				}
			} else {
				printChecks(cmd.OutOrStdout(), rep)
			}
			if !rep.OK {
				return errors.New("some checks failed")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the checks as JSON")
	return cmd
}

func checkHost(ctx context.Context, home string) *checkReport {
	rep := &checkReport{OK: true, Home: home}
	add := func(name, status, need, detail string) {
		rep.Checks = append(rep.Checks, hostCheck{Name: name, Status: status, Detail: detail, Need: need})
		rep.OK = rep.OK && status != checkFail
	}
	const vms = "snapshot, restore, record, trace, demo, bench"

	if os.Geteuid() == 0 {
		add("root", checkOK, vms, "running as root")
	} else {
		add("root", checkFail, vms, "not root: restores control readahead and QEMU's memory file, recording loads BPF; run as root")
	}

	vctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	version, err := (&qemu.Driver{}).Version(vctx)
	cancel()
	switch {
	case err != nil:
		add("qemu", checkFail, vms, err.Error())
	case !strings.HasPrefix(version, "7.2."):
		add("qemu", checkWarn, vms, fmt.Sprintf("%s %s: snapbpf is tested with QEMU 7.2 only", qemu.DefaultBinary, version))
	default:
		add("qemu", checkOK, vms, fmt.Sprintf("%s %s", qemu.DefaultBinary, version))
	}

	if vmm.DetectAccel() == "kvm" {
		add("acceleration", checkOK, vms, "KVM")
	} else {
		add("acceleration", checkWarn, vms, "no usable KVM (no vmx/svm, or /dev/kvm does not open): guests run under TCG, 5 to 30 times slower than natively")
	}

	if err := capture.Supported(); errors.Is(err, capture.ErrNoPrivilege) {
		add("bpf capture", checkFail, "record, trace", hint(err).Error())
	} else if err != nil {
		add("bpf capture", checkFail, "record, trace", fmt.Sprintf("%v; record --method mincore works without BPF (and includes readahead)", err))
	} else {
		add("bpf capture", checkOK, "record, trace", "the capture program loads and attaches")
	}
	rep.BPFAttach = tracepoint.Mechanism
	if tracefs, debugfs, err := tracepoint.Mounts(); err != nil {
		add("bpf attach", checkOK, "record, trace", fmt.Sprintf("%s (mounts unknown: %v)", tracepoint.Mechanism, err))
	} else {
		rep.Tracefs, rep.Debugfs = tracefs, debugfs
		add("bpf attach", checkOK, "record, trace", fmt.Sprintf("%s; tracefs %s, debugfs %s (not used)",
			tracepoint.Mechanism, mountList(tracefs), mountList(debugfs)))
	}
	if ks, err := capture.Kernel(); err != nil {
		add("kernel tracepoints", checkWarn, "record", err.Error())
	} else {
		var missing []string
		if !ks.ReadaheadTracepoint {
			missing = append(missing, "no readahead:page_cache_ra_order tracepoint (recordings cannot show that they hold no readahead)")
		}
		if !ks.FolioOrder {
			missing = append(missing, "no folio order readable from this kernel's struct folio (a large folio is recorded as its first page; record warns)")
		}
		if !ks.OpenEvents {
			missing = append(missing, "no sys_exit tracepoint or open syscall numbers for this architecture (recordings see no opens of the memory file)")
		}
		if len(missing) == 0 {
			add("kernel tracepoints", checkOK, "record", "readahead tracepoint, folio orders and open events present")
		} else {
			add("kernel tracepoints", checkWarn, "record", strings.Join(missing, "; "))
		}
	}

	if dir, err := existingAncestor(home); err != nil {
		add("home filesystem", checkFail, vms, err.Error())
	} else if err := capture.CheckFS(dir); err != nil {
		add("home filesystem", checkFail, vms, fmt.Sprintf("%v (SNAPBPF_HOME=%s)", err, home))
	} else if queue, err := blockdev.For(dir); err != nil {
		add("home filesystem", checkFail, vms, fmt.Sprintf("%v: snapshots need a filesystem on a block device (set SNAPBPF_HOME)", err))
	} else {
		kb, _ := queue.Get("read_ahead_kb")
		add("home filesystem", checkOK, vms, fmt.Sprintf("%s on %s, read_ahead_kb %s", dir, queue.Name(), kb))
	}

	status, detail := readaheadWindows()
	add("readahead windows", status, "restore, record", detail)

	if u, err := uffd.New(); err != nil {
		add("userfaultfd", checkWarn, "replay --policy reap, bench", err.Error())
	} else {
		u.Close()
		add("userfaultfd", checkOK, "replay --policy reap, bench", "available")
	}

	if p, err := exec.LookPath("fio"); err != nil {
		add("fio", checkWarn, "bench (prefetch figure)", "fio not found: apt-get install fio")
	} else {
		add("fio", checkOK, "bench (prefetch figure)", p)
	}
	return rep
}

// mountList describes where a filesystem is mounted.
func mountList(points []string) string {
	if len(points) == 0 {
		return "not mounted"
	}
	return "mounted at " + strings.Join(points, ", ")
}

// readaheadWindows reports what repairReadahead found at startup.
func readaheadWindows() (status, detail string) {
	found, err := startupRepair.found, startupRepair.err
	switch {
	case err != nil:
		return checkFail, fmt.Sprintf("%v; set the disk's read_ahead_kb back by hand", err)
	case len(found) > 0:
		var what []string
		for _, f := range found {
			what = append(what, f.String())
		}
		return checkWarn, "repaired: " + strings.Join(what, "; ")
	}
	return checkOK, "no disk left with readahead off by a snapbpf process"
}

// existingAncestor is path or its nearest ancestor that exists: what a
// directory not made yet will be created on.
func existingAncestor(path string) (string, error) {
	p, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(p)
		if parent == p {
			return "", fmt.Errorf("no existing directory above %s", path)
		}
		p = parent
	}
}

func printChecks(w io.Writer, r *checkReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "check\tstatus\tneeded by\tdetail")
	for _, c := range r.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Name, c.Status, c.Need, c.Detail)
	}
	tw.Flush()
}
