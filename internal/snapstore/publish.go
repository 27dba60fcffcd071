package snapstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/prefetch"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// maxWorkingSetFile bounds the working set file Publish reads.
const maxWorkingSetFile = 64 << 20

// putAttempts is how often an upload is tried before Publish gives up: a
// retry replaces an object whose chunks another node's upload interleaved.
const putAttempts = 3

// Publish publishes the snapshot dir with its working set file wsFile as
// working set version 1; see PublishVersion.
func (s *Store) Publish(ctx context.Context, dir *snapshot.Dir, wsFile string) (*Manifest, error) {
	return s.PublishVersion(ctx, dir, wsFile, 1)
}

// PublishVersion uploads the snapshot dir with its working set file wsFile
// (e.g. policy.WorkingSetFile; empty or missing: none) as working set
// version v (1 for the first recording, one more for each re-recording),
// and returns the manifest the store then holds.
//
// The memory and state objects are uploaded once per snapshot: if the
// store holds the snapshot already with an older working set, only the
// new version's objects (ID.ws.V, ID.early.V) are uploaded and the
// manifest replaced by one naming them. The manifest is written last,
// so a reader sees the old version whole or the new one whole; the
// objects a reader of the old manifest may still read are never
// overwritten, and those two versions back are deleted (see
// deleteVersion). If the store holds version v or a later one, nothing
// is uploaded.
//
// When ctx ends, the upload under way stops within a chunk and its
// chunks are purged; the store keeps what it had.
func (s *Store) PublishVersion(ctx context.Context, dir *snapshot.Dir, wsFile string, v int) (*Manifest, error) {
	if v < 1 {
		return nil, fmt.Errorf("publish snapshot %s: working set version %d, want 1 or more", dir.Path, v)
	}
	old, err := s.Manifest(ctx, dir.Manifest.ID)
	switch {
	case err == nil && old.WSetVersion() >= v:
		return old, nil // a publication whose end its caller missed
	case err == nil:
		return s.publishWorkingSet(ctx, dir, wsFile, v, old)
	case errors.Is(err, ErrNotPublished), errors.Is(err, errBadManifest):
		return s.publishAll(ctx, dir, wsFile, v)
	}
	return nil, err
}

// publishAll uploads every object of dir.
func (s *Store) publishAll(ctx context.Context, dir *snapshot.Dir, wsFile string, v int) (*Manifest, error) {
	t0 := time.Now()
	id := dir.Manifest.ID
	snapJSON, err := json.Marshal(dir.Manifest)
	if err != nil {
		return nil, fmt.Errorf("publish snapshot %s: %w", dir.Path, err)
	}
	data, err := pages.Data(dir.MemPath())
	if err != nil {
		return nil, fmt.Errorf("publish snapshot %s: %w", dir.Path, err)
	}
	m := &Manifest{
		Kind: Kind, Version: Version, ID: id, Snapshot: snapJSON,
		ChunkSize: DefaultChunkSize, MemSize: dir.Manifest.MemSize, Data: data,
	}
	mem := dir.MemFile()
	if m.Mem, err = s.put(ctx, memName(id), m.ChunkSize, wset.PageCount(data)*pages.Size, packedReader(mem, data)); err != nil {
		return nil, err
	}
	state, err := dir.OpenState()
	if err != nil {
		return nil, err
	}
	defer state.Close()
	if m.State, err = s.put(ctx, stateName(id), m.ChunkSize, dir.Manifest.StateSize, func() io.Reader { return io.NewSectionReader(state, 0, dir.Manifest.StateSize) }); err != nil {
		return nil, err
	}
	if err := s.putWorkingSet(ctx, dir, wsFile, v, m); err != nil {
		return nil, err
	}
	if err := s.putManifest(ctx, dir, m); err != nil {
		return nil, err
	}
	s.log.Info("snapshot published", "snapshot", id, "dir", dir.Path, "bucket", s.bucket, "wset_version", v,
		"data_MiB", float64(m.Mem.Size)/(1<<20), "early_MiB", float64(m.Early.Size)/(1<<20),
		"chunks", m.Mem.Chunks()+m.Early.Chunks(), "ms", time.Since(t0).Milliseconds())
	return m, nil
}

