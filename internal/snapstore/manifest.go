package snapstore

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// Kind marks a store manifest, so that another object under the name is
// told apart from a damaged one.
const Kind = "snapbpf-snapstore"

// Version is the store manifest format this build writes and reads.
const Version = 1

// DefaultChunkSize is the size of the chunks objects are stored in. It stays
// below NATS's default max_payload (1 MiB), so the store works with any
// server, and it is what a read of a page not yet fetched waits for: one
// direct get of 512 KiB.
const DefaultChunkSize = 512 << 10

// Manifest describes one published snapshot: what a node needs to rebuild
// its directory and to verify every byte it fetches. The object store keeps
// only a digest of whole objects; the hash of each chunk lives here.
type Manifest struct {
	Kind    string `json:"kind"`
	Version int    `json:"version"`
	// ID is the snapshot's ID (snapshot.Manifest.ID).
	ID string `json:"id"`
	// Snapshot is the snapshot's manifest.json, verbatim.
	Snapshot json.RawMessage `json:"snapshot"`
	// ChunkSize is the size of every chunk of every object but the last
	// of each.
	ChunkSize int64 `json:"chunk_size"`
	// MemSize is the memory file's size; Data its runs of data pages, in
	// file order. Everything else in the file is a hole: zeroes, never
	// stored or fetched.
	MemSize int64          `json:"mem_size"`
	Data    []pages.Extent `json:"data"`
	// Mem holds the data pages of Data, back to back in file order.
	Mem Object `json:"mem"`
	// Early holds the pages a restore needs first, back to back in the
	// order of EarlyExtents: the pages the working set's identity check
	// samples, then the data pages the working set's prefetch reads, in
	// the order it reads them (first touch). They repeat pages of Mem, so
	// a node can fetch them before the rest.
	Early         Object         `json:"early"`
	EarlyExtents  []pages.Extent `json:"early_extents"`
	State         Object         `json:"state"`
	WorkingSet    *Object        `json:"working_set,omitempty"`
	WorkingSetAux string         `json:"working_set_file,omitempty"` // its name in the snapshot, e.g. wset/default.ws
	// WorkingSetVersion counts the working set's recordings: 1 for the
	// first, one more for each re-recording (see Store.PublishVersion).
	// Zero in manifests written before versions: read it with WSetVersion.
	WorkingSetVersion int `json:"working_set_version,omitempty"`
}

// WSetVersion is the working set version m holds (1 for a manifest written
// before versions).
func (m *Manifest) WSetVersion() int { return max(1, m.WorkingSetVersion) }

// Object is one object of the store, cut into chunks of the manifest's
// ChunkSize.
type Object struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
	// SHA256 holds each chunk's digest, lowercase hex, in chunk order.
	SHA256 []string `json:"sha256"`
}

// Chunks is how many chunks the object has.
func (o *Object) Chunks() int { return len(o.SHA256) }

// ChunkLen is the length of chunk k of an object cut at size.
func (o *Object) ChunkLen(k int, size int64) int64 {
	return min(size, o.Size-int64(k)*size)
}

// SnapshotManifest decodes the snapshot's own manifest. It is checked when
// a directory holding it is opened (snapshot.Open).
func (m *Manifest) SnapshotManifest() (*snapshot.Manifest, error) {
	var sm snapshot.Manifest
	if err := json.Unmarshal(m.Snapshot, &sm); err != nil {
		return nil, fmt.Errorf("snapshot %s: decode its manifest: %w", m.ID, err)
	}
	return &sm, nil
}

// validate checks the manifest's own consistency: the layouts must match
// the objects' sizes and chunk counts, so that no fetch can be steered
// outside the memory file.
func (m *Manifest) validate() error {
	switch {
	case m.Kind != Kind:
		return fmt.Errorf("kind is %q, want %q", m.Kind, Kind)
	case m.Version != Version:
		return fmt.Errorf("version %d, this snapbpf reads %d", m.Version, Version)
	case m.ChunkSize <= 0 || m.ChunkSize%pages.Size != 0:
		return fmt.Errorf("chunk size %d is not a positive multiple of the page size", m.ChunkSize)
	case m.MemSize <= 0 || m.MemSize%pages.Size != 0:
		return fmt.Errorf("memory file size %d is not a positive multiple of the page size", m.MemSize)
	case m.WorkingSetVersion < 0:
		return fmt.Errorf("working set version %d is negative", m.WorkingSetVersion)
	}
	sm, err := m.SnapshotManifest()
	if err != nil {
		return err
	}
	if sm.ID != m.ID || sm.MemSize != m.MemSize || sm.StateSize != m.State.Size {
		return errors.New("the snapshot's manifest does not match the store's (ID, memory or state size)")
	}
	npages := uint64(m.MemSize / pages.Size)
	if err := checkExtents(m.Data, npages, true); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if err := checkExtents(m.EarlyExtents, npages, false); err != nil {
		return fmt.Errorf("early pages: %w", err)
	}
	check := func(o *Object, size int64) error {
		if o.Size != size {
			return fmt.Errorf("object %s holds %d bytes, its layout %d", o.Name, o.Size, size)
		}
		if want := int((size + m.ChunkSize - 1) / m.ChunkSize); o.Chunks() != want {
			return fmt.Errorf("object %s has %d chunk digests, want %d", o.Name, o.Chunks(), want)
		}
		return nil
	}
	errs := []error{
		check(&m.Mem, wset.PageCount(m.Data)*pages.Size),
		check(&m.Early, wset.PageCount(m.EarlyExtents)*pages.Size),
		check(&m.State, m.State.Size),
	}
	if m.WorkingSet != nil {
		errs = append(errs, check(m.WorkingSet, m.WorkingSet.Size))
	}
	return errors.Join(errs...)
}

