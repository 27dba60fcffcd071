package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/snapbpf/snapbpf/internal/bus"
	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/pyfn"
	"github.com/snapbpf/snapbpf/internal/remotesnap"
	"github.com/snapbpf/snapbpf/internal/serve"
	"github.com/snapbpf/snapbpf/internal/snapshot"
)

// serveHome is where the service keeps its registry, snapshots and socket.
func serveHome() string { return filepath.Join(homeDir(), "serve") }

func newServeCmd() *cobra.Command {
	var (
		cfg                   serve.Config
		socket, listen, token string
		budgetMiB             int64
		drain                 time.Duration
		agentPath, inputs     string
		recordRuns            int
		freePages             string
		remoteFetch           string
		nf                    natsFlags
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the node service: an HTTP/JSON API to register and invoke functions",
		Long: `serve runs the node service a serverless platform puts in front of traffic.
It listens on a unix socket (mode 0600; --socket) and, with --listen and
--token-file, on TCP with a bearer token. Functions registered through
POST /v1/functions get a snapshot and a working set in the background;
POST /v1/functions/NAME/invoke runs one on a warm instance or restores one
cold under the snapbpf policy. Each function has at most --max-instances
instances; an invocation waits up to --queue-timeout for one, then gets 429.
With --memory-budget the page cache of the functions' memory files plus
their instances' private memory is measured before each cold start, and idle
instances are evicted least recently used first. Registered functions
persist under $SNAPBPF_HOME/serve; a restart ends the VMMs a killed service
left and serves them again. SIGTERM drains in-flight invocations for up to
--drain-timeout. GET /metrics is Prometheus text. See api/openapi.yaml.

The registry lives in NATS JetStream: by default a NATS server embedded in
the process that listens on nothing (its store in $SNAPBPF_HOME/serve/nats),
so one host needs nothing more. Several hosts share one registry and route
invocations to one another either by joining a NATS cluster (--nats URL,
with --nats-creds and --nats-tls-ca as it requires) or by running the
embedded servers as the cluster (--cluster with --cluster-listen,
--cluster-routes, --cluster-peers; it refuses to listen without an nkey
--nats-creds and --nats-tls-cert/--nats-tls-key/--nats-tls-ca). An
invocation a node cannot run at once goes to a node that can, at most once:
see api/openapi.yaml. snapbpf nodes lists the nodes.`,
		Annotations: rootOnly("it runs QEMU, loads eBPF and prefetches into the page cache"),
		Args:        cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var tok string
			if token != "" {
				var err error
				if tok, err = serve.ReadToken(token); err != nil {
					return err
				}
			}
			if agentPath == "" {
				var err error
				if agentPath, err = findAgent(); err != nil {
					return err
				}
			}
			for _, in := range strings.Split(inputs, ",") {
				n, err := strconv.ParseUint(strings.TrimSpace(in), 10, 64)
				if err != nil || n == 0 {
					return fmt.Errorf("--record-inputs %q: want input seeds, comma-separated", inputs)
				}
				cfg.RecordInputs = append(cfg.RecordInputs, n)
			}
			d := vmmDriver()
			cfg.Home, cfg.Driver = serveHome(), d
			cfg.Builder = &serve.NodeBuilder{Driver: d, ImageDir: defaultImageDir(), PythonImageDir: runtimeImageDir(pyfn.Runtime),
				AgentPath: agentPath, RecordRuns: recordRuns, FreePages: freePages}
			cfg.MemoryBudget = budgetMiB << 20
			cfg.Address = listen
			bc, err := nf.config(filepath.Join(cfg.Home, "nats"), cfg.Node)
			if err != nil {
				return err
			}
			cfg.BusConfig = bc
			return runServe(cmd.Context(), cfg, socket, listen, tok, drain)
		},
	}
	f := cmd.Flags()
	f.StringVar(&socket, "socket", defaultServeSocket(), "unix socket to serve on (mode 0600)")
	f.StringVar(&listen, "listen", "", "also serve on this TCP address (e.g. 127.0.0.1:8080); needs --token-file")
	f.StringVar(&token, "token-file", "", "file holding the bearer token TCP clients must send (mode 0600)")
	f.Int64Var(&budgetMiB, "memory-budget", 0, "host memory the functions may use, in MiB: page cache of their memory files plus their instances' private memory (0: no budget)")
	f.IntVar(&cfg.MaxInstances, "max-instances", 4, "instances per function, warm and busy")
	f.DurationVar(&cfg.IdleTimeout, "idle-timeout", 5*time.Minute, "end a warm instance unused this long")
	f.DurationVar(&cfg.QueueTimeout, "queue-timeout", 30*time.Second, "how long an invocation waits for an instance before 429")
	f.DurationVar(&cfg.InvokeTimeout, "invoke-timeout", 2*time.Minute, "how long a guest may take for one invocation before 504 (the instance is replaced)")
	f.DurationVar(&drain, "drain-timeout", 30*time.Second, "on SIGTERM, how long in-flight invocations may take to finish")
	f.StringVar(&cfg.Policy, "policy", policy.SnapBPF, "restore policy of cold starts: lazy, nora or snapbpf")
	f.StringVar(&agentPath, "agent", "", "guest agent binary the image is built from (default: snapbpf-agent beside snapbpf)")
	f.StringVar(&inputs, "record-inputs", "1", "inputs a new function's working set is recorded on, comma-separated")
	f.Int64Var(&cfg.Rerecord.MissFaults, "rerecord-faults", 32, "a cold restore with more memory-file faults than this (1 or more) missed its working set; -1: never re-record")
	f.IntVar(&cfg.Rerecord.After, "rerecord-after", 3, "re-record a working set after this many missing cold restores in a row")
	// For tests that need a function ready fast: fewer recording runs, no
	// free page reporting (which waits for the guest to report).
	f.IntVar(&recordRuns, "record-runs", 0, "restores per recording (default: record's)")
	f.StringVar(&freePages, "free-pages", snapshot.FreePagesReport, "free guest pages at snapshot time: report or none")
	f.StringVar(&cfg.Node, "node", "", "this node's name in the cluster (default: the host name)")
	f.DurationVar(&cfg.ForwardTimeout, "forward-timeout", 0, "how long an invocation forwarded to another node may take before 504, outcome unknown (default: --invoke-timeout + 30s)")
	f.StringVar(&remoteFetch, "remote-fetch", string(remotesnap.Lazy), "another node's snapshot this node has no copy of: lazy (restore at once through a FUSE memory file that fetches pages as the guest touches them, the rest streaming into a local copy) full (fetch it whole first) or none (serve it only from a copy found here; forward otherwise)")
	nf.add(cmd)
	f.MarkHidden("record-runs")
	f.MarkHidden("free-pages")
	checkFlags(cmd, func() error {
		if remoteFetch == "none" {
			cfg.NoRemoteFetch = true
		} else {
			m, err := remotesnap.ParseMode(remoteFetch)
			if err != nil {
				return fmt.Errorf("--remote-fetch: %w (or none)", err)
			}
			cfg.RemoteFetch = m
		}
		switch {
		case listen != "" && token == "":
			return errors.New("serve --listen needs --token-file: TCP is served only with a bearer token")
		case freePages != snapshot.FreePagesReport && freePages != snapshot.FreePagesNone:
			return fmt.Errorf("--free-pages %q: want %s or %s", freePages, snapshot.FreePagesReport, snapshot.FreePagesNone)
		case recordRuns < 0:
			return fmt.Errorf("--record-runs %d: want 1 or more, or 0 for the default", recordRuns)
		case budgetMiB < 0:
			return fmt.Errorf("--memory-budget %d: want MiB, or 0 for none", budgetMiB)
		case cfg.MaxInstances < 1:
			return fmt.Errorf("--max-instances %d: want at least 1", cfg.MaxInstances)
		case cfg.IdleTimeout <= 0 || cfg.QueueTimeout <= 0 || cfg.InvokeTimeout <= 0 || drain <= 0:
			return errors.New("--idle-timeout, --queue-timeout, --invoke-timeout and --drain-timeout: want positive durations")
		case cfg.Rerecord.MissFaults == 0 || cfg.Rerecord.MissFaults < -1:
			return fmt.Errorf("--rerecord-faults %d: want 1 or more memory-file faults (a few faults are single pages no recording saw; 32 is the default), or -1 to never re-record", cfg.Rerecord.MissFaults)
		case cfg.Rerecord.After < 1:
			return fmt.Errorf("--rerecord-after %d: want at least 1", cfg.Rerecord.After)
		}
		for _, p := range policy.Names() {
			if p == cfg.Policy {
				return nil
			}
		}
		return fmt.Errorf("--policy %q: want one of %v", cfg.Policy, policy.Names())
	})
	return cmd
}

