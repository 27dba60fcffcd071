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
	"sync/atomic"
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
// Semantics: at most once. A member that can run a request answers
// "taken" and starts it only on its forwarder's go, which the forwarder
// sends once, to the first taken it hears before its take-by deadline. A
// request is sent again only when nobody received it (no responders),
// nobody took it by the take-by deadline (it was lost on its way: NATS
// drops requests in flight to a member that leaves the group), or its
// receiver declined it before starting it (no instance free after all,
// draining, not ready there, no go). A request a member took and did not
// answer within the forward deadline (it hung, or died) is never sent
// again: its caller gets 504, outcome unknown. The member works to a
// deadline short of the forwarder's, so a healthy one always answers.

// InvokeSubject is the NATS subject of function name's invocations.
func InvokeSubject(name string) string { return "snapbpf.invoke." + name }

const invokeQueue = "snapbpf"

// Headers of a forwarded invocation and its reply.
const (
	hdrDeadline = "Snapbpf-Deadline" // request: unix ms the forwarder waits until
	hdrID       = "Snapbpf-Id"       // request: the forwarder's node and sequence number, for the logs
	hdrTakeBy   = "Snapbpf-Take-By"  // request: unix ms the forwarder waits for taken or an answer until
	hdrStatus   = "Snapbpf-Status"   // reply: HTTP status, or "declined"
	hdrNode     = "Snapbpf-Node"     // reply: the node that answered
	hdrCold     = "Snapbpf-Cold"
	hdrRestore  = "Snapbpf-Restore-Ms"
	hdrPrefetch = "Snapbpf-Prefetch-Bytes"
	hdrQueue    = "Snapbpf-Queue-Ms"
	hdrType     = "Content-Type" // reply: the result's (a python function's is its output)
	declined    = "declined"
	taken       = "taken" // reply: an instance is held for it; it starts on the forwarder's go
)

// forwardSeq numbers this process's forwarded invocations (hdrID).
var forwardSeq atomic.Uint64

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
			leaveGroup(sub)
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
		leaveGroup(sub)
		delete(r.subs, name)
	}
}

// leaveGroup quits a queue group without dropping the requests NATS has
// already handed this node's connection: a drain, not an unsubscribe
// (which drops those queued for the subscription and those on the wire
// before its server sees it). Drained, each is handed to handle, which
// declines it (no instance free here), and its forwarder tries another
// node at once instead of after its take-by deadline. Requests that a
// peer's server routed here as the interest went are lost all the same
// (a server does not pass a routed message on to another route): the
// take-by deadline of forwardOnce covers those.
func leaveGroup(sub *nats.Subscription) {
	if err := sub.Drain(); err != nil {
		slog.Warn("serve: routing: cannot leave the group of a function", "subject", sub.Subject, "err", err)
	}
}

// close quits every group and waits for the requests being answered.
func (r *router) close() {
	r.mu.Lock()
	r.closed = true
	for name, sub := range r.subs {
		leaveGroup(sub) // what it still receives is declined: closed
		delete(r.subs, name)
	}
	r.mu.Unlock()
	r.inflight.Wait()
}

// handle answers one forwarded invocation, in its own goroutine: the
// subscription's callbacks run one at a time.
func (r *router) handle(m *nats.Msg) {
	received := time.Now()
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
		r.serve(m, received)
	}()
}

// takeTimeout is how long a forwarder waits for a node to take its
// invocation (or decline it) before it sends it again: a fifth of the
// forward deadline, at most 2 s (an overloaded host's scheduling, not the
// work: taking is an instance slot and a message).
func takeTimeout(forward time.Duration) time.Duration {
	return min(2*time.Second, forward/5)
}

// replyMargin is how long before its forwarder's deadline a forwarded
// invocation must have its answer sent: a tenth of the time left when it
// arrives, at most a second (the reply's way back, and clocks apart).
func replyMargin(left time.Duration) time.Duration {
	return min(time.Second, left/10)
}

func (r *router) serve(m *nats.Msg, received time.Time) {
	s := r.s
	name := m.Subject[len(InvokeSubject("")):]
	ctx := s.ctx
	// Everything here works to a deadline before the forwarder's: an
	// answer sent as the forwarder gives up is lost, and turns a known
	// outcome into its 504 "outcome unknown".
	var runBy, fwdDeadline time.Time
	if ms, err := strconv.ParseInt(m.Header.Get(hdrDeadline), 10, 64); err == nil {
		fwdDeadline = time.UnixMilli(ms)
		runBy = fwdDeadline.Add(-replyMargin(time.Until(fwdDeadline)))
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, runBy)
		defer cancel()
	}
	t0 := time.Now()
	var (
		res *Invocation
		err error
	)
	if e := s.reg.get(name); e == nil {
		err = &apiError{status: http.StatusNotFound, msg: "function " + name + " is not on node " + s.cfg.Node, notStarted: true}
	} else {
		// No queue here: a node that cannot start it at once declines,
		// and the forwarder tries another.
		var begin func() error
		if ms, err := strconv.ParseInt(m.Header.Get(hdrTakeBy), 10, 64); err == nil {
			// Its go comes before the take-by deadline or never: the
			// instance is not held for it longer than that (and a
			// second for the go's way here).
			goBy := time.UnixMilli(ms).Add(time.Second)
			if !runBy.IsZero() && runBy.Before(goBy) {
				goBy = runBy
			}
			begin = func() error {
				gctx, cancel := context.WithDeadline(ctx, goBy)
				defer cancel()
				return r.take(gctx, m)
			}
		}
		res, err = s.invokeLocal(ctx, e, m.Data, t0, t0, runBy, begin)
	}
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
	sent := r.reply(m, err, res)
	// One line per forwarded invocation: which node sent it, when it
	// came, how long its start and run took, what was answered and how
	// long before the forwarder's deadline.
	log := slog.Debug
	if !sent || (!fwdDeadline.IsZero() && !time.Now().Before(fwdDeadline)) {
		log = slog.Warn // its forwarder answers 504 "outcome unknown"
	}
	attrs := []any{"function", name, "id", m.Header.Get(hdrID), "outcome", outcome,
		"handoff_ms", msBetween(received, t0), "answered_ms", msSince(received), "sent", sent}
	if res != nil {
		attrs = append(attrs, "cold", res.Cold, "restore_ms", res.RestoreMs, "run_ms", res.TotalMs-res.QueueMs-res.RestoreMs)
	}
	if !fwdDeadline.IsZero() {
		attrs = append(attrs, "before_deadline_ms", msBetween(time.Now(), fwdDeadline))
	}
	if err != nil && outcome != declined {
		attrs = append(attrs, "err", err)
	}
	log("serve: routing: forwarded invocation answered", attrs...)
}

