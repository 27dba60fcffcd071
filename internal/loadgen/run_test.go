package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/api"
	"github.com/snapbpf/snapbpf/internal/serveclient"
	"github.com/snapbpf/snapbpf/internal/serveclient/servetest"
)

// slowInvoker answers after a fixed time and counts how many calls are in
// flight at once.
type slowInvoker struct {
	delay         time.Duration
	inFlight, top atomic.Int64
}

func (s *slowInvoker) Invoke(ctx context.Context, name string, _ []byte) (*serveclient.Invocation, error) {
	n := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	for {
		old := s.top.Load()
		if n <= old || s.top.CompareAndSwap(old, n) {
			break
		}
	}
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if name == "rejected" {
		return nil, &serveclient.Error{Status: http.StatusTooManyRequests, Message: "queue deadline passed"}
	}
	return &serveclient.Invocation{Start: "warm"}, nil
}

// barrierInvoker answers no call until n calls are in flight at once (or
// a minute passed): a load generator that waits for answers before it sends
// the next arrival never gets there.
type barrierInvoker struct {
	n        int64
	inFlight atomic.Int64
	all      chan struct{}
	once     sync.Once
}

func (b *barrierInvoker) Invoke(ctx context.Context, _ string, _ []byte) (*serveclient.Invocation, error) {
	if b.inFlight.Add(1) == b.n {
		b.once.Do(func() { close(b.all) })
	}
	select {
	case <-b.all:
		return &serveclient.Invocation{Start: "warm"}, nil
	case <-time.After(time.Minute):
		return nil, errors.New("the other arrivals were never sent while this one was in flight")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// TestOpenLoop: every arrival is sent while the earlier ones are still
// unanswered. The invoker answers only once all 20 are in flight, so the
// test asserts open loop without depending on how loaded the host is.
func TestOpenLoop(t *testing.T) {
	var trace []Arrival
	for i := range 20 {
		trace = append(trace, Arrival{At: time.Duration(i) * 20 * time.Millisecond, Function: "a", Input: "1"})
	}
	inv := &barrierInvoker{n: 20, all: make(chan struct{})}
	reqs, _, err := Run(context.Background(), inv, trace, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs) != 20 {
		t.Fatalf("%d requests, want 20", len(reqs))
	}
	for _, r := range reqs {
		if r.Outcome != OutcomeOK {
			t.Errorf("request %+v: the load waited for answers", r)
		}
	}
}

// TestRunCancelAndDrain: a request still running past Drain is cancelled
// and counted as an error; cancelling the context stops sending.
func TestRunCancelAndDrain(t *testing.T) {
	trace := []Arrival{{At: 0, Function: "a"}, {At: time.Millisecond, Function: "rejected"}}
	reqs, _, err := Run(context.Background(), &slowInvoker{delay: time.Hour}, trace, RunOptions{Drain: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reqs {
		if r.Outcome != OutcomeError {
			t.Errorf("undrained request %+v", r)
		}
	}
	reqs, _, _ = Run(context.Background(), &slowInvoker{delay: time.Millisecond}, trace, RunOptions{})
	if reqs[1].Outcome != OutcomeRejected || reqs[1].Status != 429 {
		t.Errorf("429 not counted as rejected: %+v", reqs[1])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	trace = append(trace, Arrival{At: time.Hour, Function: "a"})
	reqs, _, err = Run(ctx, &slowInvoker{delay: time.Millisecond}, trace, RunOptions{})
	if !errors.Is(err, context.DeadlineExceeded) || len(reqs) != 2 {
		t.Errorf("cancelled run: %d requests, %v", len(reqs), err)
	}
}

// TestLoadEndToEnd: a skewed trace against the fake service over its unix
// socket, with memory and metrics sampled, analysed and plotted.
func TestLoadEndToEnd(t *testing.T) {
	srv := servetest.New(t, servetest.Options{Polls: 1, WarmDelay: 5 * time.Millisecond, ColdDelay: 40 * time.Millisecond})
	c, err := serveclient.New(serveclient.Options{Socket: srv.Socket})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	fns := []string{"f1", "f2", "f3"}
	for _, f := range fns {
		if _, err := c.Create(ctx, api.CreateRequest{Name: f, Function: "json"}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Wait(ctx, f, time.Millisecond, nil); err != nil {
			t.Fatal(err)
		}
	}
	srv.Status.Store("f3", http.StatusTooManyRequests)
	cfg := TraceConfig{Rate: 60, Duration: 2 * time.Second, Functions: fns, Skew: 1.5, Inputs: 2, Seed: 1}
	trace, err := Generate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	start := time.Now()
	samples := make(chan []Sample)
	go func() { samples <- Sampler{Source: c, Interval: 200 * time.Millisecond}.Run(sctx, start) }()
	reqs, elapsed, err := Run(ctx, c, trace, RunOptions{Timeout: 10 * time.Second})
	stop()
	if err != nil {
		t.Fatal(err)
	}
	r := Analyze(cfg, start, elapsed, reqs, <-samples)
	s := r.Summary
	f3 := r.PerFunction["f3"]
	if s.Arrivals != len(trace) || s.OK+s.Rejected+s.Errors != s.Arrivals || s.Errors != 0 || s.Rejected != f3.Arrivals || f3.Arrivals == 0 {
		t.Errorf("summary %+v, f3 %+v", s, f3)
	}
	if int64(s.OK) != srv.Invocations() {
		t.Errorf("%d ok, the service ran %d", s.OK, srv.Invocations())
	}
	if r.PerFunction["f1"].Arrivals <= r.PerFunction["f2"].Arrivals {
		t.Errorf("skew 1.5: f1 %d arrivals, f2 %d", r.PerFunction["f1"].Arrivals, r.PerFunction["f2"].Arrivals)
	}
	// Each function's first request is cold; more are cold only when
	// requests overlap.
	if s.ColdFraction <= 0 || s.ColdFraction >= 0.5 || s.ColdLatency.P50 < 40 || s.WarmLatency.P50 < 5 || s.WarmLatency.P50 > s.ColdLatency.P50 {
		t.Errorf("cold %.2f, cold p50 %.1f, warm p50 %.1f", s.ColdFraction, s.ColdLatency.P50, s.WarmLatency.P50)
	}
	if s.Queue.P50 != 0.5 || s.Latency.P99 < s.Latency.P50 || s.ThroughputRPS <= 0 || math.Abs(s.OfferedRPS-float64(len(trace))/2) > 1e-9 {
		t.Errorf("queue %+v latency %+v throughput %.2f offered %.2f", s.Queue, s.Latency, s.ThroughputRPS, s.OfferedRPS)
	}
	if len(r.Seconds) != 2 || r.Seconds[0].Arrivals+r.Seconds[1].Arrivals != len(trace) {
		t.Errorf("timeline %+v", r.Seconds)
	}
	if len(r.Samples) < 5 || r.Samples[len(r.Samples)-1].MemUsedMiB <= 0 || s.PeakMemUsedMiB <= 0 {
		t.Fatalf("samples %+v", r.Samples)
	}
	last := r.Samples[len(r.Samples)-1]
	// The last sample is taken after every request has finished.
	if last.Metrics["snapbpf_instances"] < 2 || last.Metrics[`snapbpf_instances{state="warm"}`] != last.Metrics["snapbpf_instances"] {
		t.Errorf("metrics not sampled: %v (%s)", last.Metrics, last.MetricsError)
	}
	inputs := strings.Join(srv.Inputs("f1"), "")
	if !strings.Contains(inputs, "1") || !strings.Contains(inputs, "2") {
		t.Errorf("inputs sent to f1: %q, want seeds 1 and 2", inputs)
	}

	dir := os.Getenv("LOADGEN_PLOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	files, err := Plot(dir, "load", []*Report{r})
	if err != nil || len(files) != 2 {
		t.Fatalf("plot: %v, %v", files, err)
	}
	if last.Metrics["snapbpf_memory_used_bytes"] <= 0 {
		t.Errorf("the service's memory was not sampled: %v", last.Metrics)
	}
	for _, f := range files {
		if fi, err := os.Stat(f); err != nil || fi.Size() < 1000 {
			t.Errorf("plot %s: %v", f, err)
		}
	}
	var table strings.Builder
	second := *r
	second.Policy = "snapbpf"
	r.Policy = "lazy"
	if err := WriteComparison(&table, []*Report{r, &second}); err != nil || !strings.Contains(table.String(), "1.00x") || !strings.Contains(table.String(), "snapbpf") {
		t.Errorf("comparison:\n%s", table.String())
	}
}

func TestParseMetrics(t *testing.T) {
	text := []byte(`# HELP snapbpf_instances Instances.
# TYPE snapbpf_instances gauge
snapbpf_instances{function="a",state="warm"} 2
snapbpf_instances{function="b c",state="busy"} 1 1700000000
snapbpf_memory_used_bytes{kind="cache"} 1.5e+06
snapbpf_memory_used_bytes{kind="private"} 500000
snapbpf_evictions_total 3
snapbpf_queue_seconds_bucket{le="0.1"} 9
other_metric 7
broken{ 1
`)
	m := ParseMetrics(text, DefaultMetrics)
	want := map[string]float64{
		"snapbpf_instances": 3, `snapbpf_instances{function="a",state="warm"}`: 2, `snapbpf_instances{function="b c",state="busy"}`: 1,
		"snapbpf_memory_used_bytes": 2e6, `snapbpf_memory_used_bytes{kind="cache"}`: 1.5e6, `snapbpf_memory_used_bytes{kind="private"}`: 5e5,
		"snapbpf_evictions_total": 3,
	}
	if len(m) != len(want) {
		t.Errorf("got %v", m)
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %g, want %g", k, m[k], v)
		}
	}
}

// TestSampleMeminfo: host memory in MiB from a meminfo file (parsed by
// procfs.Meminfo, tested there).
func TestSampleMeminfo(t *testing.T) {
	p := filepath.Join(t.TempDir(), "meminfo")
	os.WriteFile(p, []byte("MemTotal:       24000000 kB\nMemAvailable:   20000000 kB\nCached:  1024 kB\nHugePages_Total:       0\n"), 0o644)
	s := Sampler{Meminfo: p}.sample(context.Background(), time.Now())
	if s.MemUsedMiB != 4e6/1024 || s.MemCachedMiB != 1 {
		t.Errorf("sample %+v", s)
	}
}

// echoInvoker answers each input with a result naming it.
type echoInvoker struct{}

func (echoInvoker) Invoke(_ context.Context, _ string, input []byte) (*serveclient.Invocation, error) {
	return &serveclient.Invocation{Start: api.StartWarm, Result: []byte(`{"checksum":"sum-` + string(input) + `","guest_fn_ms":12.5}`)}, nil
}

// TestRunVerify: a result Verify refuses is an answer counted wrong, not
// ok; one it checks is verified; one it cannot check is ok, unverified.
func TestRunVerify(t *testing.T) {
	trace := []Arrival{{Function: "f", Input: "1"}, {Function: "f", Input: "2"}, {Function: "g", Input: "1"}}
	verify := func(a Arrival, result []byte) (bool, error) {
		switch {
		case a.Function == "g":
			return false, nil
		case a.Input == "2":
			return true, fmt.Errorf("checksum %s, want sum-x", result)
		}
		return true, nil
	}
	reqs, elapsed, err := Run(context.Background(), echoInvoker{}, trace, RunOptions{Verify: verify})
	if err != nil {
		t.Fatal(err)
	}
	got := func(i int) string {
		return fmt.Sprintf("%s %v %g", reqs[i].Outcome, reqs[i].Verified, reqs[i].GuestFnMs)
	}
	if got(0) != "ok true 12.5" || got(1) != "wrong false 12.5" || got(2) != "ok false 12.5" || !strings.Contains(reqs[1].Error, "wrong result: checksum") {
		t.Errorf("requests %q, %q, %q (%s)", got(0), got(1), got(2), reqs[1].Error)
	}
	s := Analyze(TraceConfig{Duration: time.Second}, time.Now(), elapsed, reqs, nil).Summary
	if s.OK != 2 || s.Verified != 1 || s.Wrong != 1 || s.Errors != 0 || len(s.ErrorMessages) != 1 {
		t.Errorf("summary %+v", s)
	}
}
