package snapstore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/snapbpf/snapbpf/internal/bus"
	"github.com/snapbpf/snapbpf/internal/bus/bustest"
	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/snapstore"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// embedded opens a node's NATS as serve does by default: an in-process
// server that listens on no port.
func embedded(t *testing.T) jetstream.JetStream {
	t.Helper()
	b, err := bus.Open(context.Background(), bus.Config{Dir: t.TempDir(), Name: "snapstore-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b.JetStream()
}

// fakeSnapshot makes a snapshot directory of memMiB MiB whose memory file
// has random data in the pages of data (holes elsewhere), with a working
// set of ws. No VMM is involved: the store only moves files.
func fakeSnapshot(t *testing.T, memMiB int, data, ws []pages.Extent) *snapshot.Dir {
	t.Helper()
	out := filepath.Join(t.TempDir(), "snap")
	b, err := snapshot.Create(out, snapshot.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Abort()
	if err := os.WriteFile(b.StatePath(), randomBytes(t, 70_000), 0o600); err != nil {
		t.Fatal(err)
	}
	mem, err := os.OpenFile(b.MemPath(), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	if err := mem.Truncate(int64(memMiB) << 20); err != nil {
		t.Fatal(err)
	}
	for _, e := range data {
		if _, err := mem.WriteAt(randomBytes(t, int(e.N)*pages.Size), int64(e.Page)*pages.Size); err != nil {
			t.Fatal(err)
		}
	}
	hex64 := strings.Repeat("ab", 32)
	d, err := b.Commit(snapshot.Manifest{
		Function: "json", MemMiB: memMiB, KernelSHA256: hex64, AgentSHA256: hex64,
		VMM: snapshot.VMMInfo{Name: "qemu", Version: "7.2.0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	id, err := wset.IdentifyFile(d.MemPath(), d.Manifest.ID)
	if err != nil {
		t.Fatal(err)
	}
	s := &wset.Set{Mem: id, Extents: ws, Created: time.Now(), Source: "test"}
	if err := d.AddFile(wsFile, func(w io.Writer) error {
		b, err := s.MarshalBinary()
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return d
}

const wsFile = "wset/default.ws"

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

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
	src := fakeSnapshot(t, 8, testData, testWS)
	home, err := snapstore.Open(ctx, nodes[0].JetStream(), snapstore.Options{Replicas: nodes[0].Replicas()})
	if err != nil {
		t.Fatal(err)
	}
	m, err := home.Publish(ctx, src, wsFile)
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
	sameFile(t, src.File(wsFile), d.File(wsFile))
	data, err := pages.Data(d.MemPath())
	if err != nil {
		t.Fatal(err)
	}
	if wset.PageCount(data) != wset.PageCount(testData) {
		t.Errorf("copy has %d data pages, want %d (holes kept)", wset.PageCount(data), wset.PageCount(testData))
	}
	// The copy's working set is accepted for it (same snapshot, same
	// contents).
	ws, err := wset.Read(d.File(wsFile))
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
	js := embedded(t)
	src := fakeSnapshot(t, 8, testData, testWS)
	st, err := snapstore.Open(ctx, js, snapstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.Publish(ctx, src, wsFile)
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
	b, err := r.Chunk(ctx, &m.Mem, 1)
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
	b, err = r.Chunk(ctx, &m.Mem, 1)
	<-done
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
