package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/snapbpf/snapbpf/internal/catalog"
	"github.com/snapbpf/snapbpf/internal/funcvm"
	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/record"
	"github.com/snapbpf/snapbpf/internal/restore"
	"github.com/snapbpf/snapbpf/internal/snapshot"
)

// otherWSFile is where a snapshot keeps the working set the bench
// recorded on the other input, for PolicySnapBPFOther.
func otherWSFile(input uint64) string { return fmt.Sprintf("wset/bench-input-%d.ws", input) }

// snapshotPath is where the bench keeps fn's snapshot taken with free
// page mode mode.
func (b *bench) snapshotPath(f catalog.Function, mode string) string {
	name := f.FileName()
	if mode == snapshot.FreePagesNone {
		name += "-nofree"
	}
	return filepath.Join(b.cfg.SnapshotDir, name)
}

// recordings are the working sets snapshots in free page mode mode need,
// the one in policy.WorkingSetFile last (see record).
func (b *bench) recordings(mode string) []Recording {
	if mode != snapshot.FreePagesReport {
		return nil
	}
	latency := slices.Contains(b.cfg.Experiments, ExpLatency)
	var out []Recording
	if latency && slices.Contains(b.cfg.Policies, PolicySnapBPFOther) {
		out = append(out, Recording{File: otherWSFile(b.cfg.otherInput()), Input: b.cfg.otherInput()})
	}
	if slices.Contains(b.cfg.Experiments, ExpPrefetch) || latency && slices.Contains(b.cfg.Policies, policy.SnapBPF) {
		out = append(out, Recording{File: policy.WorkingSetFile, Input: b.cfg.Input})
	}
	return out
}

// snapshot returns fn's snapshot in free page mode mode with the working
// sets this bench needs, reusing a snapshot on disk that matches the image
// and settings and recordings these results made in it.
func (b *bench) snapshot(ctx context.Context, fn, mode string) (*snapshot.Dir, error) {
	key := fn + "/" + mode
	wanted := b.recordings(mode)
	if d, ok := b.snaps[key]; ok && b.allRecorded(d, wanted) {
		return d, nil
	}
	f, err := catalog.Parse(fn)
	if err != nil {
		return nil, err
	}
	path := b.snapshotPath(f, mode)
	prep := Preparation{Function: fn, FreePages: mode, Start: time.Now().UTC()}
	d, err := snapshot.Open(path)
	if err != nil || !b.reusable(d, f, mode) {
		b.log().Info("bench: creating snapshot", "path", path, "free_pages", mode)
		t := time.Now()
		img, err := b.cfg.image(f)
		if err != nil {
			return nil, err
		}
		o, err := f.Create(funcvm.CreateOptions{
			DataMiB: b.createDataMiB(f), Out: path, Replace: true, FreePages: mode, Accel: b.accel, Log: b.cfg.Log,
		})
		if err != nil {
			return nil, err
		}
		d, _, err = funcvm.CreateSnapshot(ctx, b.driver, img, o)
		if err != nil {
			return nil, fmt.Errorf("snapshot %s: %w", fn, err)
		}
		prep.CreateMs = ms(time.Since(t))
	}
	b.snaps[key] = d
	for _, want := range wanted {
		if b.recorded[d.Manifest.ID+"/"+want.File] || b.hasRecording(d, want) {
			b.recorded[d.Manifest.ID+"/"+want.File] = true
			continue
		}
		rec, err := b.record(ctx, d, want)
		if err != nil {
			return nil, err
		}
		prep.Recordings = append(prep.Recordings, rec)
		b.recorded[d.Manifest.ID+"/"+want.File] = true
	}
	if prep.CreateMs > 0 || len(prep.Recordings) > 0 {
		prep.ID, prep.MemMiB, prep.DataBytes = d.Manifest.ID, d.Manifest.MemMiB, d.Manifest.MemDataBytes
		b.res.Snapshots = append(b.res.Snapshots, prep)
		if err := b.save(); err != nil {
			return nil, err
		}
	}
	return d, nil
}

func (b *bench) allRecorded(d *snapshot.Dir, wanted []Recording) bool {
	for _, w := range wanted {
		if !b.recorded[d.Manifest.ID+"/"+w.File] {
			return false
		}
	}
	return true
}

