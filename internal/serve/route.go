package serve

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/snapbpf/snapbpf/api"
)

// Routing between nodes. Every node that serves function NAME (ready here)
// and has room for one more invocation of it is a member of the queue
// group invokeQueue on InvokeSubject(NAME); NATS hands each request to one
// member. A node leaves the group while every instance of the function is
// busy here and joins again when one frees, so requests go to nodes with
// room.
//
// Semantics: at most once. A request is sent again only when nobody
// received it (no responders) or its receiver declined it before starting
// it (no instance free after all, draining, not ready there). A request a
// member accepted and did not answer within the forward deadline (it hung,
// or died) is never sent again: its caller gets 504, outcome unknown.

// InvokeSubject is the NATS subject of function name's invocations.
func InvokeSubject(name string) string { return "snapbpf.invoke." + name }

const invokeQueue = "snapbpf"

// Headers of a forwarded invocation and its reply.
const (
	hdrDeadline = "Snapbpf-Deadline" // request: unix ms the forwarder waits until
	hdrStatus   = "Snapbpf-Status"   // reply: HTTP status, or "declined"
	hdrNode     = "Snapbpf-Node"     // reply: the node that answered
	hdrCold     = "Snapbpf-Cold"
	hdrRestore  = "Snapbpf-Restore-Ms"
	hdrPrefetch = "Snapbpf-Prefetch-Bytes"
	hdrQueue    = "Snapbpf-Queue-Ms"
	hdrType     = "Content-Type" // reply: the result's (a python function's is its output)
	declined    = "declined"
)

// errDeclined: the request reached no node that could start it.
var errDeclined = errors.New("declined by every node tried")

// router keeps this node's queue-group memberships in line with what it
// can serve, and answers the requests the group gives it.
type router struct {
	s *Server

	// kicks asks for a reconciliation now (an instance slot was taken).
	kicks chan struct{}

	mu       sync.Mutex
	subs     map[string]*nats.Subscription
	closed   bool
	inflight sync.WaitGroup
}

func newRouter(s *Server) *router {
	return &router{s: s, subs: map[string]*nats.Subscription{}, kicks: make(chan struct{}, 1)}
}

// kick makes the router look again at once.
func (r *router) kick() {
	select {
	case r.kicks <- struct{}{}:
	default:
	}
}

// servable says this node can run function e now: ready here, or ready on
// its home and fetchable from the snapshot store.
func (s *Server) servable(e *entry) bool {
	e.mu.Lock()
	ok := (e.snap != nil || e.fetchable) && e.f.State == api.StateReady
	e.mu.Unlock()
	if !ok {
		return false
	}
	s.reg.mu.Lock()
	defer s.reg.mu.Unlock()
	return !e.deleting
}

// saturated says every instance function e may have here is busy or
// starting, or the node refuses invocations.
func (s *Server) saturated(e *entry) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := e.pool
	return s.draining || p.closed || (len(p.idle) == 0 && p.busy+p.starting >= s.cfg.MaxInstances)
}

// run reconciles the memberships whenever an instance changes state (and
// every 100 ms, for readiness) until the service closes.
func (r *router) run() {
	s := r.s
	defer s.wg.Done()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		changed := s.changed
		s.mu.Unlock()
		r.reconcile()
		select {
		case <-s.ctx.Done():
			r.close()
			return
		case <-changed:
		case <-r.kicks:
		case <-tick.C:
		}
	}
}

func (r *router) reconcile() {
	s := r.s
	want := map[string]bool{}
	for _, e := range s.reg.all() {
		if s.servable(e) && !s.saturated(e) {
			want[e.name] = true
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	for name, sub := range r.subs {
		if !want[name] {
			sub.Unsubscribe()
			delete(r.subs, name)
		}
	}
	for name := range want {
		if r.subs[name] != nil {
			continue
		}
		sub, err := s.bus.Conn().QueueSubscribe(InvokeSubject(name), invokeQueue, r.handle)
		if err != nil {
			slog.Warn("serve: routing: cannot join the group of a function", "function", name, "err", err)
			continue
		}
		r.subs[name] = sub
	}
}

// leave quits function name's group (it is being deleted).
func (r *router) leave(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if sub := r.subs[name]; sub != nil {
		sub.Unsubscribe()
		delete(r.subs, name)
	}
}

// close quits every group and waits for the requests being answered.
func (r *router) close() {
	r.mu.Lock()
	r.closed = true
	for name, sub := range r.subs {
		sub.Unsubscribe()
		delete(r.subs, name)
	}
	r.mu.Unlock()
	r.inflight.Wait()
}

// handle answers one forwarded invocation, in its own goroutine: the
// subscription's callbacks run one at a time.
func (r *router) handle(m *nats.Msg) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		r.reply(m, &apiError{status: http.StatusServiceUnavailable, msg: "the node is stopping", notStarted: true}, nil)
		return
	}
	r.inflight.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.inflight.Done()
		r.serve(m)
	}()
}

func (r *router) serve(m *nats.Msg) {
	s := r.s
	name := m.Subject[len(InvokeSubject("")):]
	ctx := s.ctx
	if ms, err := strconv.ParseInt(m.Header.Get(hdrDeadline), 10, 64); err == nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, time.UnixMilli(ms))
		defer cancel()
	}
	e := s.reg.get(name)
	if e == nil {
		r.reply(m, &apiError{status: http.StatusNotFound, msg: "function " + name + " is not on node " + s.cfg.Node, notStarted: true}, nil)
		return
	}
	t0 := time.Now()
	// No queue here: a node that cannot start it at once declines, and
	// the forwarder tries another.
	res, err := s.invokeLocal(ctx, e, m.Data, t0, t0)
	outcome := "ok"
	if err != nil {
		outcome = errOutcome(err)
		if isDeclinable(err) {
			outcome = declined
		}
	}
	if outcome != declined {
		s.metrics.invocations.WithLabelValues(name, outcome).Inc()
	}
	r.reply(m, err, res)
}

