// Package bus owns a node's NATS: by default a NATS server embedded in the
// process with no listening port, or the same server listening for clients
// and routes to peers (a cluster), or a connection to an external cluster;
// and the JetStream handle the registry, the heartbeats, the routing and
// the snapshot store use.
//
// Whatever the mode, the node talks to NATS through one *nats.Conn and one
// jetstream.JetStream, so the code above is the same on one host and on
// many; bulk transfers (the snapshot store's objects) get a second
// connection of their own (Bulk), so that nothing small queues behind them.
//
// Durability: JetStream's file store writes every message to its file
// (write(2), flushed in place: streams leave AsyncFlush off) before it
// acknowledges it, so a kill -9 of the node loses nothing acknowledged; it
// fsyncs every SyncInterval (the server's 2 min default), so a power cut on a
// single node may lose the last writes. In a cluster a write is
// acknowledged once a majority of the replicas have it.
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/snapbpf/snapbpf/internal/logging"
)

// Config says how a node reaches NATS. The zero value but Dir is the
// embedded, in-process server.
type Config struct {
	// Dir holds the embedded server's JetStream file store
	// ($SNAPBPF_HOME/nats). Unused with URL.
	Dir string
	// Name identifies the node: its embedded server's name (unique in a
	// cluster) and its connection's name. Empty: the host name.
	Name string
	// URL, if set, joins an external NATS cluster (comma-separated server
	// URLs) instead of embedding a server.
	URL string
	// Creds is the file this node authenticates with: NATS user
	// credentials (a .creds file with a JWT) or an nkey seed (SU...).
	// Required with Cluster; optional with URL.
	Creds string
	// TLS holds the certificate, key and CA files: the embedded server's
	// with Cluster, the client's with URL (CA alone verifies the servers).
	TLS TLSFiles
	// Cluster, if set, makes the embedded server listen for clients and
	// routes; it then refuses to start without Creds and TLS.
	Cluster *Cluster
	// Replicas is how many copies JetStream keeps of each bucket. Zero:
	// 1 embedded alone or with URL, min(3, peers+1) with Cluster.
	Replicas int
	// ReadyTimeout bounds the wait for JetStream at Open (30 s): a
	// cluster has no JetStream until a majority of its servers meet.
	ReadyTimeout time.Duration
	// Logger receives the server's warnings and errors and the
	// connection's events; nil discards them.
	Logger *slog.Logger
}

// TLSFiles are PEM files.
type TLSFiles struct {
	Cert, Key, CA string
}

func (t TLSFiles) empty() bool { return t.Cert == "" && t.Key == "" && t.CA == "" }

// Cluster is the embedded server's network side.
type Cluster struct {
	// Name is the cluster's name, the same on every node ("snapbpf").
	Name string
	// Listen is the address clients connect to (HOST:PORT; port 0 picks
	// one, see Bus.ClientURL).
	Listen string
	// RouteListen is the address the other servers' routes connect to.
	RouteListen string
	// Peers are the other servers' route addresses (HOST:PORT).
	Peers []string
	// Users are the nkey public keys (U...) allowed to connect as
	// clients besides this node's own (the key of Config.Creds).
	Users []string
}

// Bus is a node's connection to NATS, with the embedded server it runs if
// any. Close it once.
type Bus struct {
	cfg  Config
	log  *slog.Logger
	srv  *server.Server
	nc   *nats.Conn
	js   jetstream.JetStream
	reps int
	// connect opens a connection like nc; bulk is the second one, for
	// the snapshot store.
	connect func(name string) (*nats.Conn, error)
	bulk    *nats.Conn
	bulkJS  jetstream.JetStream
}

