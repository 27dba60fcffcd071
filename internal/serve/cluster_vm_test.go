package serve

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/api"
	"github.com/snapbpf/snapbpf/internal/bus/bustest"
	"github.com/snapbpf/snapbpf/internal/funcvm"
	"github.com/snapbpf/snapbpf/internal/lazymem"
	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/testenv"
	"github.com/snapbpf/snapbpf/internal/vmm/qemu"
)

// TestClusterRealVM: two nodes on QEMU: a function made on node0 is ready
// there before its snapshot is published, then invoked through node1,
// which has no copy of its snapshot and restores it through lazy remote
// memory (a lazymem mount of the store's snapshot). Once the mount's local
// copy is complete, node1's next cold start restores from the copy while
// the instance restored from the mount still answers; the mount goes when
// that instance ends. Node1 with a copy of the snapshot in its snapshots
// directory restores from that copy, and nothing is left mounted. Each
// result is checked against the function run on the host.
func TestClusterRealVM(t *testing.T) {
	img := testenv.NeedVM(t)
	root, err := testenv.Dir()
	if err != nil {
		t.Fatal(err)
	}
	buses := bustest.Open(t, bustest.Cluster(t, 2))
	type node struct {
		s    *Server
		srv  *http.Server
		c    *http.Client
		home string
	}
	start := func(i int, home string) *node {
		d := &qemu.Driver{RunDir: filepath.Join(home, "run")}
		s, err := New(Config{Home: home, Driver: d, Bus: buses[i], HeartbeatInterval: 200 * time.Millisecond,
			Builder: &NodeBuilder{Driver: d, Image: img, RecordRuns: 1, FreePages: snapshot.FreePagesNone}})
		if err != nil {
			t.Fatal(err)
		}
		os.Remove(filepath.Join(home, "s.sock"))
		sock, srv := serveUnix(t, home, s.Handler())
		n := &node{s: s, srv: srv, c: unixClient(sock), home: home}
		return n
	}
	stop := func(n *node) {
		n.srv.Shutdown(context.Background())
		n.s.Close()
	}
	do := func(n *node, method, path, body string) (int, []byte, http.Header) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://snapbpf"+path, strings.NewReader(body))
		resp, err := n.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := readBody(resp)
		return resp.StatusCode, b, resp.Header
	}
	var nodes [2]*node
	for i := range nodes {
		home, err := os.MkdirTemp(root, fmt.Sprintf("cluster-node%d-", i))
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = start(i, home)
	}
	defer func() {
		for _, n := range nodes {
			stop(n)
		}
	}()
	t0 := time.Now()
	if code, b, _ := do(nodes[0], "POST", "/v1/functions", `{"name":"g1","function":"gzip","runtime":"go"}`); code != 202 {
		t.Fatalf("create on node0: %d %s", code, b)
	}
	// Ready on node0 first, published after: node1 serves g1 only then.
	deadline := time.Now().Add(10 * time.Minute)
	var ready, published time.Duration
	for published == 0 {
		_, b, _ := do(nodes[0], "GET", "/v1/functions/g1", "")
		var f api.Function
		json.Unmarshal(b, &f)
		switch {
		case f.State == api.StateFailed:
			t.Fatalf("g1 failed: %s", f.Error)
		case f.State == api.StateReady && ready == 0:
			ready = time.Since(t0)
		}
		if f.Published() {
			published = time.Since(t0)
		}
		if time.Now().After(deadline) {
			t.Fatalf("g1 not ready and published on node0: %s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("g1 on node0: ready %.1f s after the create, published %.1f s after that", ready.Seconds(), (published - ready).Seconds())
	for {
		_, b, _ := do(nodes[1], "GET", "/v1/functions/g1", "")
		var f api.Function
		json.Unmarshal(b, &f)
		if slices.Contains(f.ReadyOn, "node0") && slices.Contains(f.ReadyOn, "node1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("g1 not ready on node0 and node1 as node1 sees it: %s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	invoke := func(via *node, seed uint64, wantNode string) http.Header {
		t.Helper()
		code, b, h := do(via, "POST", "/v1/functions/g1/invoke", fmt.Sprint(seed))
		if code != 200 {
			t.Fatalf("invoke %d: %d %s", seed, code, b)
		}
		want, _ := funcvm.Expect("gzip", 0, seed)
		var r goResult
		if json.Unmarshal(b, &r); r.Checksum != want {
			t.Errorf("invoke %d: %s, want checksum %s", seed, b, want)
		}
		if got := h.Get("X-Snapbpf-Node"); got != wantNode {
			t.Errorf("invoke %d ran on %q, want %s", seed, got, wantNode)
		}
		t.Logf("invoke %d on %s: %s, total %s ms (restore %s ms)", seed, wantNode, h.Get("X-Snapbpf-Start"), h.Get("X-Snapbpf-Total-Ms"), h.Get("X-Snapbpf-Restore-Ms"))
		return h
	}
	// A cold restore on the home node, to compare with the one through
	// the store.
	invoke(nodes[0], 1, "node0")
	invoke(nodes[1], 2, "node1")
	e := nodes[1].s.reg.get("g1")
	p := e.pool
	// The instance restored through the mount, held busy by the test from
	// here on, so that the next invocation is a cold start.
	hold, release := holdInstances(t, p)
	defer release()
	a := hold()
	if a.snap.lease == nil || !a.snap.lease.Lazy {
		t.Fatalf("node1 restored g1 from %s, want a lazymem mount", a.snap.dir.Path)
	}
	mount := a.snap.dir.Path
	if mounts := lazyMounts(t, nodes[1].home); !slices.Equal(mounts, []string{mount}) {
		t.Errorf("lazymem mounts under node1's home while it serves g1: %v, want [%s]", mounts, mount)
	}

	// The local copy completes (after lazymem's background delay):
	// node1's later cold starts restore from it.
	local := filepath.Join(nodes[1].home, "remote", "snapshots", a.snap.dir.Manifest.ID)
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		e.mu.Lock()
		cur := e.snap
		e.mu.Unlock()
		if cur != a.snap {
			if cur == nil || cur.dir.Path != local || cur.lease.Lazy {
				t.Fatalf("g1 on node1 switched to %+v, want the local copy %s", cur, local)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("node1 still restores g1 through the mount 5 min after its first cold start")
		}
	}
	if mounts := lazyMounts(t, nodes[1].home); !slices.Equal(mounts, []string{mount}) {
		t.Errorf("lazymem mounts once the copy is complete, while an instance restored from the mount runs: %v, want [%s]", mounts, mount)
	}
	// The budget measures both memory files while both are in use.
	var inUse []string
	for _, u := range nodes[1].s.snaps.inUse() {
		inUse = append(inUse, u.dir.MemPath())
	}
	slices.Sort(inUse)
	if want := []string{filepath.Join(mount, snapshot.MemName), filepath.Join(local, snapshot.MemName)}; !slices.Equal(inUse, want) {
		t.Errorf("memory files the budget measures: %v, want %v", inUse, want)
	}
	if h := invoke(nodes[1], 3, "node1"); h.Get("X-Snapbpf-Start") != "cold" {
		t.Fatalf("invoke 3 on node1 with its only instance busy: %s start, want cold", h.Get("X-Snapbpf-Start"))
	}
	p.s.mu.Lock()
	var b *instance
	if len(p.idle) == 1 {
		b = p.idle[0]
	}
	p.s.mu.Unlock()
	if b == nil || b.snap.dir.Path != local || b.snap.lease.Lazy {
		t.Fatalf("the cold start after the switch: %+v, want an instance restored from %s", b, local)
	}
	// The instance restored from the mount still answers, its pages
	// coming from the mount.
	want, _ := funcvm.Expect("gzip", 0, 4)
	inv, err := a.Invoke(context.Background(), 4)
	if err != nil || inv.VM.Checksum != want {
		t.Fatalf("the instance restored from the mount, after the switch: %+v, %v; want checksum %s", inv.VM, err, want)
	}
	release()
	if mounts := lazyMounts(t, nodes[1].home); len(mounts) != 1 {
		t.Errorf("lazymem mounts while the instance restored from the mount is warm: %v, want 1", mounts)
	}
	// Its end (as an eviction) unmounts the mount; the copy's instance
	// serves on.
	if !p.take(a) {
		t.Fatal("the instance restored from the mount is not idle")
	}
	nodes[1].s.end(a, p, "test")
	if mounts := lazyMounts(t, nodes[1].home); len(mounts) != 0 {
		t.Errorf("lazymem mounts once the last instance restored from the mount ended: %v", mounts)
	}
	if h := invoke(nodes[1], 5, "node1"); h.Get("X-Snapbpf-Start") != "warm" {
		t.Errorf("invoke 5 on node1: %s start, want warm (the copy's instance)", h.Get("X-Snapbpf-Start"))
	}
	// A cold start from the local copy out of the page cache (the copy's
	// writes left it cached): what a later one meets.
	hold()
	if _, err := pagecache.Drop(filepath.Join(local, snapshot.MemName)); err != nil {
		t.Fatal(err)
	}
	if h := invoke(nodes[1], 7, "node1"); h.Get("X-Snapbpf-Start") != "cold" {
		t.Errorf("invoke 7 on node1 with its only instance busy: %s start, want cold", h.Get("X-Snapbpf-Start"))
	}
	release()

	stop(nodes[1])
	if mounts := lazyMounts(t, nodes[1].home); len(mounts) != 0 {
		t.Errorf("lazymem mounts left after node1 stopped: %v", mounts)
	}
	dst := filepath.Join(nodes[1].home, "snapshots", "g1")
	if out, err := exec.Command("cp", "-a", "--sparse=always", nodes[0].s.reg.snapshotPath("g1"), dst).CombinedOutput(); err != nil {
		t.Fatalf("copy the snapshot: %v: %s", err, out)
	}
	nodes[1] = start(1, nodes[1].home)
	invoke(nodes[1], 6, "node1")
}

// holdInstances returns hold, which takes an idle instance of p and keeps
// it busy (so that the next invocation is a cold start), and release,
// which gives the held ones back, warm. Defer release: a node's Close
// waits for the busy instances.
func holdInstances(t *testing.T, p *pool) (hold func() *instance, release func()) {
	var held []*instance
	hold = func() *instance {
		t.Helper()
		in, _, err := p.acquire(context.Background(), time.Now().Add(time.Minute))
		if err != nil || in == nil {
			t.Fatalf("an idle instance of %s: %v, %v", p.e.name, in, err)
		}
		held = append(held, in)
		return in
	}
	release = func() {
		for _, in := range held {
			p.release(in, true)
		}
		held = nil
	}
	return hold, release
}

// lazyMounts lists the lazymem mounts under dir.
func lazyMounts(t *testing.T, dir string) []string {
	t.Helper()
	ms, err := lazymem.MountsUnder(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}
