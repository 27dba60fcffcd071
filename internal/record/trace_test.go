package record

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/funcvm"
	"github.com/snapbpf/snapbpf/internal/guest"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/testenv"
	"github.com/snapbpf/snapbpf/internal/vmm/qemu"
)

// TestRecordVM records a trace of a real VM restore (json, a small
// function) and checks it against what the kernel says about that run:
// the page-cache capture's data pages, and the VMM's major faults.
func TestRecordVM(t *testing.T) {
	testenv.NeedRoot(t, "builds a guest image, runs QEMU and loads eBPF programs")
	if _, err := exec.LookPath(qemu.DefaultBinary); err != nil {
		t.Skipf("%s not installed (apt-get install qemu-system-x86): %v", qemu.DefaultBinary, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	agent := filepath.Join(dir, "snapbpf-agent")
	build := exec.Command("go", "build", "-o", agent, "github.com/snapbpf/snapbpf/cmd/snapbpf-agent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build agent: %v\n%s", err, out)
	}
	img, err := guest.Build(ctx, guest.BuildOptions{OutDir: filepath.Join(dir, "image"), AgentPath: agent})
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	snap, _, err := funcvm.CreateSnapshot(ctx, &qemu.Driver{}, img, funcvm.CreateOptions{
		Function: "json", MemMiB: 160, Out: filepath.Join(dir, "snap"), FreePages: snapshot.FreePagesNone, Log: slog.New(slog.NewTextHandler(&log, nil)),
	})
	if err != nil {
		t.Fatalf("create snapshot: %v\n%s", err, log.String())
	}
	sum, host, err := funcvm.ExpectTimed("json", snap.Manifest.FunctionOptions["data_mib"], 1)
	if err != nil {
		t.Fatal(err)
	}
	tr, vm, err := Trace(ctx, &qemu.Driver{}, snap, TraceOptions{Input: 1, Expected: sum, HostFn: host, CrossCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	if !vm.ResultOK {
		t.Fatalf("the traced VM computed a wrong result: %+v", vm)
	}
	s := tr.Summary()
	t.Logf("%+v", s)
	if s.Pages < 500 || s.LostRecords != 0 {
		t.Fatalf("trace of %d pages, %d records lost", s.Pages, s.LostRecords)
	}
	// Every data page the trace says was first touched entered the page
	// cache: the capture saw the same pages (give or take a few touched
	// while the VMM stopped, after the trace ended).
	data := int64(s.Pages - s.HolePages)
	if c := tr.Meta.CapturedPages; c < data-16 || c > data+16 {
		t.Errorf("trace has %d data pages, capture saw %d", data, c)
	}
	// With readahead off each first touch is one major fault of the VMM
	// (counted when the result arrived: touches after it may be missing).
	if mf, n := tr.Meta.MajorFaults, int64(s.Pages-s.LatePages); mf < n-n/100-16 || mf > n*11/10+64 {
		t.Errorf("VMM major faults %d for %d first touches before the result", mf, n)
	}
	if s.Slowdown < 2 || tr.Meta.Stall.MajorNs <= tr.Meta.Stall.HoleNs {
		t.Errorf("slowdown %.1f, stall model %+v", s.Slowdown, tr.Meta.Stall)
	}
	if err := tr.Validate(); err != nil {
		t.Fatal(err)
	}
}
