package serve

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/vmm/vmmtest"
)

// TestClusterForwardNoneLost: bursts of invocations forwarded through
// node1 to node0, the only node that serves f, with one instance: node0
// leaves and joins the group as its instance is taken and freed, and every
// invocation gets its real outcome (200, or 429 once no node had room in
// time), never a 504 "outcome unknown" from a node that answered nothing
// (leaving the group with an unsubscribe dropped the requests NATS had
// already handed node0).
func TestClusterForwardNoneLost(t *testing.T) {
	c := startCluster(t, 2, Config{MaxInstances: 1, QueueTimeout: 3 * time.Second, ForwardTimeout: 5 * time.Second})
	n1 := c.nodes[1]
	c.createOnNode0("f")
	codes := map[int]int{}
	var mu sync.Mutex
	for round := range 4 {
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Go(func() {
				code, body, _ := n1.do("POST", "/v1/functions/f/invoke", fmt.Sprint(1+i%4))
				mu.Lock()
				defer mu.Unlock()
				codes[code]++
				if code != http.StatusOK && code != http.StatusTooManyRequests {
					t.Errorf("round %d, invocation %d: %d %s", round, i, code, body)
				}
			})
		}
		wg.Wait()
	}
	t.Logf("answers by status: %v", codes)
}

// TestClusterForwardSlowStart: the node that takes a forwarded invocation
// is still restoring (it hangs in the state load) when its forwarder's
// deadline draws near: it stops the restore and answers
// in time that it did not run it (instead of running it and answering as
// its forwarder gives up: a 504 "outcome unknown" from a healthy node),
// and the forwarder sends it again: it runs once.
func TestClusterForwardSlowStart(t *testing.T) {
	const forward = 1500 * time.Millisecond
	c := startCluster(t, 2, Config{MaxInstances: 1, ForwardTimeout: forward})
	n0, n1 := c.nodes[0], c.nodes[1]
	c.createOnNode0("f")
	var loads atomic.Int32
	n0.d.Faults = func(_ *vmmtest.Machine, op vmmtest.Op) error {
		if op == vmmtest.OpLoadState && loads.Add(1) == 1 {
			return vmmtest.ErrHang // until the restore's context ends
		}
		return nil
	}
	code, body, resp := n1.do("POST", "/v1/functions/f/invoke", "2")
	if code != http.StatusOK {
		t.Fatalf("a slow start on node0: %d %s, want 200", code, body)
	}
	if got := resp.Header.Get("X-Snapbpf-Node"); got != "node0" {
		t.Errorf("ran on %q, want node0", got)
	}
	if n := len(n0.d.Running()); n != 1 {
		t.Errorf("node0 runs %d VMs after %d restores, want 1", n, loads.Load())
	}
}
