package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/snapbpf/snapbpf/api"
	"github.com/snapbpf/snapbpf/internal/restore"
)

// pool is one function's instances: warm ones waiting for an invocation,
// busy ones running one, and slots taken by cold starts in progress. Its
// state is guarded by Server.mu, which every pool shares: the budget and
// the eviction look across pools.
type pool struct {
	s *Server
	e *entry

	idle     []*instance // least recently used first
	busy     int         // instances running an invocation
	starting int         // cold starts in progress
	closed   bool
}

// instance is a warm or busy restored clone.
type instance struct {
	*restore.Instance
	lastUsed time.Time
	pid      int
	rec      int // its vmmRecords id
	// snap is the snapshot it was restored from, held until its VMM has
	// ended: the VMM maps its memory file.
	snap *snapRef
}

// Errors of acquire.
var (
	errQueueTimeout = errors.New("queue deadline passed")
	errDraining     = errors.New("the service is draining")
	errGone         = errors.New("the function was deleted")
)

// counts are the pool's instances for the API.
func (p *pool) counts() api.Instances {
	p.s.mu.Lock()
	defer p.s.mu.Unlock()
	return api.Instances{Warm: len(p.idle), Busy: p.busy + p.starting}
}

// notify wakes every queued invocation; call with s.mu held.
func (s *Server) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// acquire returns a warm instance, or nil and a reserved slot for a cold
// start (which the caller must fill with started or give back with
// abandon), with the memory the cold start reserves (give it back with
// budget.settle once its first invocation has ended, or abandon). It waits
// while the function is at its instance limit, or the host at its memory
// budget with no idle instance left to evict, until deadline
// (errQueueTimeout) or ctx ends.
func (p *pool) acquire(ctx context.Context, deadline time.Time) (*instance, int64, error) {
	s := p.s
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	p.e.mu.Lock()
	wsetPages := p.e.f.WSetPages
	p.e.mu.Unlock()
	// used is the budget's measurement for this cold start (taken
	// outside the lock: it reads /proc and the page cache), -1 when it
	// must be taken (again).
	var used int64 = -1
	for {
		s.mu.Lock()
		switch {
		case s.draining:
			s.mu.Unlock()
			return nil, 0, errDraining
		case p.closed:
			s.mu.Unlock()
			return nil, 0, errGone
		}
		if n := len(p.idle); n > 0 {
			// The most recently used: it is likeliest to be warm in the
			// host's caches, and the others age out.
			in := p.idle[n-1]
			p.idle = p.idle[:n-1]
			p.busy++
			s.mu.Unlock()
			return in, 0, nil
		}
		room := p.busy+p.starting < s.cfg.MaxInstances
		cost := s.budget.cost(p.e, wsetPages)
		if room && used >= 0 && s.budget.fits(used, cost) {
			// Checked and reserved under the lock: a concurrent cold
			// start sees this one's reservation.
			p.starting++
			s.budget.reserve(cost)
			s.mu.Unlock()
			return nil, cost, nil
		}
		ch := s.changed
		s.mu.Unlock()
		if room {
			// Only a cold start adds memory: a warm one is measured
			// already, so only this path measures.
			if used < 0 {
				used = s.budget.used(cost)
				continue
			}
			used = -1
			s.mu.Lock()
			v := s.lru()
			s.mu.Unlock()
			if v != nil {
				s.evict(*v, "memory budget")
				continue
			}
			s.metrics.budgetWaits.Inc()
		}
		used = -1
		select {
		case <-ch:
		case <-timer.C:
			return nil, 0, errQueueTimeout
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
}

// started turns a slot reserved by acquire into a busy instance restored
// from snap (held for it: end drops it).
func (p *pool) started(ri *restore.Instance, snap *snapRef) *instance {
	s := p.s
	s.instances.Add(1)
	in := &instance{Instance: ri, pid: ri.PID(), rec: s.vmms.add(ri.PID()), snap: snap}
	go p.watch(in)
	s.mu.Lock()
	defer s.mu.Unlock()
	p.starting--
	p.busy++
	return in
}

// abandon gives back a slot reserved by acquire whose cold start failed,
// and the memory it reserved.
func (p *pool) abandon(cost int64) {
	s := p.s
	s.mu.Lock()
	defer s.mu.Unlock()
	p.starting--
	s.budget.reserved -= cost
	s.notify()
}

// release returns a busy instance after an invocation: warm again if ok,
// otherwise (the guest hung, crashed or answered wrong) it is ended and
// the next invocation restores a new one.
func (p *pool) release(in *instance, ok bool) {
	s := p.s
	s.mu.Lock()
	p.busy--
	keep := ok && !p.closed && !s.draining
	if keep {
		in.lastUsed = time.Now()
		p.idle = append(p.idle, in)
	}
	s.notify()
	s.mu.Unlock()
	if !keep {
		s.end(in, p, "replaced after a failed invocation")
	}
}

// watch drops in from the idle list if its VMM exits while warm, so it is
// never handed out (a busy one's invocation fails and replaces it).
func (p *pool) watch(in *instance) {
	s := p.s
	select {
	case <-in.Exited():
		if p.take(in) {
			slog.Warn("serve: a warm instance's VMM exited", "function", p.e.name, "pid", in.pid)
			s.end(in, p, "exited while warm")
		}
	case <-s.ctx.Done():
	}
}

// take removes in from the idle list if it is there.
func (p *pool) take(in *instance) bool {
	p.s.mu.Lock()
	defer p.s.mu.Unlock()
	for i, x := range p.idle {
		if x == in {
			p.idle = append(p.idle[:i], p.idle[i+1:]...)
			return true
		}
	}
	return false
}

// end stops an instance no pool holds any more.
func (s *Server) end(in *instance, p *pool, why string) {
	if err := in.Close(); err != nil {
		slog.Debug("serve: instance close", "function", p.e.name, "pid", in.pid, "err", err)
	}
	s.vmms.forget(in.rec)
	// The VMM has ended: nothing maps the snapshot for it any more.
	in.snap.drop()
	s.instances.Done()
	s.metrics.instanceEnds.WithLabelValues(why).Inc()
	slog.Debug("serve: instance ended", "function", p.e.name, "pid", in.pid, "why", why)
	s.mu.Lock()
	s.notify()
	s.mu.Unlock()
}

// evict ends an idle instance to free memory, if it is still idle.
func (s *Server) evict(v victim, why string) {
	if !v.p.take(v.in) {
		return
	}
	slog.Info("serve: evicting an idle instance", "function", v.p.e.name, "pid", v.in.pid, "idle", time.Since(v.in.lastUsed).Round(time.Millisecond), "why", why)
	s.metrics.evictions.Inc()
	s.end(v.in, v.p, "evicted")
}

// victim is an idle instance that may be evicted.
type victim struct {
	p  *pool
	in *instance
}

// lru is the least recently used idle instance of any pool; call with
// s.mu held.
func (s *Server) lru() *victim {
	var v *victim
	for _, e := range s.reg.all() {
		p := e.pool
		if len(p.idle) > 0 && (v == nil || p.idle[0].lastUsed.Before(v.in.lastUsed)) {
			v = &victim{p: p, in: p.idle[0]}
		}
	}
	return v
}

// close ends the pool's idle instances and makes every later acquire fail;
// busy instances end when their invocation returns.
func (p *pool) close() {
	s := p.s
	s.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	s.notify()
	s.mu.Unlock()
	for _, in := range idle {
		s.end(in, p, "function deleted or service stopped")
	}
}

// reapIdle ends instances idle longer than the idle timeout.
func (s *Server) reapIdle() {
	defer s.wg.Done()
	tick := time.NewTicker(min(s.cfg.IdleTimeout/4, time.Second))
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
		var old []victim
		s.mu.Lock()
		for _, e := range s.reg.all() {
			for _, in := range e.pool.idle {
				if time.Since(in.lastUsed) > s.cfg.IdleTimeout {
					old = append(old, victim{e.pool, in})
				}
			}
		}
		s.mu.Unlock()
		for _, v := range old {
			if v.p.take(v.in) {
				s.end(v.in, v.p, "idle timeout")
			}
		}
	}
}

// String names an instance in logs.
func (in *instance) String() string { return fmt.Sprintf("instance pid %d", in.pid) }

// wait waits until the pool's busy instances and cold starts have ended
// (after close, each ends when its invocation returns, bounded by the
// restore and invoke timeouts).
func (p *pool) wait() {
	s := p.s
	for {
		s.mu.Lock()
		n := p.busy + p.starting
		ch := s.changed
		s.mu.Unlock()
		if n == 0 {
			return
		}
		<-ch
	}
}