// publishWorkingSet uploads working set version v of dir, whose memory and
// state old describes in the store already, and points the manifest at it.
func (s *Store) publishWorkingSet(ctx context.Context, dir *snapshot.Dir, wsFile string, v int, old *Manifest) (*Manifest, error) {
	t0 := time.Now()
	m := *old
	if err := s.putWorkingSet(ctx, dir, wsFile, v, &m); err != nil {
		return nil, err
	}
	if err := s.putManifest(ctx, dir, &m); err != nil {
		return nil, err
	}
	s.log.Info("working set published", "snapshot", m.ID, "bucket", s.bucket, "wset_version", v, "previous", old.WSetVersion(),
		"early_MiB", float64(m.Early.Size)/(1<<20), "ms", time.Since(t0).Milliseconds())
	// Readers of the manifest before old may still be fetching its early
	// pages; they are two manifests behind now.
	s.deleteVersion(ctx, m.ID, v-2)
	return &m, nil
}

// earlyName and wsName name working set version v's objects.
func earlyName(id string, v int) string { return fmt.Sprintf("%s.early.%d", id, v) }
func wsName(id string, v int) string    { return fmt.Sprintf("%s.ws.%d", id, v) }

// putWorkingSet uploads the early pages and the working set of wsFile as
// version v and sets them in m, whose Data must be dir's.
func (s *Store) putWorkingSet(ctx context.Context, dir *snapshot.Dir, wsFile string, v int, m *Manifest) error {
	wsData, ws, err := readWorkingSet(dir, wsFile)
	if err != nil {
		return err
	}
	m.EarlyExtents = earlyPages(m.MemSize, m.Data, ws)
	if m.Early, err = s.put(ctx, earlyName(m.ID, v), m.ChunkSize, wset.PageCount(m.EarlyExtents)*pages.Size, packedReader(dir.MemFile(), m.EarlyExtents)); err != nil {
		return err
	}
	m.WorkingSet, m.WorkingSetAux = nil, ""
	if ws != nil {
		o, err := s.put(ctx, wsName(m.ID, v), m.ChunkSize, int64(len(wsData)), func() io.Reader { return bytes.NewReader(wsData) })
		if err != nil {
			return err
		}
		m.WorkingSet, m.WorkingSetAux = &o, wsFile
	}
	m.WorkingSetVersion = v
	return nil
}

// putManifest checks m and writes it, the last object of a publication:
// once it is there, the objects it names are.
func (s *Store) putManifest(ctx context.Context, dir *snapshot.Dir, m *Manifest) error {
	if err := m.validate(); err != nil {
		return fmt.Errorf("publish snapshot %s: %w", dir.Path, err) // a bug here, not in the store
	}
	enc, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("publish snapshot %s: %w", m.ID, err)
	}
	// Not cut off halfway: a cancelled put would leave its chunk behind.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), putTimeout(int64(len(enc))))
	defer cancel()
	if _, err := s.obs.PutBytes(cctx, manifestName(m.ID), enc); err != nil {
		return fmt.Errorf("publish snapshot %s: write its manifest to bucket %s: %w", m.ID, s.bucket, err)
	}
	return nil
}

// deleteVersion deletes working set version v's objects of snapshot id,
// if v is one. A reader that still held a manifest naming them would fetch
// the pages from the memory object instead (lazymem falls back to it), so
// this costs time, never a wrong page.
func (s *Store) deleteVersion(ctx context.Context, id string, v int) {
	if v < 1 {
		return
	}
	for _, name := range []string{earlyName(id, v), wsName(id, v)} {
		if err := s.deleteObject(ctx, id, name); err != nil {
			s.log.Warn("snapshot store: an old working set version could not be deleted; it stays until the snapshot is deleted", "object", name, "err", err)
		}
	}
}

// readWorkingSet reads the working set file name of dir, if there is one
// recorded for this snapshot.
func readWorkingSet(dir *snapshot.Dir, name string) ([]byte, *wset.Set, error) {
	if name == "" {
		return nil, nil, nil
	}
	f, err := dir.OpenFile(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("publish snapshot %s: %w", dir.Path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxWorkingSetFile+1))
	if err != nil {
		return nil, nil, fmt.Errorf("publish snapshot %s: read %s: %w", dir.Path, name, err)
	}
	if len(b) > maxWorkingSetFile {
		return nil, nil, fmt.Errorf("publish snapshot %s: %s is larger than %d bytes, not a working set", dir.Path, name, maxWorkingSetFile)
	}
	var ws wset.Set
	if err := ws.UnmarshalBinary(b); err != nil {
		return nil, nil, fmt.Errorf("publish snapshot %s: %s: %w", dir.Path, name, err)
	}
	if ws.Mem.SnapshotID != dir.Manifest.ID || ws.Mem.Size != dir.Manifest.MemSize {
		return nil, nil, fmt.Errorf("publish snapshot %s: %s was recorded for another snapshot (%s); record it again", dir.Path, name, ws.Mem)
	}
	return b, &ws, nil
}

