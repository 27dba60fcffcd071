package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/snapbpf/snapbpf/api"
	"github.com/snapbpf/snapbpf/internal/functions"
	"github.com/snapbpf/snapbpf/internal/funcvm"
	"github.com/snapbpf/snapbpf/internal/restore"
)

// apiError is an error with its HTTP status (and, for 429, when to retry).
type apiError struct {
	status     int
	retryAfter time.Duration
	msg        string
}

func (e *apiError) Error() string { return e.msg }

func statusErr(status int, format string, a ...any) *apiError {
	return &apiError{status: status, msg: fmt.Sprintf(format, a...)}
}

// Invocation is what the service answers an invocation with.
type Invocation struct {
	// Result is the function's result: for go functions
	// {"checksum":"...","guest_fn_ms":N}.
	Result        json.RawMessage
	Cold          bool
	RestoreMs     float64
	PrefetchBytes int64
	QueueMs       float64
	TotalMs       float64
}

// goResult is the result of a go function.
type goResult struct {
	Checksum  string  `json:"checksum"`
	GuestFnMs float64 `json:"guest_fn_ms"`
}

// parseInput reads a go function's input: a seed in decimal, empty for 1.
func parseInput(body []byte) (uint64, error) {
	s := strings.TrimSpace(string(body))
	if s == "" {
		return 1, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("input %q: want the input seed in decimal (e.g. 4), or an empty body for 1", truncate(s, 40))
	}
	if err := functions.CheckInput(n); err != nil {
		return 0, fmt.Errorf("input: %w", err)
	}
	return n, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Invoke runs function name on the input in body: on a warm instance if
// one is idle, otherwise on a cold restore under the service's policy,
// after waiting for an instance slot (and memory) until the queue
// deadline.
func (s *Server) Invoke(ctx context.Context, name string, body []byte) (_ *Invocation, retErr error) {
	t0 := time.Now()
	outcome := "ok"
	defer func() {
		if retErr != nil {
			var ae *apiError
			outcome = "error"
			if errors.As(retErr, &ae) {
				switch ae.status {
				case http.StatusBadRequest, http.StatusNotFound, http.StatusConflict:
					outcome = "bad_input"
				case http.StatusTooManyRequests:
					outcome = "rejected"
				case http.StatusServiceUnavailable:
					outcome = "unavailable"
				case http.StatusGatewayTimeout:
					outcome = "timeout"
				}
			}
		}
		s.metrics.invocations.WithLabelValues(name, outcome).Inc()
	}()
	e := s.reg.get(name)
	if e == nil {
		return nil, statusErr(http.StatusNotFound, "no function %s (list them with GET /v1/functions)", name)
	}
	e.mu.Lock()
	state, dir, ferr := e.f.State, e.dir, e.f.Error
	e.mu.Unlock()
	switch {
	case state == api.StateFailed:
		return nil, statusErr(http.StatusConflict, "function %s failed: %s", name, ferr)
	case state != api.StateReady || dir == nil:
		return nil, statusErr(http.StatusConflict, "function %s is %s, not ready: poll GET /v1/functions/%s until its state is ready", name, state, name)
	}
	input, err := parseInput(body)
	if err != nil {
		return nil, statusErr(http.StatusBadRequest, "%v", err)
	}

	in, reserved, err := e.pool.acquire(ctx, t0.Add(s.cfg.QueueTimeout))
	switch {
	case errors.Is(err, errQueueTimeout):
		return nil, &apiError{status: http.StatusTooManyRequests, retryAfter: s.retryAfter(),
			msg: fmt.Sprintf("function %s: no instance free within the queue deadline (%v; at most %d instances per function, memory budget %d MiB): retry later", name, s.cfg.QueueTimeout, s.cfg.MaxInstances, s.cfg.MemoryBudget>>20)}
	case errors.Is(err, errDraining):
		return nil, statusErr(http.StatusServiceUnavailable, "the service is shutting down: send the invocation to another node or retry after its restart")
	case errors.Is(err, errGone):
		return nil, statusErr(http.StatusNotFound, "function %s was deleted", name)
	case err != nil:
		return nil, statusErr(499, "invocation abandoned by the client: %v", err)
	}
	res := &Invocation{Cold: in == nil, QueueMs: msSince(t0)}
	s.metrics.queueSeconds.WithLabelValues(name).Observe(res.QueueMs / 1000)
	if res.Cold {
		t := time.Now()
		ri, err := restore.Start(s.ctx, s.cfg.Driver, dir, restore.Config{
			Policy: s.cfg.Policy, NoCheck: s.cfg.NoCheck,
			Timeouts: funcvm.Timeouts{VMM: s.cfg.VMMTimeout, Invoke: s.cfg.InvokeTimeout},
		})
		if err != nil {
			e.pool.abandon(reserved)
			slog.Error("serve: cold restore failed", "function", name, "err", err)
			if errors.Is(err, context.DeadlineExceeded) {
				return nil, statusErr(http.StatusGatewayTimeout, "function %s: the restore timed out: %v", name, err)
			}
			return nil, statusErr(http.StatusInternalServerError, "function %s: the restore failed: %v", name, err)
		}
		res.RestoreMs = msSince(t)
		in = e.pool.started(ri)
		s.metrics.restoreSeconds.WithLabelValues(name).Observe(res.RestoreMs / 1000)
	}
	inv, err := in.Invoke(s.ctx, input)
	if res.Cold {
		// The first invocation has run: the measurement sees what the
		// cold start added, and learns it for the next one.
		e.mu.Lock()
		wsetPages := e.f.WSetPages
		e.mu.Unlock()
		s.budget.settle(e, in.pid, wsetPages, reserved)
	}
	if err != nil {
		e.pool.release(in, false)
		slog.Error("serve: invocation failed; the instance is replaced", "function", name, "pid", in.pid, "cold", res.Cold, "err", err)
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, statusErr(http.StatusGatewayTimeout, "function %s: the guest did not answer within %v; the instance was replaced: %v", name, s.cfg.InvokeTimeout, err)
		}
		return nil, statusErr(http.StatusInternalServerError, "function %s: the invocation failed; the instance was replaced: %v", name, err)
	}
	e.pool.release(in, true)
	res.Result, _ = json.Marshal(goResult{Checksum: inv.VM.Checksum, GuestFnMs: inv.VM.GuestFnMs})
	start := "warm"
	if res.Cold {
		start = "cold"
		res.PrefetchBytes = inv.Prefetch.Bytes + inv.Prefetch.ZeroBytes
		s.metrics.prefetchBytes.WithLabelValues(name).Add(float64(res.PrefetchBytes))
		s.metrics.prefetchSecs.WithLabelValues(name).Observe(inv.Prefetch.CompleteMs / 1000)
		s.coldRestored(e, input, inv.VM.MemFileMajorFaults)
	}
	res.TotalMs = msSince(t0)
	s.metrics.starts.WithLabelValues(name, start).Inc()
	s.metrics.e2eSeconds.WithLabelValues(name, start).Observe(res.TotalMs / 1000)
	slog.Debug("serve: invoked", "function", name, "start", start, "input", input, "total_ms", res.TotalMs, "restore_ms", res.RestoreMs, "queue_ms", res.QueueMs, "guest_fn_ms", inv.VM.GuestFnMs)
	return res, nil
}

// retryAfter is what a 429 tells the client to wait: a quarter of the
// queue deadline, at least a second.
func (s *Server) retryAfter() time.Duration {
	return max(time.Second, s.cfg.QueueTimeout/4)
}

func msSince(t time.Time) float64 {
	return math.Round(float64(time.Since(t).Microseconds())/10) / 100
}
