package serve

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/snapbpf/snapbpf/api"
)

// NodesBucket is the JetStream key-value bucket of the heartbeats: key
// NODE, value its api.Node, put every heartbeat interval. Its entries
// expire (MaxAge) a few intervals after a node's last beat, and a node
// not heard from in staleAfter beats is left out before that.
const NodesBucket = "snapbpf-nodes"

// staleAfter is how many missed heartbeats leave a node out.
const staleAfter = 3

// heartbeats puts this node's status in the nodes bucket and follows the
// others'.
type heartbeats struct {
	s  *Server
	kv jetstream.KeyValue

	mu sync.Mutex
	// seen is each node's last heartbeat and when this node received it
	// (its own clock: the nodes' clocks may differ).
	seen map[string]beat
}

type beat struct {
	n   api.Node
	got time.Time
}

func newHeartbeats(ctx context.Context, s *Server) (*heartbeats, error) {
	kv, err := s.bus.KeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      NodesBucket,
		Description: "snapbpf node heartbeats: NODE -> its status",
		History:     1,
		TTL:         (staleAfter + 2) * s.cfg.HeartbeatInterval,
		Storage:     jetstream.MemoryStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("serve: the heartbeat bucket: %w", err)
	}
	return &heartbeats{s: s, kv: kv, seen: map[string]beat{}}, nil
}

// run beats every interval and follows the others' beats until the
// service closes; it then deletes its own, so the node drops out at once.
func (h *heartbeats) run() {
	s := h.s
	defer s.wg.Done()
	w, err := h.kv.WatchAll(s.ctx)
	if err != nil {
		slog.Error("serve: heartbeats: watch", "err", err)
	}
	var updates <-chan jetstream.KeyValueEntry
	if w != nil {
		defer w.Stop()
		updates = w.Updates()
	}
	tick := time.NewTicker(s.cfg.HeartbeatInterval)
	defer tick.Stop()
	h.beat()
	for {
		select {
		case <-s.ctx.Done():
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			h.kv.Delete(ctx, s.cfg.Node)
			cancel()
			return
		case <-tick.C:
			h.beat()
		case u := <-updates:
			h.follow(u)
		}
	}
}

func (h *heartbeats) follow(u jetstream.KeyValueEntry) {
	if u == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if u.Operation() != jetstream.KeyValuePut {
		delete(h.seen, u.Key())
		return
	}
	var n api.Node
	if err := json.Unmarshal(u.Value(), &n); err != nil || n.Node != u.Key() {
		return
	}
	h.seen[n.Node] = beat{n: n, got: time.Now()}
}

// status is this node's heartbeat now.
func (h *heartbeats) status() api.Node {
	s := h.s
	n := api.Node{Node: s.cfg.Node, Address: s.cfg.Address, Functions: []string{}, MemoryBudgetBytes: s.cfg.MemoryBudget, At: time.Now().UTC()}
	for _, e := range s.reg.all() {
		if s.servable(e) {
			n.Functions = append(n.Functions, e.name)
		}
		c := e.pool.counts()
		n.Instances.Warm += c.Warm
		n.Instances.Busy += c.Busy
	}
	slices.Sort(n.Functions)
	n.MemoryUsedBytes = s.budget.measure().Total()
	s.mu.Lock()
	n.Draining = s.draining
	s.mu.Unlock()
	return n
}

func (h *heartbeats) beat() {
	n := h.status()
	b, err := json.Marshal(n)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(h.s.ctx, h.s.cfg.HeartbeatInterval)
	defer cancel()
	if _, err := h.kv.Put(ctx, n.Node, b); err != nil && h.s.ctx.Err() == nil {
		slog.Warn("serve: heartbeat not sent", "err", err)
	}
	// This node knows itself without the round trip.
	h.mu.Lock()
	h.seen[n.Node] = beat{n: n, got: time.Now()}
	h.mu.Unlock()
}

// nodes are the nodes heard from in the last staleAfter intervals, by
// name.
func (h *heartbeats) nodes() []api.Node {
	cut := time.Now().Add(-staleAfter * h.s.cfg.HeartbeatInterval)
	h.mu.Lock()
	defer h.mu.Unlock()
	out := []api.Node{}
	for _, b := range h.seen {
		if b.got.After(cut) {
			out = append(out, b.n)
		}
	}
	slices.SortFunc(out, func(a, b api.Node) int { return strings.Compare(a.Node, b.Node) })
	return out
}

// readyOn are the live nodes that serve function name, by name.
func (h *heartbeats) readyOn(name string) []string {
	var out []string
	for _, n := range h.nodes() {
		if !n.Draining && slices.Contains(n.Functions, name) {
			out = append(out, n.Node)
		}
	}
	return out
}

// Nodes lists the nodes whose heartbeat is current.
func (s *Server) Nodes() []api.Node { return s.beats.nodes() }

// Node is this node's name.
func (s *Server) Node() string { return s.cfg.Node }

// NATS says where this node's NATS is: its embedded server's client and
// route addresses when it listens, "in-process" when it does not, or
// "external".
func (s *Server) NATS() string {
	switch {
	case s.bus.ClientURL() != "":
		return s.bus.ClientURL() + " routes " + s.bus.RouteURL()
	case s.cfg.BusConfig.URL != "":
		return "external"
	}
	return "in-process"
}