// earlyPages are the data pages a restore reads first: those the working
// set's identity check samples, then what the prefetch asks for, in the
// order it asks (the working set's extents merged across the prefetch's
// gap, each merged run as early as its first-touched extent), each page
// once. Holes are left out: they are never fetched.
func earlyPages(size int64, data []pages.Extent, ws *wset.Set) []pages.Extent {
	var b wset.Builder
	for _, off := range wset.SampleOffsets(size) {
		if p := uint64(off / pages.Size); isData(data, p) {
			b.Add(p, 1)
		}
	}
	if ws != nil {
		plan := prefetch.Plan(ws.Extents, prefetch.DefaultGapPages)
		for _, e := range ws.Extents {
			j, ok := pages.Search(plan, e.Page)
			if !ok {
				continue
			}
			run := plan[j]
			i, _ := pages.Search(data, run.Page)
			for ; i < len(data) && data[i].Page < run.End(); i++ {
				lo, hi := max(run.Page, data[i].Page), min(run.End(), data[i].End())
				b.Add(lo, hi-lo)
			}
		}
	}
	return b.Extents()
}

func isData(data []pages.Extent, p uint64) bool {
	_, ok := pages.Search(data, p)
	return ok
}

// packedReader returns readers of the pages ext of f, back to back.
func packedReader(f io.ReaderAt, ext []pages.Extent) func() io.Reader {
	return func() io.Reader {
		rs := make([]io.Reader, len(ext))
		for i, e := range ext {
			rs[i] = io.NewSectionReader(f, int64(e.Page)*pages.Size, int64(e.N)*pages.Size)
		}
		return io.MultiReader(rs...)
	}
}

// putTimeout bounds an upload of n bytes: CallTimeout plus 1 s per 4 MiB,
// a tenth of the slowest replicated put seen here.
func putTimeout(n int64) time.Duration {
	return CallTimeout + time.Duration(n/(4<<20))*time.Second
}

// put uploads the size bytes open reads as the object name in chunks of
// chunkSize, hashing each chunk, and checks that the chunks lie
// consecutively in the stream (see Store); an upload interleaved with
// another node's is done again.
func (s *Store) put(ctx context.Context, name string, chunkSize, size int64, open func() io.Reader) (Object, error) {
	s.putMu.Lock()
	defer s.putMu.Unlock()
	var err error
	for attempt := 1; attempt <= putAttempts; attempt++ {
		var o Object
		if o, err = s.putOnce(ctx, name, chunkSize, size, open()); err != nil {
			return Object{}, err
		}
		if err = s.settle(ctx, &o); err == nil {
			return o, nil
		}
		if !errors.Is(err, errInterleaved) {
			break
		}
		s.log.Warn("snapshot store: upload interleaved with another; uploading again", "object", name, "attempt", attempt, "err", err)
	}
	return Object{}, fmt.Errorf("upload %s to bucket %s: %w", name, s.bucket, err)
}

// settleTime bounds the wait for an upload to show on the replica a lookup
// reaches (replicas that were not needed for the write's quorum lag).
const settleTime = 10 * time.Second