// Open starts the embedded server (unless cfg.URL is set), connects to it
// and waits until JetStream answers. ctx bounds the whole start.
func Open(ctx context.Context, cfg Config) (*Bus, error) {
	if cfg.Name == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("bus: node name: %w", err)
		}
		cfg.Name = h
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 30 * time.Second
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	b := &Bus{cfg: cfg, log: logging.Or(cfg.Logger).With("component", "nats")}
	b.reps = cfg.Replicas
	if b.reps <= 0 {
		b.reps = 1
		if cfg.Cluster != nil {
			b.reps = min(3, len(cfg.Cluster.Peers)+1)
		}
	}
	var err error
	if cfg.URL != "" {
		err = b.connectExternal()
	} else {
		err = b.startEmbedded()
	}
	if err != nil {
		b.Close()
		return nil, err
	}
	if b.js, err = jetstream.New(b.nc); err != nil {
		b.Close()
		return nil, fmt.Errorf("bus: jetstream: %w", err)
	}
	if b.bulk, err = b.connect(cfg.Name + "-bulk"); err != nil {
		b.Close()
		return nil, err
	}
	if b.bulkJS, err = jetstream.New(b.bulk); err != nil {
		b.Close()
		return nil, fmt.Errorf("bus: jetstream: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.ReadyTimeout)
	defer cancel()
	if err := b.waitJetStream(ctx); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// validate refuses a configuration that would listen on the network
// without authentication and TLS, or that mixes the modes.
func (c *Config) validate() error {
	if c.URL != "" && c.Cluster != nil {
		return errors.New("bus: --nats (join an external cluster) and --cluster (run a listening server) exclude each other")
	}
	if c.URL == "" && c.Dir == "" {
		return errors.New("bus: the embedded server needs a directory for its JetStream store")
	}
	if c.Cluster == nil {
		if c.URL == "" && (c.Creds != "" || !c.TLS.empty()) {
			return errors.New("bus: --nats-creds and --nats-tls-* apply to --nats URL or --cluster; the in-process server listens on nothing and needs neither")
		}
		return nil
	}
	var missing []string
	if c.Creds == "" {
		missing = append(missing, "--nats-creds (this node's nkey seed)")
	}
	if c.TLS.Cert == "" || c.TLS.Key == "" || c.TLS.CA == "" {
		missing = append(missing, "--nats-tls-cert, --nats-tls-key and --nats-tls-ca (PEM files; the CA verifies clients and peer routes)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("bus: --cluster listens on the network and refuses to without authentication and TLS: give %s", joinAnd(missing))
	}
	if c.Cluster.Listen == "" || c.Cluster.RouteListen == "" {
		return errors.New("bus: --cluster needs --cluster-listen (clients) and --cluster-routes (peer servers), each HOST:PORT")
	}
	if len(c.Cluster.Peers) == 0 {
		return errors.New("bus: --cluster needs --cluster-peers (the other servers' --cluster-routes): JetStream clusters only with routes; one node alone needs no --cluster")
	}
	return nil
}

func joinAnd(s []string) string {
	switch len(s) {
	case 0:
		return ""
	case 1:
		return s[0]
	}
	out := s[0]
	for _, x := range s[1 : len(s)-1] {
		out += ", " + x
	}
	return out + " and " + s[len(s)-1]
}

// startEmbedded runs the server in the process and connects to it
// in-process (no socket even when it listens).
func (b *Bus) startEmbedded() error {
	cfg := b.cfg
	opts := &server.Options{
		ServerName: cfg.Name,
		JetStream:  true,
		StoreDir:   cfg.Dir,
		NoSigs:     true,
		DontListen: cfg.Cluster == nil,
		// The server's own limits on JetStream are the host's; our
		// buckets set theirs.
	}
	var connOpts []nats.Option
	if c := cfg.Cluster; c != nil {
		if err := b.clusterOptions(opts); err != nil {
			return err
		}
		// This node's own connection authenticates like any client.
		o, err := credsOption(cfg.Creds)
		if err != nil {
			return err
		}
		connOpts = append(connOpts, o)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("bus: the JetStream store %s: %w", cfg.Dir, err)
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("bus: embedded NATS server: %w", err)
	}
	sl := &serverLogger{l: b.log}
	srv.SetLoggerV2(sl, false, false, false)
	b.srv = srv
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		if f := sl.fatal.Load(); f != nil {
			return fmt.Errorf("bus: the embedded NATS server did not start: %s", *f)
		}
		return fmt.Errorf("bus: the embedded NATS server did not start within 10 s (its store is %s)", cfg.Dir)
	}
	connOpts = append(connOpts, nats.InProcessServer(srv))
	connOpts = append(connOpts, b.eventOptions()...)
	b.connect = func(name string) (*nats.Conn, error) {
		nc, err := nats.Connect("", append(connOpts, nats.Name(name))...)
		if err != nil {
			return nil, fmt.Errorf("bus: connect to the embedded server: %w", err)
		}
		return nc, nil
	}
	b.nc, err = b.connect(cfg.Name)
	return err
}

// clusterOptions makes opts listen for clients (nkeys over TLS) and routes
// (mutual TLS against the CA), with routes to the peers.
func (b *Bus) clusterOptions(opts *server.Options) error {
	c := b.cfg.Cluster
	host, port, err := splitHostPort(c.Listen, "--cluster-listen")
	if err != nil {
		return err
	}
	opts.Host, opts.Port = host, port
	if opts.Cluster.Host, opts.Cluster.Port, err = splitHostPort(c.RouteListen, "--cluster-routes"); err != nil {
		return err
	}
	opts.Cluster.Name = c.Name
	if opts.Cluster.Name == "" {
		opts.Cluster.Name = "snapbpf"
	}
	for _, p := range c.Peers {
		u, err := url.Parse("nats-route://" + p)
		if err != nil || u.Port() == "" {
			return fmt.Errorf("bus: --cluster-peers: %q is not a HOST:PORT route address", p)
		}
		opts.Routes = append(opts.Routes, u)
	}

	serverTLS, err := b.cfg.TLS.serverConfig()
	if err != nil {
		return err
	}
	opts.TLSConfig, opts.TLS = serverTLS, true
	opts.TLSTimeout = 5
	routeTLS, err := b.cfg.TLS.routeConfig()
	if err != nil {
		return err
	}
	opts.Cluster.TLSConfig = routeTLS
	opts.Cluster.TLSTimeout = 5

	own, err := seedPublicKey(b.cfg.Creds)
	if err != nil {
		return err
	}
	users := append([]string{own}, c.Users...)
	for _, u := range users {
		if !nkeysUserKey(u) {
			return fmt.Errorf("bus: %q is not an nkey user public key (U...)", u)
		}
		opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{Nkey: u})
	}
	return nil
}

func splitHostPort(addr, flag string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("bus: %s %q: want HOST:PORT: %w", flag, addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return "", 0, fmt.Errorf("bus: %s %q: bad port", flag, addr)
	}
	if n == 0 {
		n = server.RANDOM_PORT
	}
	return h, n, nil
}

// connectExternal joins the cluster at cfg.URL, reconnecting forever.
func (b *Bus) connectExternal() error {
	cfg := b.cfg
	opts := []nats.Option{nats.Name(cfg.Name), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond)}
	if cfg.Creds != "" {
		o, err := credsOption(cfg.Creds)
		if err != nil {
			return err
		}
		opts = append(opts, o)
	}
	if !cfg.TLS.empty() {
		tc, err := cfg.TLS.clientConfig()
		if err != nil {
			return err
		}
		opts = append(opts, nats.Secure(tc))
	}
	opts = append(opts, b.eventOptions()...)
	b.connect = func(name string) (*nats.Conn, error) {
		nc, err := nats.Connect(cfg.URL, append(opts, nats.Name(name))...)
		if err != nil {
			return nil, fmt.Errorf("bus: connect to %s: %w", cfg.URL, err)
		}
		return nc, nil
	}
	var err error
	b.nc, err = b.connect(cfg.Name)
	return err
}

