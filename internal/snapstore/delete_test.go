package snapstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/snapstore"
	"github.com/snapbpf/snapbpf/internal/snapstore/snapstoretest"
)

// TestDelete: deleting a snapshot published with two working set versions
// leaves none of its objects and none of their chunks in the bucket, and
// its manifest not found; another snapshot's objects stay whole; deleting
// again is no error.
func TestDelete(t *testing.T) {
	ctx := context.Background()
	js := snapstoretest.Embedded(t)
	st, err := snapstore.Open(ctx, js, snapstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	src := snapstoretest.Snapshot(t, 8, testData, testWS)
	other := snapstoretest.Snapshot(t, 8, testData, testWS)
	id := src.Manifest.ID
	if _, err := st.Publish(ctx, src, snapstoretest.WorkingSetFile); err != nil {
		t.Fatal(err)
	}
	setWorkingSet(t, src, append([]pages.Extent{{Page: 1500, N: 30}}, testWS...))
	if _, err := st.PublishVersion(ctx, src, snapstoretest.WorkingSetFile, 2); err != nil {
		t.Fatal(err)
	}
	kept, err := st.Publish(ctx, other, snapstoretest.WorkingSetFile)
	if err != nil {
		t.Fatal(err)
	}
	obs, err := js.ObjectStore(ctx, snapstore.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	names := func(id string) []string {
		t.Helper()
		infos, err := obs.List(ctx)
		if err != nil && !errors.Is(err, jetstream.ErrNoObjectsFound) {
			t.Fatal(err)
		}
		var out []string
		for _, info := range infos {
			if strings.HasPrefix(info.Name, id+".") {
				out = append(out, info.Name)
			}
		}
		return out
	}
	// manifest, mem, state, early.1, ws.1, early.2, ws.2
	if n := names(id); len(n) != 7 {
		t.Fatalf("before the delete the bucket holds %v of snapshot %s, want 7 objects", n, id)
	}

	if err := st.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if n := names(id); len(n) != 0 {
		t.Errorf("after the delete the bucket holds %v of snapshot %s, want nothing", n, id)
	}
	if _, err := st.Manifest(ctx, id); !errors.Is(err, snapstore.ErrNotPublished) {
		t.Errorf("manifest after the delete: %v, want ErrNotPublished", err)
	}
	// Nothing of it stays in the stream, not even the markers deleted
	// objects leave: the messages left are the other snapshot's chunks
	// (its manifest's one too) and the infos of its 5 objects.
	stream, err := js.Stream(ctx, "OBJ_"+snapstore.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := uint64(kept.Mem.Chunks() + kept.State.Chunks() + kept.Early.Chunks() + kept.WorkingSet.Chunks() + 1 + 5)
	if info.State.Msgs != want {
		t.Errorf("the stream holds %d messages after the delete, want the other snapshot's %d", info.State.Msgs, want)
	}
	if got, err := st.Manifest(ctx, other.Manifest.ID); err != nil || got.WSetVersion() != 1 {
		t.Errorf("the other snapshot's manifest after the delete: %v", err)
	}
	if n := names(other.Manifest.ID); len(n) != 5 {
		t.Errorf("the other snapshot's objects after the delete: %v, want 5", n)
	}
	if err := st.Delete(ctx, id); err != nil {
		t.Errorf("deleting again: %v, want nil", err)
	}
}
