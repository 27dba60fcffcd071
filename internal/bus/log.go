package bus

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// serverLogger hands the embedded server's log to slog: its notices (many
// at start and stop) at debug, its warnings at info (they are the normal
// course of a cluster forming: "Waiting for routing", "no meta leader
// yet"), its errors as such, except the failures to reach a peer, which
// the server repeats every second for as long as the peer is down (see
// connectFailures).
type serverLogger struct {
	l *slog.Logger
	// fatal is the last fatal error, why a start failed.
	fatal atomic.Pointer[string]
	// down summarises the connect failures per remote.
	down downPeers
}

func (s *serverLogger) Noticef(format string, v ...any) {
	if addr, ok := routeCreated(format); ok {
		s.down.restored(s.l, "route", addr)
	}
	s.l.Debug(fmt.Sprintf(format, v...))
}
func (s *serverLogger) Warnf(format string, v ...any) { s.l.Info(fmt.Sprintf(format, v...)) }
func (s *serverLogger) Fatalf(format string, v ...any) {
	m := fmt.Sprintf(format, v...)
	s.fatal.Store(&m)
	s.l.Error(m)
}
func (s *serverLogger) Errorf(format string, v ...any) {
	if f, ok := connectFailures[format]; ok {
		if addr, cause := f.parse(v); cause != nil {
			s.down.failed(s.l, f.kind, addr, cause)
			return
		}
	}
	s.l.Error(fmt.Sprintf(format, v...))
}
func (s *serverLogger) Debugf(format string, v ...any) { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s *serverLogger) Tracef(format string, v ...any) { s.l.Debug(fmt.Sprintf(format, v...)) }

// The formats the server (nats-server v2.15.2: connErrFmt in route.go,
// gateway.go and leafnode.go) passes to Errorf on each failed attempt to
// reach a peer. Matched exactly: if an upgrade rewords them, the failures
// are logged as errors again and TestRouteFailuresSummarised (and
// TestConnectFailureFormatsInServerSource) fail, rather than the match
// silently missing.
const (
	routeConnErrFmt   = "Error trying to connect to route (attempt %v): %v"
	gatewayConnErrFmt = "Error connecting to %s gateway %q (%s) at %s (attempt %v): %v"
	leafConnErrFmt    = "Error trying to connect as leafnode to remote server %q (attempt %v): %v"
	// routeCreatedMsg ends the notice of every new route connection,
	// after the connection's "ADDR - rid:N - " (client.format).
	routeCreatedMsg = "Route connection created"
)

// connectFailure says what kind of peer a connect-failure format is about
// and where in its arguments the remote and the error are.
type connectFailure struct {
	kind string
	// addr and err index the format's arguments; addr < 0: the
	// remote is the address in the error (a route's has no other).
	addr, err int
}

// connectFailures are the server's repeated connect failures, by format.
// The server logs every attempt at error (routes: one a second per route
// connection, several connections per peer), so a peer down for a while
// reads to a log pipeline as an incident of its own; these go to
// downPeers instead.
var connectFailures = map[string]connectFailure{
	routeConnErrFmt:   {kind: "route", addr: -1, err: 1},
	gatewayConnErrFmt: {kind: "gateway", addr: 3, err: 5},
	leafConnErrFmt:    {kind: "leafnode", addr: 0, err: 2},
}

// parse returns the remote and the error of a failure's arguments; a nil
// error if they are not what the format promises.
func (f connectFailure) parse(v []any) (addr string, cause error) {
	if f.err >= len(v) || f.addr >= len(v) {
		return "", nil
	}
	cause, _ = v[f.err].(error)
	if cause == nil {
		return "", nil
	}
	if f.addr >= 0 {
		return fmt.Sprint(v[f.addr]), cause
	}
	// A dial error names the address dialled, the key the route's
	// "connection created" notice is matched on. Anything else (a
	// failed name lookup) is keyed by its text, the same every attempt.
	if op := (*net.OpError)(nil); errors.As(cause, &op) && op.Addr != nil {
		return op.Addr.String(), cause
	}
	return cause.Error(), cause
}

// routeCreated returns the remote address of a route's "connection
// created" notice, whose format the server prefixes with the connection
// ("127.0.0.1:6222 - rid:5 - Route connection created").
func routeCreated(format string) (string, bool) {
	conn, ok := strings.CutSuffix(format, " - "+routeCreatedMsg)
	if !ok {
		return "", false
	}
	conn, _, ok = strings.Cut(conn, " - rid:")
	if !ok {
		return "", false
	}
	// The server escapes % in the address for Sprintf.
	return strings.ReplaceAll(conn, "%%", "%"), true
}

// summaryInterval is how often a peer that stays down gets a line.
const summaryInterval = 30 * time.Second

// downPeers logs the connect failures to each remote at warn, the first
// at once and then at most one line per interval counting the attempts
// failed since, and one info line when a route to it is created again.
type downPeers struct {
	// interval between a remote's lines; zero: summaryInterval.
	interval time.Duration
	// now is the clock; nil: time.Now.
	now func() time.Time

	mu    sync.Mutex
	peers map[string]*downPeer
}

// downPeer is one remote's failures since it was last reached.
type downPeer struct {
	since, logged time.Time
	// failed counts all attempts failed since, unlogged those since the
	// last line.
	failed, unlogged int
}

func (d *downPeers) clock() time.Time {
	if d.now != nil {
		return d.now()
	}
	return time.Now()
}

func (d *downPeers) failed(l *slog.Logger, kind, addr string, err error) {
	interval := d.interval
	if interval <= 0 {
		interval = summaryInterval
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.clock()
	p := d.peers[addr]
	if p == nil {
		if d.peers == nil {
			d.peers = map[string]*downPeer{}
		}
		d.peers[addr] = &downPeer{since: now, logged: now, failed: 1}
		l.Warn(fmt.Sprintf("nats: cannot connect to %s %s, retrying (failures summarised every %v)", kind, addr, interval), "err", err)
		return
	}
	p.failed++
	p.unlogged++
	if now.Sub(p.logged) < interval {
		return
	}
	l.Warn(fmt.Sprintf("nats: %s %s still down: %d attempts failed in the last %v", kind, addr, p.unlogged, now.Sub(p.logged).Round(time.Second)),
		"failed", p.failed, "down", now.Sub(p.since).Round(time.Second).String(), "err", err)
	p.logged, p.unlogged = now, 0
}

func (d *downPeers) restored(l *slog.Logger, kind, addr string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.peers[addr]
	if p == nil {
		return
	}
	delete(d.peers, addr)
	down := d.clock().Sub(p.since).Round(time.Second)
	l.Info(fmt.Sprintf("nats: %s to %s restored after %d failed attempts over %v", kind, addr, p.failed, down),
		"failed", p.failed, "down", down.String())
}
