package snapstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrCorrupt is wrapped by the error of a chunk that kept failing its
// digest (or kept missing from where the object store puts it).
var ErrCorrupt = errors.New("chunk does not match its digest in the manifest")

// errNotVisible marks an object or chunk the server asked does not show
// (yet): a direct get may be answered by a replica that has not applied the
// latest writes.
var errNotVisible = errors.New("not visible on the replica asked")

// errInterleaved marks an object whose chunks are not consecutive.
var errInterleaved = errors.New("chunks interleaved with another upload")

// chunkAttempts is how often a chunk is fetched before it is given up on;
// retryDelay the wait before the second attempt, doubled for each next.
const (
	chunkAttempts = 5
	retryDelay    = 100 * time.Millisecond
)

// location is where an object's chunks lie in the bucket's stream.
type location struct {
	subject string
	first   uint64 // sequence of chunk 0
}

// Reader fetches the chunks of one published snapshot's objects and hands
// out only chunks that match their digests. It is safe for concurrent use.
type Reader struct {
	s *Store
	m *Manifest

	mu  sync.Mutex
	loc map[string]location

	chunks, bytes, corrupt, retries atomic.Int64
}

// ReaderStats count a Reader's work.
type ReaderStats struct {
	// Chunks and Bytes are what was handed out (verified).
	Chunks int64 `json:"chunks"`
	Bytes  int64 `json:"bytes"`
	// Corrupt counts chunks refused for a digest mismatch (or found
	// missing or misplaced); Retries the fetches done again.
	Corrupt int64 `json:"corrupt"`
	Retries int64 `json:"retries"`
}

// Reader returns a reader of the snapshot m describes.
func (s *Store) Reader(m *Manifest) *Reader {
	return &Reader{s: s, m: m, loc: map[string]location{}}
}

// Manifest is the manifest the reader was made for.
func (r *Reader) Manifest() *Manifest { return r.m }

// Stats returns the reader's counts so far.
func (r *Reader) Stats() ReaderStats {
	return ReaderStats{Chunks: r.chunks.Load(), Bytes: r.bytes.Load(), Corrupt: r.corrupt.Load(), Retries: r.retries.Load()}
}

// Chunk returns chunk k of o, checked against its digest. A chunk that does
// not match, or is not where the object's layout says, is refused and
// fetched again after the object's place in the stream is looked up anew
// (it may have been uploaded again); after chunkAttempts the error wraps
// ErrCorrupt. Every call to the store has its own deadline.
func (r *Reader) Chunk(ctx context.Context, o *Object, k int) ([]byte, error) {
	if k < 0 || k >= o.Chunks() {
		return nil, fmt.Errorf("object %s has no chunk %d (it has %d)", o.Name, k, o.Chunks())
	}
	want := o.ChunkLen(k, r.m.ChunkSize)
	var last error
	delay := retryDelay
	for attempt := 1; attempt <= chunkAttempts; attempt++ {
		if attempt > 1 {
			r.retries.Add(1)
			r.forget(o.Name)
			select {
			case <-ctx.Done():
				return nil, errors.Join(ctx.Err(), last)
			case <-time.After(delay):
			}
			delay *= 2
		}
		b, err := r.get(ctx, o, k)
		switch {
		case errors.Is(err, ErrCorrupt):
		case err != nil:
			if ctx.Err() != nil {
				return nil, err
			}
			last = err
			continue // a timeout or a lost leader: try again
		case int64(len(b)) != want:
			err = fmt.Errorf("%w: chunk %d of %s has %d bytes, want %d", ErrCorrupt, k, o.Name, len(b), want)
		default:
			sum := sha256.Sum256(b)
			if got := hex.EncodeToString(sum[:]); got != o.SHA256[k] {
				err = fmt.Errorf("%w: chunk %d of %s has sha256 %s, the manifest says %s", ErrCorrupt, k, o.Name, got, o.SHA256[k])
			}
		}
		if err == nil {
			r.chunks.Add(1)
			r.bytes.Add(int64(len(b)))
			return b, nil
		}
		r.corrupt.Add(1)
		r.s.log.Warn("snapshot store: chunk refused", "snapshot", r.m.ID, "object", o.Name, "chunk", k, "attempt", attempt, "err", err)
		last = err
	}
	return nil, fmt.Errorf("snapshot %s: chunk %d of %s: gave up after %d attempts: %w", r.m.ID, k, o.Name, chunkAttempts, last)
}

// get fetches chunk k of o by direct get, unchecked.
func (r *Reader) get(ctx context.Context, o *Object, k int) ([]byte, error) {
	loc, err := r.location(ctx, o)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, CallTimeout)
	defer cancel()
	seq := loc.first + uint64(k)
	msg, err := r.s.stream.GetMsg(cctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("%w: chunk %d of %s is missing from the stream (sequence %d)", ErrCorrupt, k, o.Name, seq)
	}
	if err != nil {
		return nil, fmt.Errorf("get chunk %d of %s (sequence %d): %w", k, o.Name, seq, err)
	}
	if msg.Subject != loc.subject {
		return nil, fmt.Errorf("%w: sequence %d, where chunk %d of %s belongs, holds a message on %s", ErrCorrupt, seq, k, o.Name, msg.Subject)
	}
	return msg.Data, nil
}

