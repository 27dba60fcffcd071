package snapstore_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/snapbpf/snapbpf/internal/bus/bustest"
	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/snapstore"
	"github.com/snapbpf/snapbpf/internal/snapstore/snapstoretest"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// setWorkingSet replaces the working set of d (as a re-recording does).
func setWorkingSet(t *testing.T, d *snapshot.Dir, ext []pages.Extent) {
	t.Helper()
	id, err := wset.IdentifyFile(d.MemPath(), d.Manifest.ID)
	if err != nil {
		t.Fatal(err)
	}
	s := &wset.Set{Mem: id, Extents: ext, Created: time.Now(), Source: "test"}
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.AddFile(snapstoretest.WorkingSetFile, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// TestPublishWorkingSetVersions: a re-recorded working set is published
// through node 0 of a cluster as new objects beside the memory object
// (which is not uploaded again), the manifest replaced last; a reader on
// node 1 that holds the old manifest still reads the old version's
// objects, a fetch after it gets the new working set; the version two back
// is deleted; publishing a version the store has uploads nothing.
func TestPublishWorkingSetVersions(t *testing.T) {
	ctx := context.Background()
	nodes := bustest.Open(t, bustest.Cluster(t, 2))
	src := snapstoretest.Snapshot(t, 8, testData, testWS)
	id := src.Manifest.ID
	home, err := snapstore.Open(ctx, nodes[0].Bulk(), snapstore.Options{Replicas: nodes[0].Replicas()})
	if err != nil {
		t.Fatal(err)
	}
	st, err := snapstore.Open(ctx, nodes[1].Bulk(), snapstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	obs, err := nodes[0].JetStream().ObjectStore(ctx, snapstore.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	nuid := func(name string) string {
		t.Helper()
		info, err := obs.GetInfo(ctx, name)
		if err != nil {
			t.Fatalf("object %s: %v", name, err)
		}
		return info.NUID
	}
	m1, err := home.Publish(ctx, src, snapstoretest.WorkingSetFile)
	if err != nil {
		t.Fatal(err)
	}
	if m1.WSetVersion() != 1 || m1.WorkingSet == nil {
		t.Fatalf("first publication: version %d, working set %v", m1.WSetVersion(), m1.WorkingSet)
	}
	memNUID := nuid(m1.Mem.Name)
	old, err := st.Manifest(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	oldWS, err := os.ReadFile(src.File(snapstoretest.WorkingSetFile))
	if err != nil {
		t.Fatal(err)
	}

	ws2 := append([]pages.Extent{{Page: 1500, N: 30}}, testWS...)
	setWorkingSet(t, src, ws2)
	m2, err := home.PublishVersion(ctx, src, snapstoretest.WorkingSetFile, 2)
	if err != nil {
		t.Fatal(err)
	}
	if m2.WSetVersion() != 2 || m2.Early.Name == m1.Early.Name || m2.WorkingSet.Name == m1.WorkingSet.Name {
		t.Fatalf("version 2 names %s and %s, version 1 %s and %s: want new objects", m2.Early.Name, m2.WorkingSet.Name, m1.Early.Name, m1.WorkingSet.Name)
	}
	if m2.Mem.Name != m1.Mem.Name || nuid(m1.Mem.Name) != memNUID {
		t.Errorf("the memory object was uploaded again for a new working set")
	}
	if wset.PageCount(m2.EarlyExtents) <= wset.PageCount(m1.EarlyExtents) {
		t.Errorf("version 2's early pages (%d) do not take in the larger set (version 1: %d)", wset.PageCount(m2.EarlyExtents), wset.PageCount(m1.EarlyExtents))
	}
	// The reader of the old manifest reads the old version, checked.
	r := st.Reader(old)
	got, err := r.Object(ctx, old.WorkingSet)
	if err != nil || !bytes.Equal(got, oldWS) {
		t.Fatalf("old working set through the old manifest: %v (equal %v)", err, bytes.Equal(got, oldWS))
	}
	if _, err := r.Object(ctx, &old.Early); err != nil {
		t.Fatalf("old early pages through the old manifest: %v", err)
	}
	// A fetch now gets the new working set, every chunk checked.
	out := filepath.Join(t.TempDir(), "copy")
	d, _, err := st.Fetch(ctx, id, out)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	sameFile(t, src.File(snapstoretest.WorkingSetFile), d.File(snapstoretest.WorkingSetFile))
	sameFile(t, src.MemPath(), d.MemPath())

	// Version 3 deletes version 1, keeps 2.
	setWorkingSet(t, src, append(ws2, pages.Extent{Page: 1900, N: 10}))
	m3, err := home.PublishVersion(ctx, src, snapstoretest.WorkingSetFile, 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{m1.Early.Name, m1.WorkingSet.Name} {
		if _, err := obs.GetInfo(ctx, name); !errors.Is(err, jetstream.ErrObjectNotFound) {
			t.Errorf("object %s of version 1 after version 3: %v, want it deleted", name, err)
		}
	}
	nuid(m2.Early.Name)
	nuid(m2.WorkingSet.Name)
	// A version the store has already: nothing uploaded.
	early3 := nuid(m3.Early.Name)
	again, err := home.PublishVersion(ctx, src, snapstoretest.WorkingSetFile, 2)
	if err != nil || again.WSetVersion() != 3 || nuid(m3.Early.Name) != early3 {
		t.Errorf("publishing version 2 again after 3: version %v, %v; want version 3 kept as it was", again.WSetVersion(), err)
	}
}

// TestPublishCancelled: a publication whose context ends while the memory
// object uploads stops, leaves no manifest and no chunk in the store's
// stream, and a later one publishes the snapshot whole.
func TestPublishCancelled(t *testing.T) {
	ctx := context.Background()
	js := snapstoretest.Embedded(t)
	src := snapstoretest.Snapshot(t, 16, []pages.Extent{{Page: 0, N: 4096}}, testWS)
	st, err := snapstore.Open(ctx, js, snapstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, "OBJ_"+snapstore.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	msgs := func() uint64 {
		t.Helper()
		info, err := stream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
	// Cancelled once a few chunks of the memory object are in.
	cctx, cancel := context.WithCancel(ctx)
	go func() {
		for msgs() < 4 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	_, err = st.Publish(cctx, src, snapstoretest.WorkingSetFile)
	cancel()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("publication cancelled midway: %v, want context.Canceled", err)
	}
	if n := msgs(); n != 0 {
		t.Errorf("the stream holds %d messages after a cancelled first publication, want 0", n)
	}
	if _, err := st.Manifest(ctx, src.Manifest.ID); !errors.Is(err, snapstore.ErrNotPublished) {
		t.Errorf("manifest after a cancelled publication: %v, want ErrNotPublished", err)
	}
	m, err := st.Publish(ctx, src, snapstoretest.WorkingSetFile)
	if err != nil {
		t.Fatal(err)
	}
	d, _, err := st.Fetch(ctx, m.ID, filepath.Join(t.TempDir(), "copy"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	sameFile(t, src.MemPath(), d.MemPath())
}
