package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/snapbpf/snapbpf/internal/serveclient"
)

// Invoker invokes a function (a *serveclient.Client).
type Invoker interface {
	Invoke(ctx context.Context, name string, input []byte) (*serveclient.Invocation, error)
}

// Outcomes of a request.
const (
	OutcomeOK       = "ok"
	OutcomeRejected = "rejected" // 429: its queue deadline passed
	OutcomeError    = "error"
	// OutcomeWrong is an answer whose result RunOptions.Verify refused.
	OutcomeWrong = "wrong"
)

// Request is one arrival and what became of it.
type Request struct {
	Arrival
	// Lag is how late the request was sent against its arrival time.
	Lag       time.Duration `json:"lag_ns"`
	LatencyMs float64       `json:"latency_ms"`
	Outcome   string        `json:"outcome"`
	// Status is the HTTP status of an error answer (0 when the service
	// was not reached).
	Status        int     `json:"status,omitempty"`
	Start         string  `json:"start,omitempty"`
	QueueMs       float64 `json:"queue_ms,omitempty"`
	RestoreMs     float64 `json:"restore_ms,omitempty"`
	ServiceMs     float64 `json:"service_ms,omitempty"`
	PrefetchBytes int64   `json:"prefetch_bytes,omitempty"`
	// GuestFnMs is the function's own compute in the guest, when its
	// result says (go functions: guest_fn_ms).
	GuestFnMs float64 `json:"guest_fn_ms,omitempty"`
	// Verified says RunOptions.Verify checked the result and found it right.
	Verified bool `json:"verified,omitempty"`
	// Node is the node that ran it (X-Snapbpf-Node).
	Node  string `json:"node,omitempty"`
	Error string `json:"error,omitempty"`
}

// RunOptions bound a run.
type RunOptions struct {
	// Timeout bounds each request (default 5 min).
	Timeout time.Duration
	// Drain is how long requests still running after the last arrival
	// get before they are cancelled (default: Timeout).
	Drain time.Duration
	// Progress, if set, is called about once a second with the requests
	// sent and finished so far, and once at the end.
	Progress func(sent, done, total int)
	// Verify, if set, checks each successful answer's result against the
	// arrival: checked says whether it could (false for a function it
	// cannot compute), err that the result is wrong.
	Verify func(a Arrival, result []byte) (checked bool, err error)
}

// Run sends the trace open loop: each arrival at its time, in its own
// goroutine, never waiting for earlier requests. It returns every
// request (in trace order) and the wall time from the first arrival's
// start to the last request's end. Cancelling ctx stops sending and
// cancels the requests in flight.
func Run(ctx context.Context, inv Invoker, trace []Arrival, opts RunOptions) ([]Request, time.Duration, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Minute
	}
	if opts.Drain <= 0 {
		opts.Drain = opts.Timeout
	}
	reqCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Each goroutine writes its own element; the slice header is not
	// touched while they run.
	results := make([]Request, len(trace))
	n := len(trace)
	var wg sync.WaitGroup
	var sent, done atomic.Int64
	start := time.Now()
	stopProgress := reportProgress(opts.Progress, &sent, &done, len(trace))
	defer stopProgress()
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	var err error
	for i, a := range trace {
		if d := time.Until(start.Add(a.At)); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				err = ctx.Err()
			case <-timer.C:
			}
		}
		if err != nil {
			n = i
			break
		}
		wg.Add(1)
		sent.Add(1)
		go func() {
			defer wg.Done()
			defer done.Add(1)
			results[i] = send(reqCtx, inv, a, start, opts)
		}()
	}
	// Requests still running get Drain, then are cancelled.
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(opts.Drain):
		cancel()
		<-finished
	}
	elapsed := time.Since(start)
	if err != nil {
		return results[:n], elapsed, fmt.Errorf("load interrupted after %d of %d arrivals: %w", n, len(trace), err)
	}
	return results, elapsed, nil
}

// send sends one arrival and classifies what came back.
func send(ctx context.Context, inv Invoker, a Arrival, start time.Time, opts RunOptions) Request {
	timeout := opts.Timeout
	r := Request{Arrival: a, Lag: time.Since(start.Add(a.At))}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t0 := time.Now()
	res, err := inv.Invoke(ctx, a.Function, []byte(a.Input))
	r.LatencyMs = float64(time.Since(t0).Microseconds()) / 1000
	switch status := serveclient.StatusOf(err); {
	case err == nil:
		r.Outcome, r.Start, r.Node = OutcomeOK, res.Start, res.Node
		r.QueueMs, r.RestoreMs, r.ServiceMs, r.PrefetchBytes = res.QueueMs, res.RestoreMs, res.TotalMs, res.PrefetchBytes
		r.GuestFnMs = guestFnMs(res.Result)
		if opts.Verify != nil {
			checked, verr := opts.Verify(a, res.Result)
			if verr != nil {
				r.Outcome, r.Error = OutcomeWrong, fmt.Sprintf("wrong result: %v", verr)
			}
			r.Verified = checked && verr == nil
		}
	case status == http.StatusTooManyRequests:
		r.Outcome, r.Status, r.Error = OutcomeRejected, status, err.Error()
	default:
		r.Outcome, r.Status, r.Error = OutcomeError, status, err.Error()
		if errors.Is(err, context.DeadlineExceeded) {
			r.Error = fmt.Sprintf("no answer within %s (the load's --timeout)", timeout)
		}
	}
	return r
}

// guestFnMs is the guest_fn_ms of a JSON result, 0 if it has none.
func guestFnMs(result []byte) float64 {
	var v struct {
		GuestFnMs float64 `json:"guest_fn_ms"`
	}
	if json.Unmarshal(result, &v) != nil {
		return 0
	}
	return v.GuestFnMs
}

// reportProgress calls f every second until the returned stop is called,
// and once more then.
func reportProgress(f func(sent, done, total int), sent, done *atomic.Int64, total int) (stop func()) {
	if f == nil {
		return func() {}
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				f(int(sent.Load()), int(done.Load()), total)
			}
		}
	}()
	return func() {
		close(quit)
		wg.Wait()
		f(int(sent.Load()), int(done.Load()), total) // the end, however short the run
	}
}