func (b *Bus) eventOptions() []nats.Option {
	return []nats.Option{
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				b.log.Warn("bus: disconnected from NATS", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.log.Info("bus: reconnected to NATS", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			b.log.Warn("bus: NATS error", "subject", subj, "err", err)
		}),
	}
}

// waitJetStream polls JetStream with short per-call deadlines until it
// answers: with no meta leader yet a call gets no answer at all.
func (b *Bus) waitJetStream(ctx context.Context) error {
	var last error
	for {
		cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		_, err := b.js.AccountInfo(cctx)
		cancel()
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("bus: JetStream did not answer within %v (a cluster needs a majority of its servers up; last error: %w)", b.cfg.ReadyTimeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Conn is the node's NATS connection.
func (b *Bus) Conn() *nats.Conn { return b.nc }

// JetStream is the node's JetStream handle.
func (b *Bus) JetStream() jetstream.JetStream { return b.js }

// Bulk is the JetStream handle of the node's second connection, for bulk
// transfers: the snapshot store's uploads and fetches. A connection
// carries its messages in order, through one socket and one server read
// loop, so a snapshot's chunks on the node's main connection would queue
// ahead of its heartbeats, registry writes and forwarded invocations (a
// heartbeat-like put during an upload: median 25-29 ms on the main
// connection, 16-17 ms on this one; BenchmarkKVDuringUpload in
// snapstore). What the cluster's route carries is shared either way:
// snapstore bounds its uploads' chunks in flight for that.
func (b *Bus) Bulk() jetstream.JetStream { return b.bulkJS }

// Replicas is how many copies to ask of a new bucket or stream.
func (b *Bus) Replicas() int { return b.reps }

// Name is the node's name.
func (b *Bus) Name() string { return b.cfg.Name }

// ClientURL is where clients reach the embedded server when it listens
// (with Cluster), or "".
func (b *Bus) ClientURL() string {
	if b.srv == nil || b.cfg.Cluster == nil {
		return ""
	}
	return b.srv.ClientURL()
}

// RouteURL is where the other servers' routes reach this one when it
// listens (with Cluster), or "".
func (b *Bus) RouteURL() string {
	if b.srv == nil || b.cfg.Cluster == nil {
		return ""
	}
	if a := b.srv.ClusterAddr(); a != nil {
		return a.String()
	}
	return ""
}

// KeyValue creates bucket cfg.Bucket or updates its configuration, with
// this bus's replicas unless cfg sets them, retrying with short per-call
// deadlines until ctx ends: a cluster that just lost its leader answers
// nothing for a second or two.
func (b *Bus) KeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	if cfg.Replicas == 0 {
		cfg.Replicas = b.reps
	}
	var last error
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		kv, err := b.js.CreateOrUpdateKeyValue(cctx, cfg)
		cancel()
		if err == nil {
			return kv, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("bus: key-value bucket %s: %w", cfg.Bucket, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Close drains the connection (subscriptions finish the messages they
// have), then shuts the embedded server down and waits for it.
func (b *Bus) Close() error {
	var err error
	if b.bulk != nil {
		// Nothing waits on the bulk connection's subscriptions once the
		// store's users have ended.
		b.bulk.Close()
		b.bulk = nil
	}
	if b.nc != nil {
		closed := make(chan struct{})
		b.nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
		if b.nc.IsClosed() {
			close(closed)
		} else if derr := b.nc.Drain(); derr != nil {
			b.nc.Close()
		}
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			err = errors.New("bus: the NATS connection did not drain within 10 s")
			b.nc.Close()
		}
		b.nc = nil
	}
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
		b.srv = nil
	}
	return err
}