// take tells m's forwarder that this node holds an instance for it, and
// waits for its go: only a forwarder that heard of it before its take-by
// deadline says go, and from then on sends the invocation nowhere else.
// Without a go it never starts here (the forwarder gave up on this node,
// or the request was one NATS handed it as it left the group).
func (r *router) take(ctx context.Context, m *nats.Msg) error {
	ack := nats.NewMsg(m.Reply)
	ack.Header.Set(hdrStatus, taken)
	ack.Header.Set(hdrNode, r.s.cfg.Node)
	if _, err := r.s.bus.Conn().RequestMsgWithContext(ctx, ack); err != nil {
		return fmt.Errorf("its forwarding node did not say go: %w", err)
	}
	return nil
}

func msBetween(a, b time.Time) float64 {
	return float64(b.Sub(a).Microseconds()/10) / 100
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

// reply answers m: whether the answer was sent.
func (r *router) reply(m *nats.Msg, err error, res *Invocation) bool {
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
		slog.Warn("serve: routing: the answer to a forwarded invocation was not sent", "subject", m.Subject, "id", m.Header.Get(hdrID), "err", err)
		return false
	}
	return true
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
//
// The receiver answers first "taken" (an instance is held for it) and
// starts it only on this node's go, which goes to the first taken heard
// before the take-by deadline and to no other. A request nobody takes by
// then went nowhere (NATS loses the requests in flight to a node as it
// leaves the group: it cannot tell them from a hung node's) and is sent
// again; only one that was taken and then not answered by the forward
// deadline is 504 "outcome unknown".
func (s *Server) forwardOnce(ctx context.Context, name string, body []byte) (*Invocation, error) {
	t0 := time.Now()
	deadline := t0.Add(s.cfg.ForwardTimeout)
	takeBy := t0.Add(takeTimeout(s.cfg.ForwardTimeout))
	rctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	nc := s.bus.Conn()
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, statusErr(http.StatusServiceUnavailable, "function %s: cannot forward it to another node: %v; retry", name, err)
	}
	defer sub.Unsubscribe()
	m := nats.NewMsg(InvokeSubject(name))
	m.Reply = inbox
	m.Header.Set(hdrDeadline, strconv.FormatInt(deadline.UnixMilli(), 10))
	m.Header.Set(hdrTakeBy, strconv.FormatInt(takeBy.UnixMilli(), 10))
	id := fmt.Sprintf("%s-%d", s.cfg.Node, forwardSeq.Add(1))
	m.Header.Set(hdrID, id)
	m.Data = body
	if err := nc.PublishMsg(m); err != nil {
		return nil, statusErr(http.StatusServiceUnavailable, "function %s: cannot forward it to another node: %v; retry", name, err)
	}
	tctx, tcancel := context.WithDeadline(rctx, takeBy)
	resp, err := sub.NextMsgWithContext(tctx)
	tcancel()
	switch {
	case err == nil:
	case errors.Is(err, nats.ErrNoResponders):
		return nil, errDeclined
	case ctx.Err() != nil:
		// Taken later, it gets no go: it never runs.
		return nil, statusErr(499, "invocation abandoned by the client before any node took it: %v", ctx.Err())
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		slog.Debug("serve: routing: nobody took a forwarded invocation; sent again", "function", name, "id", id)
		return nil, errDeclined
	default:
		return nil, statusErr(http.StatusServiceUnavailable, "function %s: forwarding to another node failed before any node took it: %v; retry", name, err)
	}
	if resp.Header.Get(hdrStatus) == taken {
		// From here on it may run: never sent again.
		if err := resp.Respond(nil); err != nil {
			return nil, statusErr(http.StatusGatewayTimeout, "function %s: node %s took the invocation and the go to it was not sent: %v: outcome unknown, it ran at most once; not retried", name, resp.Header.Get(hdrNode), err)
		}
		resp, err = sub.NextMsgWithContext(rctx)
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return nil, statusErr(499, "invocation abandoned by the client while another node ran it: outcome unknown")
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
			slog.Warn("serve: routing: no answer to a forwarded invocation within the forward deadline", "function", name, "id", id, "forward_timeout", s.cfg.ForwardTimeout)
			return nil, statusErr(http.StatusGatewayTimeout, "function %s: the node that took the invocation did not answer within %v (it hung or died): outcome unknown, it ran at most once; not retried", name, s.cfg.ForwardTimeout)
		default:
			return nil, statusErr(http.StatusGatewayTimeout, "function %s: the answer of the node that took it was lost: %v: outcome unknown, it ran at most once; not retried", name, err)
		}
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
