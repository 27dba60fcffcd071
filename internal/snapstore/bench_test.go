package snapstore_test

import (
	"context"
	"testing"

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
