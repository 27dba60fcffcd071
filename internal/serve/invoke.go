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
	// notStarted says the invocation the error answers never started
	// (it may safely go to another node).
	notStarted bool
}

func (e *apiError) Error() string { return e.msg }

func statusErr(status int, format string, a ...any) *apiError {
	return &apiError{status: status, msg: fmt.Sprintf(format, a...)}
}

// Invocation is what the service answers an invocation with.
type Invocation struct {
	// Result is the function's result: for go functions
	// {"checksum":"...","guest_fn_ms":N} (ContentType application/json);
	// for python functions the runner's output (application/octet-stream).
	Result        []byte
	ContentType   string
	Cold          bool
	RestoreMs     float64
	PrefetchBytes int64
	QueueMs       float64
	TotalMs       float64
	// Node is the node that ran it.
	Node string
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

// Invoke runs function name on the input in body: here on a warm instance
// if one is idle or on a cold restore under the service's policy if there
// is room, otherwise on another node that has an instance free (route.go),
// otherwise here after waiting for an instance slot (and memory) until the
// queue deadline. A function this node does not serve goes to the nodes
// that do.
func (s *Server) Invoke(ctx context.Context, name string, body []byte) (_ *Invocation, retErr error) {
	t0 := time.Now()
	outcome := "ok"
	defer func() {
		if retErr != nil {
			outcome = errOutcome(retErr)
		}
		s.metrics.invocations.WithLabelValues(name, outcome).Inc()
	}()
	e := s.reg.get(name)
	if e == nil {
		return nil, statusErr(http.StatusNotFound, "no function %s (list them with GET /v1/functions)", name)
	}
	queueDeadline := t0.Add(s.cfg.QueueTimeout)
	if !s.servable(e) {
		if s.reg.ours(e.view()) {
			// Its home: not ready here is not ready at all.
			return s.invokeLocal(ctx, e, body, t0, queueDeadline, time.Time{}, nil)
		}
		if e.view().Runtime != api.RuntimePython {
			if _, err := parseInput(body); err != nil {
				return nil, statusErr(http.StatusBadRequest, "%v", err)
			}
		}
		if len(s.beats.readyOn(name)) == 0 {
			f := e.view()
			return nil, statusErr(http.StatusConflict, "function %s is served by no node now (it is %s on its home node %s): retry once a node serves it (GET /v1/functions/%s lists ready_on)", name, f.State, f.Node, name)
		}
		outcome = "forwarded"
		res, err := s.forward(ctx, name, body, queueDeadline)
		if res != nil {
			res.TotalMs = msSince(t0)
		}
		return res, err
	}
	// Here at once, if there is room.
	res, err := s.invokeLocal(ctx, e, body, t0, t0, time.Time{}, nil)
	if !isQueueTimeout(err) {
		return res, err
	}
	// Busy here: a node with an instance free, if any takes it. This node
	// may still be in the group for a moment, and decline: a few tries.
	if others := s.beats.readyOn(name); len(others) > 1 || (len(others) == 1 && others[0] != s.cfg.Node) {
		for range 3 {
			res, err := s.forwardOnce(ctx, name, body)
			if !errors.Is(err, errDeclined) {
				if err == nil {
					outcome = "forwarded"
					res.TotalMs = msSince(t0)
				}
				return res, err
			}
		}
	}
	// Nobody free: queue here.
	return s.invokeLocal(ctx, e, body, t0, queueDeadline, time.Time{}, nil)
}

// errOutcome is the invocations metric's outcome of an error.
func errOutcome(err error) string {
	var ae *apiError
	if errors.As(err, &ae) {
		switch ae.status {
		case http.StatusBadRequest, http.StatusNotFound, http.StatusConflict:
			return "bad_input"
		case http.StatusTooManyRequests:
			return "rejected"
		case http.StatusServiceUnavailable:
			return "unavailable"
		case http.StatusGatewayTimeout:
			return "timeout"
		}
	}
	return "error"
}

// isQueueTimeout says err is the 429 of an invocation that found no
// instance before its queue deadline (and so never started).
func isQueueTimeout(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.notStarted && ae.status == http.StatusTooManyRequests
}

// invokeLocal runs function e here, waiting for an instance until
// queueDeadline (t0 is when the invocation arrived). If runBy is set (a
// forwarded invocation: its forwarder's deadline less a margin), the guest
// is not asked after it and is stopped at it, so the answer, whatever it
// is, reaches the forwarder in time; begin, if set, is asked once an
// instance (or a cold start's slot) is taken, before anything runs, and
// an error from it gives them back unused (route.go: its forwarder's go).
// An error before the invocation started is an *apiError marked
// notStarted.
func (s *Server) invokeLocal(ctx context.Context, e *entry, body []byte, t0, queueDeadline, runBy time.Time, begin func() error) (_ *Invocation, retErr error) {
	name := e.name
	started := false
	defer func() {
		var ae *apiError
		if !started && errors.As(retErr, &ae) {
			ae.notStarted = true
		}
	}()
	e.mu.Lock()
	state, snap, ferr, runtime, fetchable := e.f.State, e.snap, e.f.Error, e.f.Runtime, e.fetchable
	e.mu.Unlock()
	if state == api.StateReady && snap == nil && fetchable {
		// Another node's function this node has no copy of: the first
		// cold start here opens it from the snapshot store.
		var err error
		if snap, err = s.openRemote(ctx, e); err != nil {
			slog.Warn("serve: another node's snapshot could not be opened from the store", "function", name, "err", err)
			return nil, statusErr(http.StatusServiceUnavailable, "function %s: its snapshot could not be fetched from the snapshot store: %v", name, err)
		}
	}
	switch {
	case state == api.StateFailed:
		return nil, statusErr(http.StatusConflict, "function %s failed: %s", name, ferr)
	case state != api.StateReady || snap == nil:
		return nil, statusErr(http.StatusConflict, "function %s is %s, not ready: poll GET /v1/functions/%s until its state is ready", name, state, name)
	}
	// A go function's input is a seed; a python function's is the body
	// itself, its payload.
	python := runtime == api.RuntimePython
	var (
		input uint64
		err   error
	)
	if python {
		if len(body) == 0 {
			return nil, statusErr(http.StatusBadRequest, "function %s runs in python: send its input (the payload its function takes) as the request body", name)
		}
	} else if input, err = parseInput(body); err != nil {
		return nil, statusErr(http.StatusBadRequest, "%v", err)
	}

	in, reserved, err := e.pool.acquire(ctx, queueDeadline)
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
	if s.router != nil {
		s.router.kick() // it may have to leave the group now
	}
	if begin != nil {
		if err := begin(); err != nil {
			if in == nil {
				e.pool.abandon(reserved)
			} else {
				e.pool.release(in, true)
			}
			return nil, &apiError{status: http.StatusServiceUnavailable, notStarted: true, msg: fmt.Sprintf("function %s: not started on node %s: %v", name, s.cfg.Node, err)}
		}
	}
	started = true
	// A forwarded invocation's restore and run end by runBy.
	rctx := s.ctx
	if !runBy.IsZero() {
		var cancel context.CancelFunc
		rctx, cancel = context.WithDeadline(s.ctx, runBy)
		defer cancel()
	}
	res := &Invocation{Cold: in == nil, QueueMs: msSince(t0), Node: s.cfg.Node}
	s.metrics.queueSeconds.WithLabelValues(name).Observe(res.QueueMs / 1000)
	if res.Cold {
		t := time.Now()
		// The snapshot e uses now (a completed local copy may have
		// replaced a mount), held until the instance's VMM ends.
		if snap = e.holdSnap(); snap == nil {
			e.pool.abandon(reserved)
			return nil, statusErr(http.StatusNotFound, "function %s was deleted", name)
		}
		ri, err := restore.Start(rctx, s.cfg.Driver, snap.dir, restore.Config{
			Policy: s.cfg.Policy, NoCheck: s.cfg.NoCheck,
			Timeouts: funcvm.Timeouts{VMM: s.cfg.VMMTimeout, Invoke: s.cfg.InvokeTimeout},
			// Another node's re-recorded set, newer than the
			// snapshot's own (followWorkingSet).
			WorkingSet: e.workingSet(),
		})
		if err != nil {
			snap.drop()
			e.pool.abandon(reserved)
			if rctx.Err() != nil && s.ctx.Err() == nil {
				// Cut short at the forwarder's deadline: the guest
				// never ran it, another node may.
				slog.Warn("serve: a forwarded invocation's cold restore did not end before its forwarder's deadline", "function", name, "restore_ms", msSince(t))
				return nil, &apiError{status: http.StatusServiceUnavailable, notStarted: true,
					msg: fmt.Sprintf("function %s: not run on node %s: its cold restore did not end before the forwarding node's deadline", name, s.cfg.Node)}
			}
			slog.Error("serve: cold restore failed", "function", name, "err", err)
			if errors.Is(err, context.DeadlineExceeded) {
				return nil, statusErr(http.StatusGatewayTimeout, "function %s: the restore timed out: %v", name, err)
			}
			return nil, statusErr(http.StatusInternalServerError, "function %s: the restore failed: %v", name, err)
		}
		res.RestoreMs = msSince(t)
		in = e.pool.started(ri, snap)
		s.metrics.restoreSeconds.WithLabelValues(name).Observe(res.RestoreMs / 1000)
	}
	if !runBy.IsZero() && !time.Now().Before(runBy) {
		// Its start took all the time the forwarder gives: the
		// guest never sees it, and another node may take it. A new
		// instance is ended (its prefetch, bound to rctx, ends with
		// this call; an Invoke would have collected it).
		if res.Cold {
			e.mu.Lock()
			wsetPages := e.f.WSetPages
			e.mu.Unlock()
			s.budget.settle(e, in.pid, wsetPages, reserved)
		}
		e.pool.release(in, !res.Cold)
		return nil, &apiError{status: http.StatusServiceUnavailable, notStarted: true,
			msg: fmt.Sprintf("function %s: not run on node %s: starting it took until the forwarding node's deadline (restore %.0f ms, queue %.0f ms)", name, s.cfg.Node, res.RestoreMs, res.QueueMs)}
	}
	var inv restore.Invocation
	if python {
		inv, err = in.InvokePayload(rctx, body)
	} else {
		inv, err = in.Invoke(rctx, input)
	}
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
		if errors.Is(err, context.DeadlineExceeded) && !runBy.IsZero() && !time.Now().Before(runBy) {
			return nil, statusErr(http.StatusGatewayTimeout, "function %s: node %s started it and stopped it unfinished at the forwarding node's deadline; the instance was replaced: it ran at most once, not retried", name, s.cfg.Node)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, statusErr(http.StatusGatewayTimeout, "function %s: the guest did not answer within %v; the instance was replaced: %v", name, s.cfg.InvokeTimeout, err)
		}
		return nil, statusErr(http.StatusInternalServerError, "function %s: the invocation failed; the instance was replaced: %v", name, err)
	}
	e.pool.release(in, true)
	if python {
		res.Result, res.ContentType = inv.VM.Output, "application/octet-stream"
	} else {
		res.Result, _ = json.Marshal(goResult{Checksum: inv.VM.Checksum, GuestFnMs: inv.VM.GuestFnMs})
		res.Result, res.ContentType = append(res.Result, '\n'), "application/json"
	}
	start := "warm"
	if res.Cold {
		start = "cold"
		res.PrefetchBytes = inv.Prefetch.Bytes + inv.Prefetch.ZeroBytes
		s.metrics.prefetchBytes.WithLabelValues(name).Add(float64(res.PrefetchBytes))
		s.metrics.prefetchSecs.WithLabelValues(name).Observe(inv.Prefetch.CompleteMs / 1000)
		if !python {
			// A re-recording runs inputs as seeds; a python payload
			// is none (its set is recorded on its input shapes).
			s.coldRestored(e, input, inv.VM.MemFileMajorFaults)
		}
	}
	res.TotalMs = msSince(t0)
	s.metrics.starts.WithLabelValues(name, start).Inc()
	s.metrics.e2eSeconds.WithLabelValues(name, start).Observe(res.TotalMs / 1000)
	slog.Debug("serve: invoked", "function", name, "start", start, "input", input, "total_ms", res.TotalMs, "restore_ms", res.RestoreMs, "queue_ms", res.QueueMs, "guest_fn_ms", inv.VM.GuestFnMs)
	return res, nil
}

// holdSnap returns e's snapshot for a cold start, held for the instance
// (drop it when its VMM has ended), or nil if e has none any more.
func (e *entry) holdSnap() *snapRef {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.snap != nil {
		e.snap.hold()
	}
	return e.snap
}

// retryAfter is what a 429 tells the client to wait: a quarter of the
// queue deadline, at least a second.
func (s *Server) retryAfter() time.Duration {
	return max(time.Second, s.cfg.QueueTimeout/4)
}

func msSince(t time.Time) float64 {
	return math.Round(float64(time.Since(t).Microseconds())/10) / 100
}