// checkExtents refuses extents beyond the file, empty or overlapping ones,
// and, if sorted, any out of file order.
func checkExtents(ext []pages.Extent, npages uint64, sorted bool) error {
	for i, e := range ext {
		if e.N == 0 || e.Page >= npages || e.N > npages-e.Page {
			return fmt.Errorf("extent %d [%d,+%d) is empty or beyond the file's %d pages", i, e.Page, e.N, npages)
		}
		if sorted && i > 0 && ext[i-1].End() > e.Page {
			return fmt.Errorf("extent %d is out of order or overlaps the one before", i)
		}
	}
	if !sorted {
		s := slices.Clone(ext)
		slices.SortFunc(s, func(a, b pages.Extent) int { return cmp.Compare(a.Page, b.Page) })
		for i := 1; i < len(s); i++ {
			if s[i-1].End() > s[i].Page {
				return fmt.Errorf("extents overlap at page %d", s[i].Page)
			}
		}
	}
	return nil
}

// Packing maps the pages of a file laid back to back in an object, in the
// order of a list of extents, to their place in the object and back.
type Packing struct {
	ext    []pages.Extent // in object order
	start  []int64        // object offset of each extent
	byPage []int          // indexes of ext sorted by page
}

// NewPacking returns the packing of ext, which must not overlap.
func NewPacking(ext []pages.Extent) *Packing {
	p := &Packing{ext: ext, start: make([]int64, len(ext)), byPage: make([]int, len(ext))}
	var off int64
	for i, e := range ext {
		p.start[i] = off
		off += int64(e.N) * pages.Size
		p.byPage[i] = i
	}
	sort.Slice(p.byPage, func(a, b int) bool { return ext[p.byPage[a]].Page < ext[p.byPage[b]].Page })
	return p
}

// Size is the object's size in bytes.
func (p *Packing) Size() int64 {
	if len(p.ext) == 0 {
		return 0
	}
	i := len(p.ext) - 1
	return p.start[i] + int64(p.ext[i].N)*pages.Size
}

// Offset returns where page lies in the object, and whether it is there.
func (p *Packing) Offset(page uint64) (int64, bool) {
	k := sort.Search(len(p.byPage), func(k int) bool { return p.ext[p.byPage[k]].End() > page })
	if k == len(p.byPage) {
		return 0, false
	}
	i := p.byPage[k]
	if p.ext[i].Page > page {
		return 0, false
	}
	return p.start[i] + int64(page-p.ext[i].Page)*pages.Size, true
}

// Runs calls fn for each run of pages held by the object's bytes
// [off, off+n), in object order, with the run's first file page, its
// offset in the object and its page count.
func (p *Packing) Runs(off, n int64, fn func(page uint64, objOff int64, npages uint64)) {
	end := off + n
	i := sort.Search(len(p.ext), func(i int) bool { return p.start[i]+int64(p.ext[i].N)*pages.Size > off })
	for ; i < len(p.ext) && p.start[i] < end; i++ {
		lo := max(off, p.start[i])
		hi := min(end, p.start[i]+int64(p.ext[i].N)*pages.Size)
		fn(p.ext[i].Page+uint64((lo-p.start[i])/pages.Size), lo, uint64((hi-lo)/pages.Size))
	}
}

// errBadManifest marks a manifest that is there but unusable: publishing
// the snapshot again replaces it.
var errBadManifest = errors.New("invalid store manifest")

// decodeManifest parses and checks the store manifest of snapshot id.
func decodeManifest(id string, b []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w: not valid JSON: %w; publish the snapshot again", id, errBadManifest, err)
	}
	if m.ID != id {
		return nil, fmt.Errorf("snapshot %s: %w: it is of snapshot %q; publish the snapshot again", id, errBadManifest, m.ID)
	}
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w: %w; publish the snapshot again", id, errBadManifest, err)
	}
	return &m, nil
}
