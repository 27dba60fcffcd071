package snapstore_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/snapbpf/snapbpf/internal/bus/bustest"
	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/snapstore"
	"github.com/snapbpf/snapbpf/internal/snapstore/snapstoretest"
)

// BenchmarkChunks fetches a 64 MiB memory object, every chunk verified,
// chunk by chunk (direct gets, 4 at a time) and with one streaming get,
// from an in-process node and from another node of a three-node cluster
// (TLS on loopback):
//
//	go test -run '^$' -bench Chunks -benchtime 5x ./internal/snapstore
func BenchmarkChunks(b *testing.B) {
	ctx := context.Background()
	src := snapstoretest.Snapshot(b, 64, []pages.Extent{{Page: 0, N: 16384}}, nil)
	run := func(b *testing.B, pub, get jetstream.JetStream, replicas int, stream bool) {
		home, err := snapstore.Open(ctx, pub, snapstore.Options{Replicas: replicas})
		if err != nil {
			b.Fatal(err)
		}
		m, err := home.Publish(ctx, src, "")
		if err != nil {
			b.Fatal(err)
		}
		st, err := snapstore.Open(ctx, get, snapstore.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(m.Mem.Size)
		b.ResetTimer()
		if stream {
			for range b.N {
				if err := st.Reader(m).Stream(ctx, &m.Mem, func(int, []byte) error { return nil }); err != nil {
					b.Fatal(err)
				}
			}
			return
		}
		for range b.N {
			r := st.Reader(m)
			var g errgroup.Group
			g.SetLimit(4)
			for k := range m.Mem.Chunks() {
				g.Go(func() error {
					_, err := r.Chunk(ctx, &m.Mem, k)
					return err
				})
			}
			if err := g.Wait(); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, stream := range []bool{false, true} {
		how := "chunks"
		if stream {
			how = "stream"
		}
		b.Run("in-process/"+how, func(b *testing.B) {
			js := snapstoretest.Embedded(b)
			run(b, js, js, 1, stream)
		})
		b.Run("cluster/"+how, func(b *testing.B) {
			nodes := bustest.Open(b, bustest.Cluster(b, 3))
			run(b, nodes[0].JetStream(), nodes[1].JetStream(), nodes[0].Replicas(), stream)
		})
	}
}

// BenchmarkKVDuringUpload publishes a 128 MiB snapshot through node 0 of a
// two-node cluster (TestClusterRealVM's) while a key-value put like a
// heartbeat's goes to a memory bucket every 200 ms, once with the store on
// the node's main connection (the heartbeats' own) and once on its bulk
// connection (bus.Bulk), and reports the puts' latency beside how late
// 10 ms sleeps of another goroutine woke (the process waiting for a CPU):
//
//	go test -run '^$' -bench KVDuringUpload -benchtime 1x ./internal/snapstore
func BenchmarkKVDuringUpload(b *testing.B) {
	ctx := context.Background()
	src := snapstoretest.Snapshot(b, 128, []pages.Extent{{Page: 0, N: 32768}}, []pages.Extent{{Page: 0, N: 2048}})
	for _, conn := range []string{"main", "bulk"} {
		b.Run(conn, func(b *testing.B) {
			nodes := bustest.Open(b, bustest.Cluster(b, 2))
			js := nodes[0].JetStream()
			if conn == "bulk" {
				js = nodes[0].Bulk()
			}
			st, err := snapstore.Open(ctx, js, snapstore.Options{Replicas: nodes[0].Replicas()})
			if err != nil {
				b.Fatal(err)
			}
			kv, err := nodes[0].KeyValue(ctx, jetstream.KeyValueConfig{Bucket: "beats", Storage: jetstream.MemoryStorage})
			if err != nil {
				b.Fatal(err)
			}
			var puts, late []time.Duration
			for range b.N {
				done := make(chan struct{})
				var g errgroup.Group
				g.Go(func() error {
					for {
						t := time.Now()
						cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
						_, err := kv.Put(cctx, "node0", []byte("beat"))
						cancel()
						if err != nil {
							return err
						}
						puts = append(puts, time.Since(t))
						select {
						case <-done:
							return nil
						case <-time.After(200 * time.Millisecond):
						}
					}
				})
				g.Go(func() error {
					for {
						t := time.Now()
						time.Sleep(10 * time.Millisecond)
						late = append(late, time.Since(t)-10*time.Millisecond)
						select {
						case <-done:
							return nil
						default:
						}
					}
				})
				t := time.Now()
				_, err := st.Publish(ctx, src, snapstoretest.WorkingSetFile)
				b.ReportMetric(time.Since(t).Seconds(), "publish-s")
				close(done)
				if err := errors.Join(err, g.Wait()); err != nil {
					b.Fatal(err)
				}
			}
			q := func(d []time.Duration, p float64) float64 {
				slices.Sort(d)
				return float64(d[min(len(d)-1, int(p*float64(len(d))))].Microseconds()) / 1000
			}
			b.ReportMetric(q(puts, 0.5), "put-p50-ms")
			b.ReportMetric(q(puts, 1), "put-max-ms")
			b.ReportMetric(q(late, 0.5), "sleep-late-p50-ms")
			b.ReportMetric(q(late, 1), "sleep-late-max-ms")
		})
	}
}
