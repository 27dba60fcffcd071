package serve

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/snapbpf/snapbpf/api"
	"github.com/snapbpf/snapbpf/internal/catalog"
	"github.com/snapbpf/snapbpf/internal/funcvm"
	"github.com/snapbpf/snapbpf/internal/guest"
	"github.com/snapbpf/snapbpf/internal/pyfn"
	"github.com/snapbpf/snapbpf/internal/record"
	"github.com/snapbpf/snapbpf/internal/restore"
	"github.com/snapbpf/snapbpf/internal/rootfs"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/vmm"
)

// Builder makes what a function needs before it serves: its snapshot, and
// its working set (recorded, or re-recorded and merged with the old one).
type Builder interface {
	Snapshot(ctx context.Context, f api.Function, out string) error
	Record(ctx context.Context, dir *snapshot.Dir, inputs []uint64, merge bool) error
}

// NodeBuilder is the Builder of a host: snapshots of the guest image
// (built on first use; a python function's with the python runtime's root
// filesystem) through funcvm, working sets through package record (eBPF,
// root).
type NodeBuilder struct {
	Driver vmm.Driver
	// ImageDir is the guest image; AgentPath, the agent binary it is
	// built from when ImageDir holds none or an older one.
	ImageDir, AgentPath string
	// Image, if set, is the guest image, built already.
	Image *guest.Image
	// PythonImageDir is the python functions' guest image (ImageDir with
	// the python runtime's root filesystem, built with it on first use);
	// PythonImage, if set, is that image built already.
	PythonImageDir string
	PythonImage    *guest.Image
	// RecordRuns is each recording's restores (record.DefaultRuns).
	RecordRuns int
	// FreePages is the snapshots' free-page mode
	// (snapshot.FreePagesReport).
	FreePages string

	mu   sync.Mutex
	imgs map[string]*guest.Image // by runtime ("" for Go)
}

// image builds the guest image of runtime ("" for the Go functions) once
// per service (guest.Build and rootfs.Build reuse what is current).
func (b *NodeBuilder) image(ctx context.Context, runtime string) (*guest.Image, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case runtime == "" && b.Image != nil:
		return b.Image, nil
	case runtime == pyfn.Runtime && b.PythonImage != nil:
		return b.PythonImage, nil
	case b.imgs[runtime] != nil:
		return b.imgs[runtime], nil
	}
	o := guest.BuildOptions{OutDir: b.ImageDir, AgentPath: b.AgentPath}
	if runtime != "" {
		if b.PythonImageDir == "" {
			return nil, fmt.Errorf("no image directory for the %s runtime's functions (NodeBuilder.PythonImageDir)", runtime)
		}
		rt, err := rootfs.Lookup(runtime)
		if err != nil {
			return nil, err
		}
		fs, err := rootfs.Build(ctx, rt, rootfs.Options{})
		if err != nil {
			return nil, fmt.Errorf("the %s runtime's root filesystem: %w", runtime, err)
		}
		o.OutDir, o.Runtime, o.Rootfs, o.RootfsSHA256 = b.PythonImageDir, rt.Name, fs.Path, fs.SHA256
	}
	img, err := guest.Build(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("guest image in %s: %w", o.OutDir, err)
	}
	if b.imgs == nil {
		b.imgs = map[string]*guest.Image{}
	}
	b.imgs[runtime] = img
	return img, nil
}

// catalogFunction is f as the catalog names it: a python function by its
// runtime too.
func catalogFunction(f api.Function) catalog.Function {
	if f.Runtime == api.RuntimePython {
		return catalog.Function{Name: f.Function, Runtime: pyfn.Runtime}
	}
	return catalog.Function{Name: f.Function}
}

// Snapshot implements Builder.
func (b *NodeBuilder) Snapshot(ctx context.Context, f api.Function, out string) error {
	fn := catalogFunction(f)
	img, err := b.image(ctx, fn.Runtime)
	if err != nil {
		return err
	}
	o, err := fn.Create(funcvm.CreateOptions{
		DataMiB: f.DataMiB, MemMiB: f.MemMiB, Out: out, Replace: true,
		FreePages: cmp.Or(b.FreePages, snapshot.FreePagesReport),
	})
	if err != nil {
		return err
	}
	dir, st, err := funcvm.CreateSnapshot(ctx, b.Driver, img, o)
	if err != nil {
		return err
	}
	slog.Info("serve: snapshot created", "function", f.Name, "path", out, "total_ms", st.TotalMs)
	return dir.Close()
}

// Record implements Builder.
func (b *NodeBuilder) Record(ctx context.Context, dir *snapshot.Dir, inputs []uint64, merge bool) error {
	o := record.Options{Merge: merge, Runs: b.RecordRuns}
	m := dir.Manifest
	for _, in := range inputs {
		// A python function's input seed is one of its input shapes, run
		// by its runner on the host.
		want, _, err := restore.Expected(ctx, m, in)
		if err != nil {
			return err
		}
		o.Inputs = append(o.Inputs, record.Input{Seed: in, Expected: want})
	}
	_, rep, err := record.Snapshot(ctx, b.Driver, dir, o)
	if err != nil {
		return err
	}
	slog.Info("serve: working set recorded", "snapshot", dir.Path, "pages", rep.Pages, "inputs", rep.Inputs, "merge", merge, "record_ms", rep.RecordMs)
	return nil
}
