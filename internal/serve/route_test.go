package serve

import (
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestClusterForwardNoneLost: bursts of invocations forwarded through
// node1 to node0, the only node that serves f, with one instance: node0
// leaves and joins the group as its instance is taken and freed, and every
// invocation gets its real outcome (200, or 429 once no node had room in
// time), never a 504 "outcome unknown" from a node that answered nothing
// (leaving the group with an unsubscribe dropped the requests NATS had
// already handed node0).
func TestClusterForwardNoneLost(t *testing.T) {
	c := startCluster(t, 2, Config{MaxInstances: 1, QueueTimeout: 3 * time.Second, ForwardTimeout: 2 * time.Second})
	n0, n1 := c.nodes[0], c.nodes[1]
	n0.create("f")
	eventually(t, "node1 sees f ready on node0", func() bool {
		f, _ := n1.function("f")
		return slices.Equal(f.ReadyOn, []string{"node0"})
	})
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
