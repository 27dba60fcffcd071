package bus_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/snapbpf/snapbpf/internal/bus"
	"github.com/snapbpf/snapbpf/internal/bus/bustest"
	"github.com/snapbpf/snapbpf/internal/testenv"
)

func TestEmbeddedPersistsAndLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	before := runtime.NumGoroutine()
	ctx := t.Context()
	for round := range 2 {
		b, err := bus.Open(ctx, bus.Config{Dir: dir, Name: "solo"})
		if err != nil {
			t.Fatal(err)
		}
		if u := b.ClientURL(); u != "" {
			t.Errorf("the in-process server listens at %s", u)
		}
		kv, err := b.KeyValue(ctx, jetstream.KeyValueConfig{Bucket: "t"})
		if err != nil {
			t.Fatal(err)
		}
		if round == 0 {
			if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
				t.Fatal(err)
			}
		} else {
			e, err := kv.Get(ctx, "k")
			if err != nil || string(e.Value()) != "v" {
				t.Fatalf("after a restart on the same store: %v, %v", e, err)
			}
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if n := testenv.SettledGoroutines(before); n > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines before, %d after close:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

func TestListeningRefusedWithoutAuthAndTLS(t *testing.T) {
	full := bustest.Cluster(t, 1)[0]
	for _, tc := range []struct {
		name string
		edit func(c *bus.Config)
		want []string
	}{
		{"no creds", func(c *bus.Config) { c.Creds = "" }, []string{"--nats-creds"}},
		{"no TLS", func(c *bus.Config) { c.TLS = bus.TLSFiles{} }, []string{"--nats-tls-cert", "--nats-tls-ca"}},
		{"no CA", func(c *bus.Config) { c.TLS.CA = "" }, []string{"--nats-tls-ca"}},
		{"neither", func(c *bus.Config) { c.Creds, c.TLS = "", bus.TLSFiles{} }, []string{"--nats-creds", "--nats-tls-key"}},
		{"url and cluster", func(c *bus.Config) { c.URL = "nats://127.0.0.1:4222" }, []string{"--nats", "--cluster"}},
		{"no peers", func(c *bus.Config) { c.Cluster.Peers = nil }, []string{"--cluster-peers"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := full
			cl := *full.Cluster
			c.Cluster = &cl
			tc.edit(&c)
			b, err := bus.Open(t.Context(), c)
			if err == nil {
				b.Close()
				t.Fatal("opened")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %s", err, w)
				}
			}
		})
	}
}

