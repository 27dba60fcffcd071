package serve

import (
	"context"
	"testing"

	"github.com/snapbpf/snapbpf/internal/restore"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/vmm/vmmtest"
)

// BenchmarkWarmInvoke compares a warm invocation through the service (HTTP
// on the unix socket, pool, JSON, headers, metrics) with the same
// invocation through the library (restore.Instance.Invoke), on the fake
// VMM: the difference is what the service adds.
//
//	go test -run '^$' -bench WarmInvoke -benchtime 200x ./internal/serve
func BenchmarkWarmInvoke(b *testing.B) {
	b.Run("library", func(b *testing.B) {
		ts := startService(b, "", Config{}, nil)
		ts.create("lib")
		dir, err := snapshot.Open(ts.s.reg.snapshotPath("lib"))
		if err != nil {
			b.Fatal(err)
		}
		defer dir.Close()
		inst, err := restore.Start(context.Background(), &vmmtest.Driver{Function: fakeFunction, DataMiB: fakeDataMiB}, dir, restore.Config{Policy: "snapbpf"})
		if err != nil {
			b.Fatal(err)
		}
		defer inst.Close()
		if _, err := inst.Invoke(context.Background(), 1); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := inst.Invoke(context.Background(), 1); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("service", func(b *testing.B) {
		ts := startService(b, "", Config{}, nil)
		ts.create("svc")
		ts.invoke("svc", "1", "cold")
		for b.Loop() {
			if code, body, _ := ts.do("POST", "/v1/functions/svc/invoke", "1"); code != 200 {
				b.Fatalf("%d %s", code, body)
			}
		}
	})
}