// runServe serves until ctx ends (SIGTERM, SIGINT), then drains.
func runServe(ctx context.Context, cfg serve.Config, socket, listen, token string, drain time.Duration) error {
	s, err := serve.New(cfg)
	if err != nil {
		return err
	}
	var servers []*http.Server
	errc := make(chan error, 2)
	start := func(l net.Listener, h http.Handler) {
		srv := serve.HTTPServer(h)
		servers = append(servers, srv)
		go func() {
			if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	ul, err := serve.ListenUnix(socket)
	if err != nil {
		s.Close()
		return err
	}
	start(ul, s.Handler())
	if listen != "" {
		tl, err := net.Listen("tcp", listen)
		if err != nil {
			ul.Close()
			s.Close()
			return fmt.Errorf("serve --listen %s: %w", listen, err)
		}
		start(tl, serve.RequireToken(s.Handler(), token))
	}
	slog.Info("serve: listening", "socket", socket, "tcp", listen, "home", cfg.Home, "policy", cfg.Policy, "memory_budget_mib", cfg.MemoryBudget>>20, "node", s.Node(), "nats", s.NATS())
	select {
	case <-ctx.Done():
	case err = <-errc:
		slog.Error("serve: HTTP server failed", "err", err)
	}
	s.Drain()
	dctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	for _, srv := range servers {
		if serr := srv.Shutdown(dctx); serr != nil {
			slog.Warn("serve: drain deadline passed; ending the invocations still running", "err", serr)
			srv.Close()
		}
	}
	cerr := s.Close()
	slog.Info("serve: stopped")
	return errors.Join(err, cerr)
}

// natsFlags say how serve reaches NATS (internal/bus).
type natsFlags struct {
	url, creds, cert, key, ca string
	cluster                   bool
	name, listen, routes      string
	peers                     []string
	usersFile                 string
	replicas                  int
}

func (n *natsFlags) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&n.url, "nats", "", "join this external NATS cluster (URLs, comma-separated) instead of embedding a server")
	f.StringVar(&n.creds, "nats-creds", "", "this node's NATS identity: an nkey user seed (SU...) or a user .creds file")
	f.StringVar(&n.cert, "nats-tls-cert", "", "TLS certificate (PEM): the embedded server's with --cluster, the client's with --nats")
	f.StringVar(&n.key, "nats-tls-key", "", "the key of --nats-tls-cert (PEM)")
	f.StringVar(&n.ca, "nats-tls-ca", "", "CA (PEM) that verifies clients and peer routes (--cluster) or the servers (--nats)")
	f.BoolVar(&n.cluster, "cluster", false, "run the embedded NATS server as a cluster member: listen for clients and routes (needs auth and TLS)")
	f.StringVar(&n.name, "cluster-name", "snapbpf", "the cluster's name, the same on every node")
	f.StringVar(&n.listen, "cluster-listen", "", "HOST:PORT the embedded server takes clients on (--cluster)")
	f.StringVar(&n.routes, "cluster-routes", "", "HOST:PORT the embedded server takes peer routes on (--cluster)")
	f.StringSliceVar(&n.peers, "cluster-peers", nil, "the other nodes' --cluster-routes addresses, comma-separated (--cluster)")
	f.StringVar(&n.usersFile, "cluster-users", "", "file of the nkey public keys (U..., one a line) allowed to connect besides this node's own (--cluster)")
	f.IntVar(&n.replicas, "nats-replicas", 0, "copies JetStream keeps of the registry (default: 1, or min(3, peers+1) with --cluster)")
}

// config is the bus configuration the flags say, with the embedded
// server's store in dir.
func (n *natsFlags) config(dir, node string) (bus.Config, error) {
	c := bus.Config{Dir: dir, Name: node, URL: n.url, Creds: n.creds, TLS: bus.TLSFiles{Cert: n.cert, Key: n.key, CA: n.ca}, Replicas: n.replicas, Logger: slog.Default()}
	if !n.cluster {
		if n.listen != "" || n.routes != "" || len(n.peers) > 0 || n.usersFile != "" {
			return c, errors.New("--cluster-listen, --cluster-routes, --cluster-peers and --cluster-users need --cluster")
		}
		return c, nil
	}
	c.Cluster = &bus.Cluster{Name: n.name, Listen: n.listen, RouteListen: n.routes, Peers: n.peers}
	if n.usersFile != "" {
		b, err := os.ReadFile(n.usersFile)
		if err != nil {
			return c, fmt.Errorf("--cluster-users: %w", err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				c.Cluster.Users = append(c.Cluster.Users, line)
			}
		}
	}
	return c, nil
}
