package serve

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/snapbpf/snapbpf/api"
	"github.com/snapbpf/snapbpf/internal/funcvm"
	"github.com/snapbpf/snapbpf/internal/guest"
	"github.com/snapbpf/snapbpf/internal/record"
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
// (built on first use) through funcvm, working sets through package
// record (eBPF, root).
type NodeBuilder struct {
	Driver vmm.Driver
	// ImageDir is the guest image; AgentPath, the agent binary it is
	// built from when ImageDir holds none or an older one.
	ImageDir, AgentPath string
	// Image, if set, is the guest image, built already.
	Image *guest.Image
	// RecordRuns is each recording's restores (record.DefaultRuns).
	RecordRuns int
	// FreePages is the snapshots' free-page mode
	// (snapshot.FreePagesReport).
	FreePages string

	mu  sync.Mutex
	img *guest.Image
}

// image builds the guest image once per service (guest.Build reuses what
// is current).
func (b *NodeBuilder) image(ctx context.Context) (*guest.Image, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.Image != nil {
		return b.Image, nil
	}
	if b.img != nil {
		return b.img, nil
	}
	img, err := guest.Build(ctx, guest.BuildOptions{OutDir: b.ImageDir, AgentPath: b.AgentPath})
	if err != nil {
		return nil, fmt.Errorf("guest image in %s: %w", b.ImageDir, err)
	}
	b.img = img
	return img, nil
}

// Snapshot implements Builder.
func (b *NodeBuilder) Snapshot(ctx context.Context, f api.Function, out string) error {
	img, err := b.image(ctx)
	if err != nil {
		return err
	}
	dir, st, err := funcvm.CreateSnapshot(ctx, b.Driver, img, funcvm.CreateOptions{
		Function: f.Function, DataMiB: f.DataMiB, MemMiB: f.MemMiB, Out: out, Replace: true,
		FreePages: cmp.Or(b.FreePages, snapshot.FreePagesReport),
	})
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
		want, err := funcvm.Expect(m.Function, m.FunctionOptions["data_mib"], in)
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