func TestClusterReplicatesAndAuthenticates(t *testing.T) {
	if testing.Short() {
		t.Skip("a 3-server cluster takes seconds to elect its leaders")
	}
	before := runtime.NumGoroutine()
	cfgs := bustest.Cluster(t, 3)
	t0 := time.Now()
	bs := bustest.Open(t, cfgs)
	t.Logf("3 servers with JetStream up in %v", time.Since(t0))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if r := bs[0].Replicas(); r != 3 {
		t.Errorf("replicas %d, want 3", r)
	}
	kv0, err := bs[0].KeyValue(ctx, jetstream.KeyValueConfig{Bucket: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv0.Put(ctx, "k", []byte("from node0")); err != nil {
		t.Fatal(err)
	}
	kv2, err := bs[2].KeyValue(ctx, jetstream.KeyValueConfig{Bucket: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if e, err := kv2.Get(ctx, "k"); err != nil || string(e.Value()) != "from node0" {
		t.Fatalf("node2 reads %v, %v", e, err)
	}

	// A client without credentials, or without TLS, is turned away.
	url := bs[1].ClientURL()
	if nc, err := nats.Connect(url, nats.Secure(mustTLS(t, cfgs[1])), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Error("a client without an nkey was let in")
	}
	if nc, err := nats.Connect(strings.Replace(url, "tls://", "nats://", 1), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Error("a client without TLS was let in")
	}
	// With both it gets in.
	seed, err := nats.NkeyOptionFromSeed(cfgs[0].Creds)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, nats.Secure(mustTLS(t, cfgs[1])), seed, nats.MaxReconnects(0))
	if err != nil {
		t.Fatalf("a client with an nkey and TLS: %v", err)
	}
	nc.Close()

	// One server down, the other two still take writes and reads.
	if err := bs[0].Close(); err != nil {
		t.Fatal(err)
	}
	kv1, err := bs[1].KeyValue(ctx, jetstream.KeyValueConfig{Bucket: "t"})
	if err != nil {
		t.Fatal(err)
	}
	for {
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		_, err := kv1.Put(cctx, "k", []byte("after"))
		ccancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no write with 2 of 3 servers: %v", err)
		}
	}
	// Reads are direct gets any replica answers: node2's copy catches up.
	for {
		e, err := kv2.Get(ctx, "k")
		if err == nil && string(e.Value()) == "after" {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("node2 reads %v, %v", e, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, b := range bs[1:] {
		b.Close()
	}
	if n := testenv.SettledGoroutines(before); n > before {
		t.Errorf("%d goroutines before, %d after close", before, n)
	}
	// Every port is free again.
	for _, c := range cfgs {
		for _, a := range []string{c.Cluster.Listen, c.Cluster.RouteListen} {
			if err := listenFree(a); err != nil {
				t.Errorf("%s still taken: %v", a, err)
			}
		}
	}
}

func TestRouteNeedsCertificateFromCA(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers")
	}
	good := bustest.Cluster(t, 2)
	bad := bustest.Cluster(t, 1)[0] // another CA
	// Node 1 of the good pair, with a certificate from the other CA:
	// the route must not form, so JetStream never gets a quorum.
	c := good[1]
	c.TLS = bad.TLS
	c.ReadyTimeout = 3 * time.Second
	errs := make(chan error, 2)
	var opened []*bus.Bus
	results := make(chan *bus.Bus, 2)
	for _, cfg := range []bus.Config{good[0], c} {
		cfg.ReadyTimeout = 3 * time.Second
		go func() {
			b, err := bus.Open(context.Background(), cfg)
			results <- b
			errs <- err
		}()
	}
	for range 2 {
		if b := <-results; b != nil {
			opened = append(opened, b)
		}
		if err := <-errs; err == nil {
			t.Error("a server reached JetStream with a peer from another CA")
		} else if !errors.Is(err, context.DeadlineExceeded) && !strings.Contains(err.Error(), "JetStream") {
			t.Errorf("unexpected error: %v", err)
		}
	}
	for _, b := range opened {
		b.Close()
	}
}

// TestJoinExternal: a node that joins a listening server (--nats URL) with
// an nkey it allows and the CA shares its buckets; without the nkey it is
// refused.
func TestJoinExternal(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a listening server")
	}
	cfgs := bustest.Cluster(t, 2)
	srv := bustest.Open(t, cfgs)[0]
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	kv, err := srv.KeyValue(ctx, jetstream.KeyValueConfig{Bucket: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	// cfgs[0].Cluster.Users lists the node's own key: its seed is allowed.
	b, err := bus.Open(ctx, bus.Config{Name: "joiner", URL: srv.ClientURL(), Creds: cfgs[0].Creds, TLS: bus.TLSFiles{CA: cfgs[0].TLS.CA}, ReadyTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	kv2, err := b.KeyValue(ctx, jetstream.KeyValueConfig{Bucket: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if e, err := kv2.Get(ctx, "k"); err != nil || string(e.Value()) != "v" {
		t.Fatalf("the joiner reads %v, %v", e, err)
	}
	other := bustest.Cluster(t, 1)[0] // a seed the server does not know
	if b, err := bus.Open(ctx, bus.Config{Name: "stranger", URL: srv.ClientURL(), Creds: other.Creds, TLS: bus.TLSFiles{CA: cfgs[0].TLS.CA}, ReadyTimeout: 2 * time.Second}); err == nil {
		b.Close()
		t.Error("a node with an unknown nkey joined")
	}
}

// TestRouteFailuresSummarised: while its peer is down a server retries
// the route every second per route connection, each failure an error in
// the server's own log; through bus they come out as one warning (the
// next only after summaryInterval, 30 s), none at error, and the route's
// return as one info line.
func TestRouteFailuresSummarised(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 2-server cluster")
	}
	cfgs := bustest.Cluster(t, 2)
	var logs lockedBuffer
	cfgs[0].Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("node0's log:\n%s", logs.String())
		}
	})
	peer := cfgs[1].Cluster.RouteListen
	// Only the server that dialled a route redials it when it drops, so
	// node1 listens before node0 starts and node0's routes are its own.
	open1 := make(chan error, 1)
	var b1 *bus.Bus
	go func() {
		var err error
		b1, err = bus.Open(context.Background(), cfgs[1])
		open1 <- err
	}()
	// Dialled, not bound, to see it listen: a test listener on its port
	// could make node1's fail.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", peer, time.Second); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node1 not listening for routes at %s within 30 s", peer)
		}
	}
	b0, err := bus.Open(t.Context(), cfgs[0])
	err1 := <-open1
	// b1 is reopened below; Close is a no-op on a closed Bus.
	t.Cleanup(func() {
		if b1 != nil {
			b1.Close()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer b0.Close()
	if err1 != nil {
		t.Fatal(err1)
	}

	from := logs.Len()
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}
	// Long enough for several attempts per route connection.
	time.Sleep(4 * time.Second)
	var failures int
	for _, l := range logs.LinesFrom(from) {
		if strings.Contains(l, `"level":"ERROR"`) {
			t.Errorf("logged at error while the peer is down: %s", l)
		}
		if strings.Contains(l, peer) {
			failures++
			t.Logf("peer down: %s", l)
			if !strings.Contains(l, `"level":"WARN"`) {
				t.Errorf("a failure to reach the peer not at warn: %s", l)
			}
		}
	}
	if failures < 1 || failures > 2 {
		t.Errorf("%d lines about the peer %s in 4 s down, want 1 or 2", failures, peer)
	}

	// The peer back: the route's return is said once.
	from = logs.Len()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if b1, err = bus.Open(ctx, cfgs[1]); err != nil {
		t.Fatal(err)
	}
	for {
		var restored []string
		for _, l := range logs.LinesFrom(from) {
			if strings.Contains(l, "restored") && strings.Contains(l, peer) {
				restored = append(restored, l)
			}
		}
		if len(restored) == 1 && strings.Contains(restored[0], `"level":"INFO"`) {
			t.Logf("peer back: %s", restored[0])
			break
		}
		if len(restored) > 1 || ctx.Err() != nil {
			t.Fatalf("the route's return said %d times, want once at info: %q", len(restored), restored)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lockedBuffer is a log's output, written by the server's goroutines and
// read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// Len is where the next write starts.
func (l *lockedBuffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}

// LinesFrom returns the lines written from offset from on.
func (l *lockedBuffer) LinesFrom(from int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Split(strings.TrimSpace(string(l.b.Bytes()[from:])), "\n")
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