// settle checks where o's chunks lie, waiting for them to show.
func (s *Store) settle(ctx context.Context, o *Object) error {
	deadline := time.Now().Add(settleTime)
	for {
		cctx, cancel := context.WithTimeout(ctx, CallTimeout)
		_, err := s.locate(cctx, o)
		cancel()
		if err == nil || !errors.Is(err, errNotVisible) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// putWindow is how many chunks of an upload may be on their way at once,
// sent and not yet stored. The object store's own Put sends up to 4000
// ahead: a snapshot's chunks then queued in the node's connection, its
// server and the cluster's route, and the heartbeats and registry writes
// that share them waited behind megabytes. A key-value put during a
// 128 MiB upload on a two-node cluster took up to 1.9-4.1 s with that
// Put, whether on the upload's connection or not, and up to 0.1-0.24 s
// with 4 chunks in flight, while the upload itself took 5.6-7.7 s instead
// of 11-21 s (BenchmarkKVDuringUpload, load 3-16).
const putWindow = 4

// putOnce uploads the size bytes r reads as object name, in chunks of
// chunkSize, hashing each, at most putWindow of them unacknowledged, the
// way the object store lays an object out (NATS ADR-20): the chunks on
// subject $O.BUCKET.C.NUID, then the object's info on its meta subject,
// which replaces the old info at once (rollup); the old chunks are purged
// after. When ctx ends, the upload stops and its chunks are purged.
func (s *Store) putOnce(ctx context.Context, name string, chunkSize, size int64, r io.Reader) (_ Object, retErr error) {
	cctx, cancel := context.WithTimeout(ctx, putTimeout(size))
	defer cancel()
	old, err := s.obs.GetInfo(cctx, name, jetstream.GetObjectInfoShowDeleted())
	if err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return Object{}, fmt.Errorf("upload %s to bucket %s: look up the object: %w", name, s.bucket, err)
	}
	info := jetstream.ObjectInfo{
		ObjectMeta: jetstream.ObjectMeta{Name: name, Opts: &jetstream.ObjectMetaOptions{ChunkSize: uint32(chunkSize)}},
		Bucket:     s.bucket, NUID: nuid.Next(),
	}
	subject := s.chunkSubject(info.NUID)
	// sent are the chunks on their way, oldest first.
	var sent []jetstream.PubAckFuture
	defer func() {
		if retErr != nil {
			// Not cut off by ctx: the purge is what a cancelled
			// upload leaves the store clean with. Chunks still on
			// their way would be stored after it: wait for them.
			pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), CallTimeout)
			defer cancel()
			for _, f := range sent {
				select {
				case <-f.Ok():
				case <-f.Err():
				case <-pctx.Done():
				}
			}
			if err := s.stream.Purge(pctx, jetstream.WithPurgeSubject(subject)); err != nil {
				s.log.Warn("snapshot store: the chunks of an upload that failed could not be purged", "object", name, "subject", subject, "err", err)
			}
		}
	}()
	o := Object{Name: name}
	whole := sha256.New()
	bufs := make([][]byte, putWindow)
	// ack waits for the oldest chunk on its way to be stored; one it
	// stopped waiting for stays in sent, for the purge to wait for.
	ack := func() error {
		f := sent[0]
		select {
		case <-f.Ok():
			sent = sent[1:]
			return nil
		case err := <-f.Err():
			sent = sent[1:]
			return err
		case <-cctx.Done():
			return cctx.Err()
		}
	}
	for k := 0; ; k++ {
		if err := ctx.Err(); err != nil {
			return Object{}, fmt.Errorf("upload %s to bucket %s: %w", name, s.bucket, err)
		}
		if len(sent) == putWindow {
			if err := ack(); err != nil {
				return Object{}, fmt.Errorf("upload %s to bucket %s: %w", name, s.bucket, err)
			}
		}
		if bufs[k%putWindow] == nil {
			bufs[k%putWindow] = make([]byte, chunkSize)
		}
		b := bufs[k%putWindow]
		n, err := io.ReadFull(r, b)
		if n > 0 {
			sum := sha256.Sum256(b[:n])
			o.SHA256 = append(o.SHA256, hex.EncodeToString(sum[:]))
			whole.Write(b[:n])
			o.Size += int64(n)
			f, err := s.js.PublishMsgAsync(&nats.Msg{Subject: subject, Data: b[:n]})
			if err != nil {
				return Object{}, fmt.Errorf("upload %s to bucket %s: chunk %d: %w", name, s.bucket, k, err)
			}
			sent = append(sent, f)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return Object{}, fmt.Errorf("upload %s to bucket %s: read: %w", name, s.bucket, err)
		}
	}
	for len(sent) > 0 {
		if err := ack(); err != nil {
			return Object{}, fmt.Errorf("upload %s to bucket %s: %w", name, s.bucket, err)
		}
	}
	if o.Size != size {
		return Object{}, fmt.Errorf("upload %s to bucket %s: read %d bytes, want %d", name, s.bucket, o.Size, size)
	}
	if err := ctx.Err(); err != nil {
		return Object{}, fmt.Errorf("upload %s to bucket %s: %w", name, s.bucket, err)
	}
	info.Size, info.Chunks = uint64(o.Size), uint32(o.Chunks())
	info.Digest = "SHA-256=" + base64.URLEncoding.EncodeToString(whole.Sum(nil))
	meta, err := json.Marshal(info)
	if err != nil {
		return Object{}, err
	}
	m := nats.NewMsg(s.metaSubject(name))
	m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	m.Data = meta
	if _, err := s.js.PublishMsg(cctx, m); err != nil {
		return Object{}, fmt.Errorf("upload %s to bucket %s: write its info: %w", name, s.bucket, err)
	}
	if old != nil && !old.Deleted {
		if err := s.stream.Purge(cctx, jetstream.WithPurgeSubject(s.chunkSubject(old.NUID))); err != nil {
			s.log.Warn("snapshot store: the chunks of an object's previous upload could not be purged", "object", name, "err", err)
		}
	}
	return o, nil
}