func (r *Reader) location(ctx context.Context, o *Object) (location, error) {
	r.mu.Lock()
	loc, ok := r.loc[o.Name]
	r.mu.Unlock()
	if ok {
		return loc, nil
	}
	cctx, cancel := context.WithTimeout(ctx, CallTimeout)
	defer cancel()
	loc, err := r.s.locate(cctx, o)
	if err != nil {
		return location{}, err
	}
	r.mu.Lock()
	r.loc[o.Name] = loc
	r.mu.Unlock()
	return loc, nil
}

func (r *Reader) forget(name string) {
	r.mu.Lock()
	delete(r.loc, name)
	r.mu.Unlock()
}

// locate finds where o's chunks lie: the object's current NUID names their
// subject, and the first and last message on it must span exactly its
// chunks. An object of another size or chunk count than o (uploaded again
// since the manifest was written) is refused as ErrCorrupt.
func (s *Store) locate(ctx context.Context, o *Object) (location, error) {
	info, err := s.obs.GetInfo(ctx, o.Name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return location{}, fmt.Errorf("%w: object %s is not in bucket %s (%w)", ErrCorrupt, o.Name, s.bucket, errNotVisible)
	}
	if err != nil {
		return location{}, fmt.Errorf("look up object %s in bucket %s: %w", o.Name, s.bucket, err)
	}
	if int64(info.Size) != o.Size || int(info.Chunks) != o.Chunks() {
		return location{}, fmt.Errorf("%w: object %s in bucket %s has %d bytes in %d chunks, the manifest says %d in %d",
			ErrCorrupt, o.Name, s.bucket, info.Size, info.Chunks, o.Size, o.Chunks())
	}
	loc := location{subject: s.chunkSubject(info.NUID)}
	if o.Chunks() == 0 {
		return loc, nil
	}
	first, err := s.stream.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(loc.subject))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return location{}, fmt.Errorf("%w: chunk 0 of %s is not in bucket %s (%w)", ErrCorrupt, o.Name, s.bucket, errNotVisible)
	}
	if err != nil {
		return location{}, fmt.Errorf("find chunk 0 of %s in bucket %s: %w", o.Name, s.bucket, err)
	}
	last, err := s.stream.GetLastMsgForSubject(ctx, loc.subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return location{}, fmt.Errorf("%w: the last chunk of %s is not in bucket %s (%w)", ErrCorrupt, o.Name, s.bucket, errNotVisible)
	}
	if err != nil {
		return location{}, fmt.Errorf("find the last chunk of %s in bucket %s: %w", o.Name, s.bucket, err)
	}
	if n := last.Sequence - first.Sequence + 1; n != uint64(o.Chunks()) {
		return location{}, fmt.Errorf("%w: the chunks of %s span %d messages of the stream (sequences %d-%d), not %d: %w",
			ErrCorrupt, o.Name, n, first.Sequence, last.Sequence, o.Chunks(), errInterleaved)
	}
	loc.first = first.Sequence
	return loc, nil
}

// Stream reads o whole, in order, with one streaming get (the store pushes
// the chunks; no request each, several times the rate of Chunk here), and
// calls fn with each chunk that matches its digest. A chunk that does not,
// and every chunk after a broken stream, is fetched by Chunk instead, so fn
// only ever sees checked chunks. fn must not keep b; an error from fn
// stops the stream and is returned.
func (r *Reader) Stream(ctx context.Context, o *Object, fn func(k int, b []byte) error) error {
	if o.Chunks() == 0 {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, putTimeout(o.Size))
	defer cancel()
	res, err := r.s.obs.Get(cctx, o.Name)
	if err != nil {
		r.s.log.Warn("snapshot store: streaming get failed; fetching chunk by chunk", "object", o.Name, "err", err)
		return r.each(ctx, o, 0, fn)
	}
	defer res.Close()
	buf := make([]byte, r.m.ChunkSize)
	for k := range o.Chunks() {
		b := buf[:o.ChunkLen(k, r.m.ChunkSize)]
		if _, err := io.ReadFull(res, b); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.s.log.Warn("snapshot store: stream broke; fetching the rest chunk by chunk", "object", o.Name, "chunk", k, "err", err)
			return r.each(ctx, o, k, fn)
		}
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != o.SHA256[k] {
			r.corrupt.Add(1)
			r.s.log.Warn("snapshot store: streamed chunk refused; fetching it again", "snapshot", r.m.ID, "object", o.Name, "chunk", k)
			var err error
			if b, err = r.Chunk(ctx, o, k); err != nil {
				return err
			}
		} else {
			r.chunks.Add(1)
			r.bytes.Add(int64(len(b)))
		}
		if err := fn(k, b); err != nil {
			return err
		}
	}
	return nil
}

// each calls fn with chunks from..end of o, fetched by Chunk.
func (r *Reader) each(ctx context.Context, o *Object, from int, fn func(k int, b []byte) error) error {
	for k := from; k < o.Chunks(); k++ {
		b, err := r.Chunk(ctx, o, k)
		if err != nil {
			return err
		}
		if err := fn(k, b); err != nil {
			return err
		}
	}
	return nil
}
