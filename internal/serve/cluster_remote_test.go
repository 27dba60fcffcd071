package serve

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/bus/bustest"
)

// TestClusterRemoteSwitch: node1 has no copy of node0's function and
// restores it through a lazymem mount of the snapshot store's copy (real
// FUSE and NATS, the fake VMM). Once the mount's local copy is complete,
// node1's next cold start restores from the copy while the instance
// restored from the mount still runs and answers; the mount goes when
// that instance ends, not before.
func TestClusterRemoteSwitch(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: lazymem mounts FUSE with mount(2)")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no /dev/fuse: %v", err)
	}
	buses := bustest.Open(t, bustest.Cluster(t, 2))
	cfg := Config{HeartbeatInterval: 200 * time.Millisecond, RemoteBackgroundDelay: 200 * time.Millisecond}
	var nodes []*testService
	for _, b := range buses {
		c := cfg
		c.Bus = b
		nodes = append(nodes, startService(t, "", c, nil))
	}
	t.Cleanup(func() {
		if ms := lazyMounts(t, nodes[1].home); len(ms) != 0 {
			t.Errorf("lazymem mounts left after node1 closed: %v", ms)
		}
	})
	nodes[0].create("f1")
	n1 := nodes[1]
	eventually(t, "f1 fetchable on node1", func() bool {
		e := n1.s.reg.get("f1")
		return e != nil && n1.s.servable(e)
	})
	invoke := func(want string) {
		t.Helper()
		code, b, resp := n1.do("POST", "/v1/functions/f1/invoke", "1")
		if code != http.StatusOK || resp.Header.Get("X-Snapbpf-Node") != "" && resp.Header.Get("X-Snapbpf-Node") != n1.s.cfg.Node {
			t.Fatalf("invoke on node1: %d %s (node %s)", code, b, resp.Header.Get("X-Snapbpf-Node"))
		}
		if got := resp.Header.Get("X-Snapbpf-Start"); got != want {
			t.Fatalf("invoke on node1: %s start, want %s", got, want)
		}
	}
	invoke("cold")
	e := n1.s.reg.get("f1")
	p := e.pool
	hold, release := holdInstances(t, p)
	defer release()
	a := hold()
	if !a.snap.lease.Lazy {
		t.Fatalf("node1 restored f1 from %s, want a mount", a.snap.dir.Path)
	}
	mount := a.snap.dir.Path
	local := filepath.Join(n1.home, "remote", "snapshots", a.snap.dir.Manifest.ID)
	eventually(t, "node1 switched to the local copy", func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.snap != a.snap
	})
	e.mu.Lock()
	cur := e.snap
	e.mu.Unlock()
	if cur == nil || cur.dir.Path != local || cur.lease.Lazy {
		t.Fatalf("node1 switched to %+v, want the local copy %s", cur, local)
	}
	if ms := lazyMounts(t, n1.home); !slices.Equal(ms, []string{mount}) {
		t.Fatalf("mounts after the switch with an instance restored from the mount: %v, want [%s]", ms, mount)
	}
	invoke("cold") // a is busy
	n1.s.mu.Lock()
	b := p.idle[len(p.idle)-1]
	n1.s.mu.Unlock()
	if b.snap.dir.Path != local {
		t.Errorf("the cold start after the switch restored from %s, want %s", b.snap.dir.Path, local)
	}
	if _, err := a.Invoke(context.Background(), 2); err != nil {
		t.Errorf("the instance restored from the mount, after the switch: %v", err)
	}
	release()
	if ms := lazyMounts(t, n1.home); len(ms) != 1 {
		t.Errorf("mounts while the instance restored from the mount is warm: %v, want 1", ms)
	}
	if !p.take(a) {
		t.Fatal("the instance restored from the mount is not idle")
	}
	n1.s.end(a, p, "test")
	if ms := lazyMounts(t, n1.home); len(ms) != 0 {
		t.Errorf("mounts once the last instance restored from the mount ended: %v", ms)
	}
	invoke("warm")
}