// createDataMiB is the data size f's snapshot is created with: the
// bench's (0: the function's default) for a Go function, none for a
// runtime's.
func (b *bench) createDataMiB(f catalog.Function) int {
	if f.Runtime != "" {
		return 0
	}
	return b.cfg.DataMiB
}

// reusable reports whether an existing snapshot was taken the way this
// bench would take it now.
func (b *bench) reusable(d *snapshot.Dir, f catalog.Function, mode string) bool {
	m := d.Manifest
	img, err := b.cfg.image(f)
	if err != nil {
		return false
	}
	return m.Function == f.Name && m.Runtime == f.Runtime && m.RootfsSHA256 == img.RootfsSHA256 &&
		m.FunctionOptions["data_mib"] == b.createDataMiB(f) && m.FreePages == mode &&
		m.KernelSHA256 == img.KernelSHA256 && m.AgentSHA256 == img.AgentSHA256 && m.VMM.Accel == b.accel &&
		m.MemMiB == f.GuestMiB(b.createDataMiB(f))
}

// record captures d's working set on want.Input into want.File.
// record.Snapshot always writes policy.WorkingSetFile, so a recording meant
// for another file puts back what that file held.
func (b *bench) record(ctx context.Context, d *snapshot.Dir, want Recording) (Recording, error) {
	m := d.Manifest
	host, err := b.expected(ctx, d, want.Input)
	if err != nil {
		return want, err
	}
	var saved []byte
	if want.File != policy.WorkingSetFile {
		saved, err = os.ReadFile(d.File(policy.WorkingSetFile))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return want, fmt.Errorf("record %s: %w", m.Function, err)
		}
	}
	b.log().Info("bench: recording a working set", "snapshot", d.Path, "input", want.Input, "file", want.File)
	t := time.Now()
	set, _, err := record.Snapshot(ctx, b.driver, d, record.Options{
		Input: want.Input, Expected: host.sum, Accel: b.accel, Log: b.cfg.Log,
	})
	if err != nil {
		return want, fmt.Errorf("record %s: %w", m.Function, err)
	}
	want.Ms = ms(time.Since(t))
	want.Pages, want.Extents = set.Pages(), len(set.Extents)
	if want.File == policy.WorkingSetFile {
		return want, nil
	}
	data, err := set.MarshalBinary()
	if err != nil {
		return want, err
	}
	if err := addFile(d, want.File, data); err != nil {
		return want, err
	}
	if saved != nil {
		if err := addFile(d, policy.WorkingSetFile, saved); err != nil {
			return want, err
		}
	}
	return want, nil
}

// expected is the checksum a correct invocation of d's function on input
// returns and the host's time for it, computed once per snapshot and
// input: a runtime function's costs a runner started on the host.
func (b *bench) expected(ctx context.Context, d *snapshot.Dir, input uint64) (hostResult, error) {
	key := fmt.Sprintf("%s/%d", d.Manifest.ID, input)
	if r, ok := b.sums[key]; ok {
		return r, nil
	}
	sum, host, err := restore.Expected(ctx, d.Manifest, input)
	if err != nil {
		return hostResult{}, err
	}
	r := hostResult{sum, host}
	b.sums[key] = r
	return r, nil
}

// hostResult is an invocation's correct checksum and its time on the
// host.
type hostResult struct {
	sum  string
	time time.Duration
}

func addFile(d *snapshot.Dir, name string, data []byte) error {
	return d.AddFile(name, func(w io.Writer) error {
		_, err := io.Copy(w, bytes.NewReader(data))
		return err
	})
}

// hasRecording reports whether these results recorded want in d and the
// file is still there.
func (b *bench) hasRecording(d *snapshot.Dir, want Recording) bool {
	if _, err := os.Stat(d.File(want.File)); errors.Is(err, fs.ErrNotExist) {
		return false
	}
	return slices.ContainsFunc(b.res.Snapshots, func(p Preparation) bool {
		return p.ID == d.Manifest.ID && slices.ContainsFunc(p.Recordings, func(r Recording) bool {
			return r.File == want.File && r.Input == want.Input
		})
	})
}
