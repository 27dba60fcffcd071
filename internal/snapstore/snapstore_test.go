package snapstore_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/snapbpf/snapbpf/internal/bus/bustest"
	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/snapstore"
	"github.com/snapbpf/snapbpf/internal/snapstore/snapstoretest"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// sameFile fails unless a and b hold the same bytes.
func sameFile(t *testing.T, a, b string) {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(x, y) {
		t.Fatalf("%s and %s differ", a, b)
	}
}

// layout is a memory file of 8 MiB with data runs that cross chunk
// boundaries, and a working set touching some of them out of file order,
// one page of it a hole.
var (
	testData = []pages.Extent{{Page: 0, N: 3}, {Page: 100, N: 300}, {Page: 700, N: 1}, {Page: 1024, N: 513}, {Page: 2047, N: 1}}
	testWS   = []pages.Extent{{Page: 1100, N: 20}, {Page: 5, N: 1}, {Page: 101, N: 10}, {Page: 2047, N: 1}}
)

// TestPublishFetchRoundTrip publishes a snapshot through one node of a
// three-node cluster and fetches it through another.
func TestPublishFetchRoundTrip(t *testing.T) {
	ctx := context.Background()
	nodes := bustest.Open(t, bustest.Cluster(t, 3))
	src := snapstoretest.Snapshot(t, 8, testData, testWS)
	home, err := snapstore.Open(ctx, nodes[0].JetStream(), snapstore.Options{Replicas: nodes[0].Replicas()})
	if err != nil {
		t.Fatal(err)
	}
	m, err := home.Publish(ctx, src, snapstoretest.WorkingSetFile)
	if err != nil {
		t.Fatal(err)
	}
	if got := wset.PageCount(m.Data); got != wset.PageCount(testData) {
		t.Errorf("published %d data pages, the file has %d", got, wset.PageCount(testData))
	}
	// The early pages start with the sampled data pages (0 and 2047 are
	// data; the rest of the samples hit holes), then the working set's
	// data pages in first-touch order, without page 5 (a hole).
	early := m.EarlyExtents
	if len(early) == 0 || early[0] != (pages.Extent{Page: 0, N: 1}) {
		t.Errorf("early pages start %v, want the sampled page 0", early)
	}
	if wset.PageCount(early) > wset.PageCount(testData) {
		t.Errorf("early pages %v hold more than the data", early)
	}

	st, err := snapstore.Open(ctx, nodes[2].JetStream(), snapstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "copy")
	d, fs, err := st.Fetch(ctx, src.Manifest.ID, out)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if fs.Corrupt != 0 || fs.Bytes != m.Mem.Size+m.State.Size+m.WorkingSet.Size {
		t.Errorf("fetch stats %+v, want %d bytes and nothing corrupt", fs, m.Mem.Size+m.State.Size+m.WorkingSet.Size)
	}
	sameFile(t, src.MemPath(), d.MemPath())
	sameFile(t, src.StatePath(), d.StatePath())
	sameFile(t, src.File(snapstoretest.WorkingSetFile), d.File(snapstoretest.WorkingSetFile))
	data, err := pages.Data(d.MemPath())
	if err != nil {
		t.Fatal(err)
	}
	if wset.PageCount(data) != wset.PageCount(testData) {
		t.Errorf("copy has %d data pages, want %d (holes kept)", wset.PageCount(data), wset.PageCount(testData))
	}
	// The copy's working set is accepted for it (same snapshot, same
	// contents).
	ws, err := wset.Read(d.File(snapstoretest.WorkingSetFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.CheckFile(d.MemPath(), d.Manifest.ID); err != nil {
		t.Error(err)
	}
	if _, _, err := st.Fetch(ctx, "0123456789abcdef0123456789abcdef", filepath.Join(t.TempDir(), "x")); !errors.Is(err, snapstore.ErrNotPublished) {
		t.Errorf("fetch of an unpublished snapshot: %v, want ErrNotPublished", err)
	}
}

// TestCorruptChunkRefused replaces the memory object in the store with one
// whose chunk 1 differs (same size and chunk count, as a bad upload or a
// damaged store would leave it). The reader refuses the chunk every time
// and never hands it out; once the right object is back it fetches again
// and gets the good chunk.
func TestCorruptChunkRefused(t *testing.T) {
	ctx := context.Background()
	js := snapstoretest.Embedded(t)
	src := snapstoretest.Snapshot(t, 8, testData, testWS)
	st, err := snapstore.Open(ctx, js, snapstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.Publish(ctx, src, snapstoretest.WorkingSetFile)
	if err != nil {
		t.Fatal(err)
	}
	obs, err := js.ObjectStore(ctx, snapstore.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	good, err := obs.GetBytes(ctx, m.Mem.Name)
	if err != nil {
		t.Fatal(err)
	}
	put := func(b []byte) {
		t.Helper()
		_, err := obs.Put(ctx, jetstream.ObjectMeta{Name: m.Mem.Name, Opts: &jetstream.ObjectMetaOptions{ChunkSize: uint32(m.ChunkSize)}}, bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
	}
	bad := bytes.Clone(good)
	bad[m.ChunkSize+4000] ^= 0x40 // one bit of chunk 1
	put(bad)

	r := st.Reader(m)
	if _, err := r.Chunk(ctx, &m.Mem, 0); err != nil {
		t.Fatalf("chunk 0 is intact: %v", err)
	}
	t0 := time.Now()
	b, err := r.Chunk(ctx, &m.Mem, 1)
	t.Logf("a chunk corrupt in the store: refused %d times, given up after %v: %v", r.Stats().Corrupt, time.Since(t0).Round(time.Millisecond), err)
	if !errors.Is(err, snapstore.ErrCorrupt) || b != nil {
		t.Fatalf("corrupt chunk 1: got %d bytes, err %v; want nothing and ErrCorrupt", len(b), err)
	}
	if s := r.Stats(); s.Corrupt < 2 || s.Retries < 1 || s.Chunks != 1 {
		t.Errorf("stats %+v: want the chunk refused on every attempt and only chunk 0 handed out", s)
	}

	// A corruption that goes away: the good object comes back while the
	// reader is retrying.
	r = st.Reader(m)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for r.Stats().Corrupt == 0 {
			time.Sleep(time.Millisecond)
		}
		put(good)
	}()
	t0 = time.Now()
	b, err = r.Chunk(ctx, &m.Mem, 1)
	<-done
	t.Logf("a chunk repaired in the store while refused: good after %d refusals, %v", r.Stats().Corrupt, time.Since(t0).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("chunk 1 after the repair: %v", err)
	}
	if !bytes.Equal(b, good[m.ChunkSize:2*m.ChunkSize]) {
		t.Fatal("chunk 1 after the repair differs from the published one")
	}
	if s := r.Stats(); s.Corrupt == 0 || s.Retries == 0 {
		t.Errorf("stats %+v: want a refusal and a refetch", s)
	}
}
