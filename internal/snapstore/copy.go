package snapstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/snapbpf/snapbpf/internal/atomicfile"
	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/snapshot"
)

// Copy is a local copy of a published snapshot being filled in: a snapshot
// directory under construction (snapshot.Create) whose device state,
// manifest and working set are already there and whose memory file gets
// the data chunks as they arrive, at their pages (holes stay holes).
// Commit publishes it; a crash leaves a temporary directory the next
// snapshot.Create in the same parent removes.
type Copy struct {
	r   *Reader
	b   *snapshot.Builder
	mem *os.File
	sm  *snapshot.Manifest
	Mem *Packing // the layout of the Mem object in the memory file
}

// NewCopy starts a local copy of r's snapshot that Commit publishes at out.
func (r *Reader) NewCopy(ctx context.Context, out string) (_ *Copy, retErr error) {
	sm, err := r.m.SnapshotManifest()
	if err != nil {
		return nil, err
	}
	b, err := snapshot.Create(out, snapshot.CreateOptions{})
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			b.Abort()
		}
	}()
	// Guest memory may hold secrets: readable by root alone, like the
	// VMM's own.
	mem, err := os.OpenFile(b.MemPath(), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("copy of snapshot %s: %w", r.m.ID, err)
	}
	defer func() {
		if retErr != nil {
			mem.Close()
		}
	}()
	if err := mem.Truncate(r.m.MemSize); err != nil {
		return nil, fmt.Errorf("copy of snapshot %s: %w", r.m.ID, err)
	}
	state, err := r.Object(ctx, &r.m.State)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(b.StatePath(), state, 0o600); err != nil {
		return nil, fmt.Errorf("copy of snapshot %s: %w", r.m.ID, err)
	}
	if r.m.WorkingSet != nil {
		name, err := auxPath(r.m.WorkingSetAux)
		if err != nil {
			return nil, fmt.Errorf("copy of snapshot %s: %w", r.m.ID, err)
		}
		ws, err := r.Object(ctx, r.m.WorkingSet)
		if err != nil {
			return nil, err
		}
		p := filepath.Join(b.Dir(), name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, fmt.Errorf("copy of snapshot %s: %w", r.m.ID, err)
		}
		if err := atomicfile.WriteFile(p, ws, 0o644); err != nil {
			return nil, fmt.Errorf("copy of snapshot %s: %w", r.m.ID, err)
		}
	}
	return &Copy{r: r, b: b, mem: mem, sm: sm, Mem: NewPacking(r.m.Data)}, nil
}

// auxPath checks the name of an auxiliary file a manifest gives, e.g.
// wset/default.ws, and returns it as a local path: it must stay inside the
// snapshot and not be one of its core files.
func auxPath(name string) (string, error) {
	if !strings.HasPrefix(name, "wset/") || !filepath.IsLocal(name) || path.Clean(name) != name {
		return "", fmt.Errorf("working set file %q is not a file under wset/", name)
	}
	return filepath.FromSlash(name), nil
}

// MemFile is the copy's memory file, open read-write.
func (c *Copy) MemFile() *os.File { return c.mem }

// Dir is the directory being filled in.
func (c *Copy) Dir() string { return c.b.Dir() }

// WriteChunk writes the bytes b of object o (Mem or Early) that start at
// object offset off to the pages they hold.
func (c *Copy) WriteChunk(p *Packing, off int64, b []byte) error {
	var err error
	p.Runs(off, int64(len(b)), func(page uint64, objOff int64, n uint64) {
		if err != nil {
			return
		}
		_, err = c.mem.WriteAt(b[objOff-off:objOff-off+int64(n)*pages.Size], int64(page)*pages.Size)
	})
	if err != nil {
		return fmt.Errorf("copy of snapshot %s: write memory file: %w", c.r.m.ID, err)
	}
	return nil
}

// Commit makes the copy the snapshot at out (atomic rename) and returns it
// opened and checked. The memory file must be complete.
func (c *Copy) Commit() (*snapshot.Dir, error) {
	if err := c.mem.Sync(); err != nil {
		return nil, fmt.Errorf("copy of snapshot %s: fsync memory file: %w", c.r.m.ID, err)
	}
	return c.b.Commit(*c.sm)
}

// Abort removes the copy unless it was committed, and closes its memory
// file either way.
func (c *Copy) Abort() error {
	return errors.Join(c.b.Abort(), c.mem.Close())
}

// Object fetches the whole of a small object (the state, the working set),
// chunk by chunk, each checked.
func (r *Reader) Object(ctx context.Context, o *Object) ([]byte, error) {
	out := make([]byte, 0, o.Size)
	for k := range o.Chunks() {
		b, err := r.Chunk(ctx, o, k)
		if err != nil {
			return nil, err
		}
		out = append(out, b...)
	}
	return out, nil
}

// FetchStats describe a full fetch.
type FetchStats struct {
	ReaderStats
	Duration time.Duration `json:"duration_ns"`
}

// Fetch copies snapshot id whole into a new snapshot directory at out, every
// chunk checked, and returns it opened: the way to restore a snapshot that
// is not local without serving its memory lazily.
func (s *Store) Fetch(ctx context.Context, id, out string) (*snapshot.Dir, FetchStats, error) {
	t0 := time.Now()
	m, err := s.Manifest(ctx, id)
	if err != nil {
		return nil, FetchStats{}, err
	}
	r := s.Reader(m)
	c, err := r.NewCopy(ctx, out)
	if err != nil {
		return nil, FetchStats{}, err
	}
	defer c.Abort()
	if err := r.Stream(ctx, &m.Mem, func(k int, b []byte) error {
		return c.WriteChunk(c.Mem, int64(k)*m.ChunkSize, b)
	}); err != nil {
		return nil, FetchStats{}, err
	}
	d, err := c.Commit()
	st := FetchStats{ReaderStats: r.Stats(), Duration: time.Since(t0)}
	if err == nil {
		s.log.Info("snapshot fetched", "snapshot", id, "dir", out, "MiB", float64(st.Bytes)/(1<<20), "ms", st.Duration.Milliseconds(), "corrupt", st.Corrupt)
	}
	return d, st, err
}
