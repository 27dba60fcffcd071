package serve

import (
	"bytes"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/snapbpf/snapbpf/api"
	"github.com/snapbpf/snapbpf/internal/bus"
	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/remotesnap"
	"github.com/snapbpf/snapbpf/internal/snapstore"
)

// limitStore caps the snapshot store's bucket at max bytes (-1: no cap):
// a full store, which refuses uploads.
func limitStore(t *testing.T, b *bus.Bus, max int64) {
	t.Helper()
	_, err := b.JetStream().UpdateObjectStore(t.Context(), jetstream.ObjectStoreConfig{
		Bucket: snapstore.DefaultBucket, Description: "snapbpf snapshots", Replicas: b.Replicas(), MaxBytes: max,
	})
	if err != nil {
		t.Fatal(err)
	}
}

// storeObjects lists the objects of snapshot id in the snapshot store.
func storeObjects(t *testing.T, ts *testService, id string) []string {
	t.Helper()
	names, err := ts.s.store.Objects(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// deleteUnpublishes deletes function name through ts and checks that the
// snapshot store holds nothing of its snapshot id once the delete answers.
func deleteUnpublishes(t *testing.T, ts *testService, name, id string) {
	t.Helper()
	if len(storeObjects(t, ts, id)) == 0 {
		t.Fatalf("the store holds no object of %s's snapshot %s before the delete", name, id)
	}
	if code, body, _ := ts.do("DELETE", "/v1/functions/"+name, ""); code != http.StatusNoContent {
		t.Fatalf("delete %s: %d %s", name, code, body)
	}
	if left := storeObjects(t, ts, id); len(left) != 0 {
		t.Errorf("after deleting %s the store holds %v of its snapshot", name, left)
	}
}

// TestClusterPublishAfterReady: a function is ready on its home before its
// snapshot is in the store. While the store refuses the upload (full), the
// home's record says why and when it retries, and node1 does not serve
// the function but forwards it to node0; once the store takes it, the
// record says so and node1 fetches the snapshot and runs the function
// itself. Deleted through node1, it leaves nothing in the store.
func TestClusterPublishAfterReady(t *testing.T) {
	c := startCluster(t, 2, Config{RemoteFetch: remotesnap.Full, PublishRetry: 200 * time.Millisecond})
	n0, n1 := c.nodes[0], c.nodes[1]
	limitStore(t, c.buses[0], 64<<10)
	f := n0.create("f")
	if f.WSetVersion != 1 || f.Publication == nil || f.Published() {
		t.Fatalf("ready on node0: version %d, publication %+v; want version 1, not published", f.WSetVersion, f.Publication)
	}
	eventually(t, "node1 sees the failed publication and its retry", func() bool {
		f, _ := n1.function("f")
		p := f.Publication
		return f.State == api.StateReady && p != nil && p.WSetVersion == 0 && p.Attempts >= 2 && p.Error != "" && p.RetryAt != nil
	})
	f, _ = n1.function("f")
	t.Logf("publication while the store is full: %+v", *f.Publication)
	if !strings.Contains(f.Publication.Error, "publish snapshot "+f.SnapshotID) {
		t.Errorf("publication error %q does not name the snapshot", f.Publication.Error)
	}
	if slices.Contains(f.ReadyOn, "node1") {
		t.Errorf("node1 serves f before it is published: ready on %v", f.ReadyOn)
	}
	if got := n1.invoke("f", "2", "").Header.Get("X-Snapbpf-Node"); got != "node0" {
		t.Errorf("not published: an invocation through node1 ran on %q, want node0", got)
	}

	limitStore(t, c.buses[0], -1)
	eventually(t, "node1 serves f once the store has it", func() bool {
		f, _ := n1.function("f")
		return f.Published() && slices.Equal(f.ReadyOn, []string{"node0", "node1"})
	})
	f, _ = n0.function("f")
	if p := f.Publication; p.WSetVersion != 1 || p.At == nil || p.Attempts != 0 || p.Error != "" || p.RetryAt != nil {
		t.Errorf("publication once published: %+v, want version 1, its time, no failure", *p)
	}
	if got := n1.invoke("f", "3", "cold").Header.Get("X-Snapbpf-Node"); got != "node1" {
		t.Errorf("published: an invocation through node1 ran on %q, want node1", got)
	}
	// Deleted through node1, which serves it from the store: the store
	// lets go of the snapshot too.
	deleteUnpublishes(t, n1, "f", f.SnapshotID)
}

// TestPublishResumesAfterRestart: a service stopped while its publication
// fails (the store full) ends it, and the next service on the home
// publishes the snapshot.
func TestPublishResumesAfterRestart(t *testing.T) {
	c := startCluster(t, 2, Config{RemoteFetch: remotesnap.Full, PublishRetry: 200 * time.Millisecond})
	n0 := c.nodes[0]
	limitStore(t, c.buses[0], 64<<10)
	n0.create("f")
	eventually(t, "the publication fails", func() bool {
		f, _ := n0.function("f")
		return f.Publication.Attempts >= 1
	})
	n0.s.Drain()
	e := n0.s.reg.get("f")
	eventually(t, "draining ends the publication", func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.publishing == nil
	})
	limitStore(t, c.buses[0], -1)
	time.Sleep(500 * time.Millisecond) // a retry would have come
	if f, _ := n0.function("f"); f.Published() {
		t.Fatalf("published after the drain: %+v", *f.Publication)
	}
	n0 = c.restart(0, nil)
	eventually(t, "published after the restart", func() bool {
		f, _ := c.nodes[1].function("f")
		return f.Published() && slices.Contains(f.ReadyOn, "node1")
	})
}

// TestClusterRerecordPublished: a working set re-recorded on node0 is
// published as version 2, node1 (which serves the function from the
// store) fetches it, and its next cold start prefetches the new set; a
// delete on node0 leaves nothing of the snapshot in the store.
func TestClusterRerecordPublished(t *testing.T) {
	c := startCluster(t, 2, Config{
		RemoteFetch: remotesnap.Full, IdleTimeout: 200 * time.Millisecond,
		Rerecord: RerecordConfig{MissFaults: 10, After: 3},
	})
	n0, n1 := c.nodes[0], c.nodes[1]
	n0.create("f")
	eventually(t, "node1 serves f from the store", func() bool {
		f, _ := n1.function("f")
		return slices.Equal(f.ReadyOn, []string{"node0", "node1"})
	})
	prefetch := func() int64 {
		t.Helper()
		r := n1.invoke("f", "2", "cold")
		if got := r.Header.Get("X-Snapbpf-Node"); got != "node1" {
			t.Fatalf("ran on %q, want node1", got)
		}
		n, _ := strconv.ParseInt(r.Header.Get("X-Snapbpf-Prefetch-Bytes"), 10, 64)
		return n
	}
	before := prefetch()

	e0 := n0.s.reg.get("f")
	for range 3 {
		n0.s.coldRestored(e0, 5, 50)
	}
	eventually(t, "node0 publishes version 2", func() bool {
		f, _ := n1.function("f")
		return f.WSetVersion == 2 && f.Published()
	})
	e1 := n1.s.reg.get("f")
	eventually(t, "node1 fetches version 2", func() bool {
		e1.mu.Lock()
		defer e1.mu.Unlock()
		return e1.wsVersion == 2
	})
	e1.mu.Lock()
	path := e1.wsPath
	e1.mu.Unlock()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(n0.s.reg.snapshotPath("f") + "/" + policy.WorkingSetFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("node1's working set differs from node0's re-recorded one")
	}
	eventually(t, "node1's instance ends idle", func() bool { return len(n1.d.Running()) == 0 })
	after := prefetch()
	t.Logf("node1's cold start prefetched %d bytes before the re-recording, %d after", before, after)
	if after <= before {
		t.Errorf("node1's cold start after the re-recording prefetched %d bytes, before %d: want the larger set", after, before)
	}
	// Deleted on its home, both working set versions go with the rest.
	f, _ := n0.function("f")
	deleteUnpublishes(t, n0, "f", f.SnapshotID)
}