// isDeclinable says err answers an invocation that never started for a
// reason of this node (busy, draining, not ready or not known here), so
// another node may run it.
func isDeclinable(err error) bool {
	var ae *apiError
	if !errors.As(err, &ae) || !ae.notStarted {
		return false
	}
	switch ae.status {
	case http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusNotFound, http.StatusConflict:
		return true
	}
	return false
}

func (r *router) reply(m *nats.Msg, err error, res *Invocation) {
	out := nats.NewMsg(m.Reply)
	out.Header.Set(hdrNode, r.s.cfg.Node)
	switch {
	case err != nil && isDeclinable(err):
		out.Header.Set(hdrStatus, declined)
		out.Data = []byte(err.Error())
	case err != nil:
		status := http.StatusInternalServerError
		var ae *apiError
		if errors.As(err, &ae) {
			status = ae.status
		}
		out.Header.Set(hdrStatus, strconv.Itoa(status))
		out.Data = []byte(err.Error())
	default:
		out.Header.Set(hdrStatus, "200")
		out.Header.Set(hdrCold, strconv.FormatBool(res.Cold))
		out.Header.Set(hdrRestore, fmtMs(res.RestoreMs))
		out.Header.Set(hdrPrefetch, strconv.FormatInt(res.PrefetchBytes, 10))
		out.Header.Set(hdrQueue, fmtMs(res.QueueMs))
		out.Header.Set(hdrType, res.ContentType)
		out.Data = res.Result
	}
	if err := m.RespondMsg(out); err != nil {
		slog.Warn("serve: routing: the answer to a forwarded invocation was not sent", "subject", m.Subject, "err", err)
	}
}

// forward sends the invocation to the nodes that serve the function,
// again while none receives it or each declines, until queueDeadline.
func (s *Server) forward(ctx context.Context, name string, body []byte, queueDeadline time.Time) (*Invocation, error) {
	t0 := time.Now()
	wait := 5 * time.Millisecond
	for {
		res, err := s.forwardOnce(ctx, name, body)
		if !errors.Is(err, errDeclined) {
			if res != nil {
				res.QueueMs += msSince(t0) - res.TotalMs
			}
			return res, err
		}
		left := time.Until(queueDeadline)
		if left <= 0 {
			return nil, &apiError{status: http.StatusTooManyRequests, retryAfter: s.retryAfter(), notStarted: true,
				msg: fmt.Sprintf("function %s: no node had an instance free within the queue deadline (%v): retry later", name, s.cfg.QueueTimeout)}
		}
		select {
		case <-time.After(min(wait, left)):
		case <-ctx.Done():
			return nil, statusErr(499, "invocation abandoned by the client before any node took it: %v", ctx.Err())
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// forwardOnce sends the invocation once to function name's group:
// errDeclined if nobody received it or its receiver declined it.
func (s *Server) forwardOnce(ctx context.Context, name string, body []byte) (*Invocation, error) {
	t0 := time.Now()
	deadline := t0.Add(s.cfg.ForwardTimeout)
	rctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	m := nats.NewMsg(InvokeSubject(name))
	m.Header.Set(hdrDeadline, strconv.FormatInt(deadline.UnixMilli(), 10))
	m.Data = body
	resp, err := s.bus.Conn().RequestMsgWithContext(rctx, m)
	switch {
	case err == nil:
	case errors.Is(err, nats.ErrNoResponders):
		return nil, errDeclined
	case ctx.Err() != nil:
		return nil, statusErr(499, "invocation abandoned by the client while another node ran it: outcome unknown")
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		return nil, statusErr(http.StatusGatewayTimeout, "function %s: the node that took the invocation did not answer within %v (it hung or died): outcome unknown, it ran at most once; not retried", name, s.cfg.ForwardTimeout)
	default:
		// The request may have gone out: not retried either.
		return nil, statusErr(http.StatusGatewayTimeout, "function %s: forwarding to another node failed: %v: outcome unknown, it ran at most once; not retried", name, err)
	}
	node := resp.Header.Get(hdrNode)
	switch st := resp.Header.Get(hdrStatus); st {
	case declined:
		slog.Debug("serve: routing: declined", "function", name, "node", node, "why", string(resp.Data))
		return nil, errDeclined
	case "200":
	default:
		code, err := strconv.Atoi(st)
		if err != nil {
			code = http.StatusInternalServerError
		}
		return nil, &apiError{status: code, msg: fmt.Sprintf("node %s: %s", node, resp.Data)}
	}
	res := &Invocation{Result: resp.Data, ContentType: cmp.Or(resp.Header.Get(hdrType), "application/json"), Node: node, TotalMs: msSince(t0)}
	res.Cold, _ = strconv.ParseBool(resp.Header.Get(hdrCold))
	res.RestoreMs, _ = strconv.ParseFloat(resp.Header.Get(hdrRestore), 64)
	res.PrefetchBytes, _ = strconv.ParseInt(resp.Header.Get(hdrPrefetch), 10, 64)
	res.QueueMs, _ = strconv.ParseFloat(resp.Header.Get(hdrQueue), 64)
	return res, nil
}
