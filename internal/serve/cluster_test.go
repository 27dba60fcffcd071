package serve

// Tests of the service on a cluster of three nodes: three embedded NATS
// servers routed on loopback (TLS, nkeys), each node a service on the fake
// VMM with its own home.

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/api"
	"github.com/snapbpf/snapbpf/internal/bus"
	"github.com/snapbpf/snapbpf/internal/bus/bustest"
	"github.com/snapbpf/snapbpf/internal/vmm/vmmtest"
)

// testCluster is n nodes, each a service on its own bus.
type testCluster struct {
	t     testing.TB
	buses []*bus.Bus
	nodes []*testService
	cfg   Config
}

// startCluster starts n nodes with cfg's limits and a fast heartbeat.
func startCluster(t testing.TB, n int, cfg Config) *testCluster {
	t.Helper()
	// Routing between nodes that have a snapshot and nodes that have not:
	// fetching it from the store (TestClusterRealVM, or cfg.RemoteFetch
	// set) would make every node serve every function.
	cfg.NoRemoteFetch = cfg.RemoteFetch == ""
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = 200 * time.Millisecond
	}
	c := &testCluster{t: t, cfg: cfg, buses: bustest.Open(t, bustest.Cluster(t, n))}
	for i := range n {
		c.nodes = append(c.nodes, c.start(i, ""))
	}
	return c
}

// start starts node i's service (in home, a new one if empty).
func (c *testCluster) start(i int, home string) *testService {
	cfg := c.cfg
	cfg.Bus = c.buses[i]
	return startService(c.t, home, cfg, nil)
}

// restart stops node i's service and starts another on its home and bus;
// before, if set, runs in between.
func (c *testCluster) restart(i int, before func(home string)) *testService {
	old := c.nodes[i]
	old.stop()
	if before != nil {
		before(old.home)
	}
	os.Remove(old.sock)
	c.nodes[i] = c.start(i, old.home)
	return c.nodes[i]
}

