// Package snapstore keeps snapshots in a NATS JetStream Object Store, so a
// snapshot made on one node can be restored on another.
//
// A published snapshot is a few objects named after its ID:
//
//	ID.mem       the memory file's data pages, back to back in file order (holes skipped)
//	ID.early.V   the pages a restore needs first, back to back: the pages the
//	             working set's identity check samples, then the data pages the
//	             working set's prefetch reads, in first-touch order
//	ID.state     the device state
//	ID.ws.V      the working set (page offsets), as the snapshot holds it
//	ID.manifest  Manifest: the layout of the others and a SHA-256 per chunk
//
// V is the working set's version: a re-recorded working set is published
// under new names and the manifest replaced (Store.PublishVersion), so an
// object a reader may be reading is never overwritten. The manifest is
// written last, so a snapshot is published once it exists, and it is the
// one pointer to the current version. Store.Delete removes a snapshot,
// the manifest first for the same reason.
// Every object is stored in chunks of the manifest's ChunkSize. The store
// itself keeps one digest per object; a node reads single chunks (a page
// it needs now), so every chunk is checked against its own digest in the
// manifest before any byte of it is used, and a chunk that does not match
// is refused and fetched again (Reader.Chunk).
//
// Chunks are read by direct get, the way the object store lays them out
// (NATS ADR-20): the chunks of an object are the messages on the subject
// $O.BUCKET.C.NUID of the stream OBJ_BUCKET, in order, so chunk k is the
// message at the sequence of chunk 0 plus k when no other object's chunks
// were written between them (Publish makes sure of that).
package snapstore

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/snapbpf/snapbpf/internal/logging"
)

// DefaultBucket is the object store bucket snapshots are kept in.
const DefaultBucket = "snapbpf-snapshots"

// CallTimeout bounds each call to the store but object uploads (whose bound
// grows with their size): without a deadline of its own a get has 5 s for
// the whole transfer (nats.go's default), and API calls to a cluster that
// has no leader yet get no answer at all.
const CallTimeout = 10 * time.Second

// JetStream is what the store needs of a JetStream connection;
// jetstream.JetStream has it.
type JetStream interface {
	ObjectStore(ctx context.Context, bucket string) (jetstream.ObjectStore, error)
	CreateObjectStore(ctx context.Context, cfg jetstream.ObjectStoreConfig) (jetstream.ObjectStore, error)
	Stream(ctx context.Context, name string) (jetstream.Stream, error)
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
	PublishMsgAsync(msg *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error)
}

// Store is a bucket of published snapshots.
type Store struct {
	js     JetStream
	bucket string
	obs    jetstream.ObjectStore
	stream jetstream.Stream
	log    *slog.Logger

	// putMu makes this process's uploads one at a time, so the chunks of
	// one object are consecutive in the stream.
	putMu sync.Mutex
}

// Options tune Open.
type Options struct {
	// Bucket is the object store bucket; empty means DefaultBucket.
	Bucket string
	// Replicas is the bucket's replication when Open creates it (0: 1).
	Replicas int
	// Log receives diagnostics; nil discards them.
	Log *slog.Logger
}

// Open opens the snapshot bucket, creating it if it does not exist yet.
func Open(ctx context.Context, js JetStream, o Options) (*Store, error) {
	bucket := o.Bucket
	if bucket == "" {
		bucket = DefaultBucket
	}
	cctx, cancel := context.WithTimeout(ctx, CallTimeout)
	defer cancel()
	obs, err := js.ObjectStore(cctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		obs, err = js.CreateObjectStore(cctx, jetstream.ObjectStoreConfig{
			Bucket:      bucket,
			Description: "snapbpf snapshots",
			Replicas:    o.Replicas,
		})
		if errors.Is(err, jetstream.ErrBucketExists) || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			obs, err = js.ObjectStore(cctx, bucket) // made by another node meanwhile
		}
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot store: open bucket %s: %w", bucket, err)
	}
	// The bucket's stream, for the chunks' direct gets. Its cached
	// config says direct gets are allowed, which GetMsg needs to use them.
	stream, err := js.Stream(cctx, "OBJ_"+bucket)
	if err != nil {
		return nil, fmt.Errorf("snapshot store: open the stream of bucket %s: %w", bucket, err)
	}
	return &Store{js: js, bucket: bucket, obs: obs, stream: stream, log: logging.Or(o.Log)}, nil
}

// Bucket is the store's bucket name.
func (s *Store) Bucket() string { return s.bucket }

// manifestName, memName and stateName name snapshot id's objects but its
// working set versions (earlyName, wsName).
func manifestName(id string) string { return id + ".manifest" }
func memName(id string) string      { return id + ".mem" }
func stateName(id string) string    { return id + ".state" }

// chunkSubject is the subject of the chunks of the object upload nuid, and
// metaSubject that of object name's info (NATS ADR-20).
func (s *Store) chunkSubject(nuid string) string { return fmt.Sprintf("$O.%s.C.%s", s.bucket, nuid) }
func (s *Store) metaSubject(name string) string {
	return fmt.Sprintf("$O.%s.M.%s", s.bucket, base64.URLEncoding.EncodeToString([]byte(name)))
}

// ErrNotPublished is wrapped by Manifest's error for a snapshot the store
// does not hold.
var ErrNotPublished = errors.New("snapshot is not in the store")

// Manifest reads and checks the manifest of snapshot id.
func (s *Store) Manifest(ctx context.Context, id string) (*Manifest, error) {
	var err error
	// A manifest replaced (a new working set version) purges the old
	// one's chunk: a get that looked the old one up just before fails,
	// and the next finds the new one.
	for attempt := 0; attempt < 2; attempt++ {
		var b []byte
		cctx, cancel := context.WithTimeout(ctx, CallTimeout)
		// GetBytes checks the object's digest.
		b, err = s.obs.GetBytes(cctx, manifestName(id))
		cancel()
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			return nil, fmt.Errorf("snapshot %s: %w (bucket %s); publish it from the node that has it", id, ErrNotPublished, s.bucket)
		}
		if err == nil {
			return decodeManifest(id, b)
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("snapshot %s: read its manifest from bucket %s: %w", id, s.bucket, err)
}
