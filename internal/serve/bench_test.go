package serve

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/restore"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/vmm/vmmtest"
)

// BenchmarkWarmInvoke measures what the service adds to a warm
// invocation: each round invokes one warm instance through the library
// (restore.Instance.Invoke) and another through the service (HTTP on the
// unix socket, pool, JSON, headers, metrics), back to back, on the fake
// VMM, so load on the host hits both alike. It reports the medians of
// both and of the per-round difference (results checked on both sides).
//
//	go test -run '^$' -bench WarmInvoke -benchtime 100x ./internal/serve
func BenchmarkWarmInvoke(b *testing.B) {
	ts := startService(b, "", Config{}, nil)
	ts.create("svc")
	ts.invoke("svc", "1", "cold")
	dir, err := snapshot.Open(ts.s.reg.snapshotPath("svc"))
	if err != nil {
		b.Fatal(err)
	}
	defer dir.Close()
	d := &vmmtest.Driver{Function: vmmtest.FastFunction, DataMiB: vmmtest.FastDataMiB}
	inst, err := restore.Start(context.Background(), d, dir, restore.Config{Policy: "snapbpf"})
	if err != nil {
		b.Fatal(err)
	}
	defer inst.Close()
	if _, err := inst.Invoke(context.Background(), 1); err != nil {
		b.Fatal(err)
	}
	var lib, svc, diff []float64
	for b.Loop() {
		t := time.Now()
		if _, err := inst.Invoke(context.Background(), 1); err != nil {
			b.Fatal(err)
		}
		l := time.Since(t)
		t = time.Now()
		if code, body, _ := ts.do("POST", "/v1/functions/svc/invoke", "1"); code != 200 {
			b.Fatalf("%d %s", code, body)
		}
		s := time.Since(t)
		lib, svc, diff = append(lib, ms(l)), append(svc, ms(s)), append(diff, ms(s-l))
	}
	b.ReportMetric(median(lib), "library-ms")
	b.ReportMetric(median(svc), "service-ms")
	b.ReportMetric(median(diff), "added-ms")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	return v[len(v)/2]
}