// copySnapshot gives node to a copy of node from's snapshot of name.
func copySnapshot(t testing.TB, from *testService, toHome, name string) {
	t.Helper()
	dst := filepath.Join(toHome, "snapshots", name)
	os.MkdirAll(filepath.Dir(dst), 0o700)
	out, err := exec.Command("cp", "-a", "--sparse=always", from.s.reg.snapshotPath(name), dst).CombinedOutput()
	if err != nil {
		t.Fatalf("copy the snapshot: %v: %s", err, out)
	}
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10 s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (ts *testService) function(name string) (api.Function, int) {
	code, body, _ := ts.do("GET", "/v1/functions/"+name, "")
	var f api.Function
	json.Unmarshal(body, &f)
	return f, code
}

func (ts *testService) nodes() []string {
	_, body, _ := ts.do("GET", "/v1/nodes", "")
	var l api.NodeList
	json.Unmarshal(body, &l)
	var out []string
	for _, n := range l.Nodes {
		out = append(out, n.Node)
	}
	return out
}

// TestClusterRegistry: a function registered on node0 is listed by every
// node, invoked through any of them (node0 runs it), refused a second
// registration elsewhere, deleted through another node everywhere with
// node0's snapshot; the nodes list one another.
func TestClusterRegistry(t *testing.T) {
	c := startCluster(t, 3, Config{})
	n0, n1, n2 := c.nodes[0], c.nodes[1], c.nodes[2]
	eventually(t, "every node lists 3 nodes", func() bool {
		return slices.Equal(n2.nodes(), []string{"node0", "node1", "node2"})
	})
	n0.create("f")
	for _, n := range c.nodes[1:] {
		eventually(t, "node lists f ready on node0", func() bool {
			f, code := n.function("f")
			return code == 200 && f.State == api.StateReady && f.Node == "node0" && slices.Equal(f.ReadyOn, []string{"node0"})
		})
	}
	resp := n1.invoke("f", "3", "cold")
	if got := resp.Header.Get("X-Snapbpf-Node"); got != "node0" {
		t.Errorf("invoked through node1: ran on %q, want node0", got)
	}
	if code, body, _ := n2.do("POST", "/v1/functions", `{"name":"f","function":"linpack","memory_mib":4,"data_mib":1}`); code != http.StatusConflict {
		t.Errorf("f again on node2: %d %s, want 409", code, body)
	}
	if code, body, _ := n2.do("DELETE", "/v1/functions/f", ""); code != http.StatusNoContent {
		t.Fatalf("delete through node2: %d %s", code, body)
	}
	eventually(t, "f gone from node0 with its snapshot and instance", func() bool {
		_, code := n0.function("f")
		_, err := os.Stat(n0.s.reg.snapshotPath("f"))
		return code == http.StatusNotFound && os.IsNotExist(err) && len(n0.d.Running()) == 0
	})
	if _, code := n1.function("f"); code != http.StatusNotFound {
		t.Errorf("node1 still lists f: %d", code)
	}
}

// TestClusterRoutesToCapacity: with node0's only instance busy, an
// invocation through node0 runs on node1 (which holds a copy of the
// snapshot), and one through node2 (no copy) too; node0 leaves the group
// while busy and joins again after.
func TestClusterRoutesToCapacity(t *testing.T) {
	c := startCluster(t, 3, Config{MaxInstances: 1, QueueTimeout: 5 * time.Second})
	n0 := c.nodes[0]
	n0.create("f")
	c.restart(1, func(home string) { copySnapshot(t, n0, home, "f") })
	eventually(t, "f ready on node0 and node1", func() bool {
		f, _ := c.nodes[2].function("f")
		return slices.Equal(f.ReadyOn, []string{"node0", "node1"})
	})
	gate := n0.holdRestores()
	var once sync.Once
	release := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release) // before the services stop
	held := make(chan *http.Response, 1)
	go func() { _, _, r := n0.do("POST", "/v1/functions/f/invoke", "1"); held <- r }()
	eventually(t, "node0's instance busy", func() bool { return len(n0.d.Machines()) == 1 })
	for _, via := range []*testService{n0, c.nodes[2], n0} {
		resp := via.invoke("f", "2", "")
		if got := resp.Header.Get("X-Snapbpf-Node"); got != "node1" {
			t.Errorf("node0 busy: ran on %q, want node1", got)
		}
	}
	if n := len(n0.d.Machines()); n != 1 {
		t.Errorf("node0 started %d VMs with its only instance busy", n)
	}
	release()
	if r := <-held; r.StatusCode != 200 {
		t.Errorf("the held invocation: %d", r.StatusCode)
	}
	// Node0 free again: through node0 it runs there.
	if got := n0.invoke("f", "4", "warm").Header.Get("X-Snapbpf-Node"); got != "node0" {
		t.Errorf("node0 free: ran on %q", got)
	}
}

// TestClusterAtMostOnce: a node that takes an invocation and hangs makes
// the caller's node answer 504 "outcome unknown" at the forward deadline,
// and the invocation is not sent again (the hanging node had room for a
// second one, and started only one).
func TestClusterAtMostOnce(t *testing.T) {
	c := startCluster(t, 2, Config{MaxInstances: 2, ForwardTimeout: 1500 * time.Millisecond})
	n0, n1 := c.nodes[0], c.nodes[1]
	c.createOnNode0("f")
	var loads atomic.Int32
	gate := make(chan struct{})
	t.Cleanup(func() { close(gate) })
	n0.d.Faults = func(_ *vmmtest.Machine, op vmmtest.Op) error {
		if op == vmmtest.OpLoadState {
			loads.Add(1)
			<-gate
		}
		return nil
	}
	t0 := time.Now()
	code, body, _ := n1.do("POST", "/v1/functions/f/invoke", "1")
	took := time.Since(t0)
	if code != http.StatusGatewayTimeout {
		t.Fatalf("a hanging node: %d %s, want 504", code, body)
	}
	errorBody(t, body, "outcome unknown")
	if took > 3*time.Second {
		t.Errorf("the 504 came after %v; the forward deadline is 1.5 s", took)
	}
	time.Sleep(500 * time.Millisecond)
	if n := loads.Load(); n != 1 {
		t.Errorf("%d restores started for one invocation, want 1", n)
	}
}

// TestClusterNodeDropsOut: a node that stops drops out of the nodes list
// and of routing at once, one whose heartbeats stop within 3 intervals; an
// invocation of a function no live node serves is refused at once.
func TestClusterNodeDropsOut(t *testing.T) {
	c := startCluster(t, 3, Config{})
	n0, n2 := c.nodes[0], c.nodes[2]
	n0.create("f")
	eventually(t, "f ready on node0", func() bool {
		f, _ := n2.function("f")
		return slices.Equal(f.ReadyOn, []string{"node0"})
	})
	// A node that dies without a word: a heartbeat that is never
	// renewed.
	kv, err := c.buses[2].JetStream().KeyValue(t.Context(), NodesBucket)
	if err != nil {
		t.Fatal(err)
	}
	ghost, _ := json.Marshal(api.Node{Node: "ghost", Functions: []string{"f"}, At: time.Now()})
	if _, err := kv.Put(t.Context(), "ghost", ghost); err != nil {
		t.Fatal(err)
	}
	eventually(t, "node2 lists the ghost", func() bool { return slices.Contains(n2.nodes(), "ghost") })
	t0 := time.Now()
	eventually(t, "the ghost drops out", func() bool { return !slices.Contains(n2.nodes(), "ghost") })
	if d := time.Since(t0); d > 4*c.cfg.HeartbeatInterval+time.Second {
		t.Errorf("the ghost dropped out after %v", d)
	}

	n0.stop()
	t0 = time.Now()
	eventually(t, "node0 drops out", func() bool { return !slices.Contains(n2.nodes(), "node0") })
	t.Logf("node0 dropped out %v after it stopped", time.Since(t0))
	t0 = time.Now()
	code, body, _ := n2.do("POST", "/v1/functions/f/invoke", "1")
	if code != http.StatusConflict || time.Since(t0) > time.Second {
		t.Errorf("f served by no node: %d %s after %v, want 409 at once", code, body, time.Since(t0))
	}
	errorBody(t, body, "served by no node")
}

// TestMigrateFileRegistry: a home with the file registry of a service
// before the bus starts with its functions in the bucket, once.
func TestMigrateFileRegistry(t *testing.T) {
	home := t.TempDir()
	old := api.Function{Name: "old1", Function: "linpack", Runtime: "go", MemMiB: 4, DataMiB: 1, State: api.StateFailed, Error: "from before"}
	b, _ := json.Marshal(old)
	os.MkdirAll(filepath.Join(home, "functions"), 0o700)
	if err := os.WriteFile(filepath.Join(home, "functions", "old1.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	ts := startService(t, home, Config{}, nil)
	f, code := ts.function("old1")
	if code != 200 || f.State != api.StateFailed || f.Error != "from before" || f.Node == "" {
		t.Fatalf("migrated function: %d %+v", code, f)
	}
	if _, err := os.Stat(filepath.Join(home, "functions.migrated", "old1.json")); err != nil {
		t.Errorf("the old registry was not set aside: %v", err)
	}
	ts.stop()
	os.Remove(ts.sock)
	ts = startService(t, home, Config{}, nil)
	if f, code := ts.function("old1"); code != 200 || f.State != api.StateFailed {
		t.Errorf("after a restart: %d %+v", code, f)
	}
}

// createOnNode0 creates function name on node0 and waits until node1 sees
// it ready there.
func (c *testCluster) createOnNode0(name string) {
	c.t.Helper()
	n0, n1 := c.nodes[0], c.nodes[1]
	n0.create(name)
	eventually(c.t, "node1 sees "+name+" ready on node0", func() bool {
		f, _ := n1.function(name)
		return slices.Equal(f.ReadyOn, []string{"node0"})
	})
}
