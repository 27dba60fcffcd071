package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/snapbpf/snapbpf/api"
	"github.com/snapbpf/snapbpf/internal/bus"
	"github.com/snapbpf/snapbpf/internal/functions"
	"github.com/snapbpf/snapbpf/internal/funcvm"
	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/remotesnap"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/snapstore"
	"github.com/snapbpf/snapbpf/internal/vmm"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// Config configures a Server. Zero fields take the defaults named.
type Config struct {
	// Home holds the registry, the snapshots and the service's pidfile
	// ($SNAPBPF_HOME/serve).
	Home    string
	Driver  vmm.Driver
	Builder Builder
	// Policy is the restore policy of cold starts (policy.SnapBPF).
	Policy string
	// MaxInstances bounds each function's instances, warm and busy (4).
	MaxInstances int
	// IdleTimeout ends a warm instance unused this long (5 min).
	IdleTimeout time.Duration
	// QueueTimeout is how long an invocation waits for an instance
	// before 429 (30 s).
	QueueTimeout time.Duration
	// InvokeTimeout bounds one invocation in the guest (2 min): past it
	// the answer is 504 and the instance is replaced.
	InvokeTimeout time.Duration
	// VMMTimeout bounds each VMM step of a restore (funcvm.VMMTimeout).
	VMMTimeout time.Duration
	// MemoryBudget, if positive, bounds the host memory the functions
	// use, in bytes: the page cache of their memory files plus their
	// instances' private memory, both measured.
	MemoryBudget int64
	// RecordInputs are the inputs a new function's working set is
	// recorded on ([1]).
	RecordInputs []uint64
	// Rerecord is when a working set is re-recorded.
	Rerecord RerecordConfig
	// NoCheck skips checking each result against the function run on
	// the host.
	NoCheck bool
	// MinGuestMiB is the least guest RAM a function needs
	// (functions.MinGuestMiB); tests of tiny fake guests replace it.
	MinGuestMiB func(fn string, dataMiB int) int
	// Bus is the node's NATS, which holds the registry and carries the
	// heartbeats and forwarded invocations, opened by the caller. Nil: New
	// opens one as BusConfig says (once no other service runs from Home)
	// and Close closes it.
	Bus *bus.Bus
	// BusConfig is the bus New opens when Bus is nil; its zero value is
	// the embedded, in-process server with its store in Home/nats.
	BusConfig bus.Config
	// Node names this node in the registry and the heartbeats (the bus's
	// name); unique in a cluster.
	Node string
	// Address is where this node's API listens on TCP, if it does: what
	// its heartbeat tells the other nodes and snapbpf nodes.
	Address string
	// ForwardTimeout bounds an invocation forwarded to another node, from
	// the request to the answer (InvokeTimeout + 30 s): past it the
	// answer is 504, outcome unknown.
	ForwardTimeout time.Duration
	// HeartbeatInterval is how often the node puts its status (1 s).
	HeartbeatInterval time.Duration
	// RemoteFetch is how this node gets another node's snapshot it has no
	// copy of (remotesnap.Lazy).
	RemoteFetch remotesnap.Mode
	// NoRemoteFetch makes the node serve another node's function only from
	// a copy of its snapshot in Home/snapshots, forwarding it otherwise.
	NoRemoteFetch bool
	// PublishRetry is the wait before retrying a failed publication to the
	// snapshot store (2 s), doubled for each next attempt up to 5 min.
	PublishRetry time.Duration
	// RemoteBackgroundDelay is how long a lazymem mount holds back the
	// rest of the memory file after its early pages
	// (lazymem.DefaultBackgroundDelay; negative: none).
	RemoteBackgroundDelay time.Duration
}

func (c *Config) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.Policy == "" {
		c.Policy = policy.SnapBPF
	}
	if c.MaxInstances <= 0 {
		c.MaxInstances = 4
	}
	def(&c.IdleTimeout, 5*time.Minute)
	def(&c.QueueTimeout, 30*time.Second)
	def(&c.InvokeTimeout, 2*time.Minute)
	def(&c.VMMTimeout, funcvm.VMMTimeout)
	def(&c.ForwardTimeout, c.InvokeTimeout+30*time.Second)
	def(&c.HeartbeatInterval, time.Second)
	def(&c.PublishRetry, 2*time.Second)
	if len(c.RecordInputs) == 0 {
		c.RecordInputs = []uint64{1}
	}
	c.Rerecord.defaults()
	if c.MinGuestMiB == nil {
		c.MinGuestMiB = func(fn string, dataMiB int) int {
			return functions.MinGuestMiB(fn, functions.Options{DataMiB: dataMiB})
		}
	}
}

// Server is the service: the registry, the instances, the API.
type Server struct {
	cfg     Config
	reg     *registry
	vmms    *vmmRecords
	metrics *metrics
	budget  *budget

	// bus is the node's NATS; ownBus says New opened it (Close closes it).
	bus    *bus.Bus
	ownBus bool
	router *router
	beats  *heartbeats
	// store holds the snapshots this node publishes and fetches; remote
	// is this node's view of the others' (Home/remote).
	store  *snapstore.Store
	remote *remotesnap.Cache
	// snaps are the snapshots the entries and instances use; instances
	// counts the instances started and not yet ended (pool.started, end).
	snaps     snapRefs
	instances sync.WaitGroup

	// ctx ends every background job and in-flight invocation at Close.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// mu guards the pools' state; changed is closed and replaced
	// whenever an instance or a budget slot frees up, to wake queued
	// invocations.
	mu      sync.Mutex
	changed chan struct{}
	// draining refuses new invocations (503).
	draining bool
}

// New opens the service's home, ends the VMMs a previous service left,
// joins the registry (moving an old file registry into it) and resumes the
// creations it was doing. The caller serves its Handler and calls Close.
func New(cfg Config) (_ *Server, retErr error) {
	cfg.defaults()
	if cfg.Home == "" || cfg.Driver == nil || cfg.Builder == nil {
		return nil, errors.New("serve: Config needs Home, Driver and Builder")
	}
	if err := os.MkdirAll(cfg.Home, 0o700); err != nil {
		return nil, fmt.Errorf("serve: home %s: %w", cfg.Home, err)
	}
	// The pidfile first: a second service on this home must not open
	// its JetStream store too.
	vmms, err := openVMMRecords(cfg.Home)
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			vmms.close()
		}
	}()
	b, ownBus := cfg.Bus, false
	if b == nil {
		var err error
		bc := cfg.BusConfig
		if bc.Dir == "" {
			bc.Dir = filepath.Join(cfg.Home, "nats")
		}
		if bc.Name == "" {
			bc.Name = cfg.Node
		}
		if b, err = bus.Open(context.Background(), bc); err != nil {
			return nil, fmt.Errorf("serve: %w", err)
		}
		ownBus = true
		defer func() {
			if retErr != nil {
				b.Close()
			}
		}()
	}
	if cfg.Node == "" {
		// The host name, in the characters a key may have.
		cfg.Node = strings.Map(func(r rune) rune {
			if r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
				return r
			}
			return '-'
		}, b.Name())
	}
	if !nodeRE.MatchString(cfg.Node) {
		return nil, fmt.Errorf("serve: node name %q: want 1 to 64 of A-Z, a-z, 0-9, '-' and '_' (--node)", cfg.Node)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg, err := newRegistry(ctx, cfg.Home, cfg.Node, b)
	if err != nil {
		return nil, err
	}
	if err := reg.migrateFiles(); err != nil {
		return nil, err
	}
	// The store on the bus's bulk connection: on the main one, a
	// snapshot's chunks would queue ahead of the heartbeats (bus.Bulk).
	store, err := snapstore.Open(ctx, b.Bulk(), snapstore.Options{Replicas: b.Replicas(), Log: slog.Default()})
	if err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	// New unmounts what a killed service left under Home/remote.
	remote, err := remotesnap.New(filepath.Join(cfg.Home, "remote"), store, remotesnap.Options{Mode: cfg.RemoteFetch, BackgroundDelay: cfg.RemoteBackgroundDelay, Log: slog.Default()})
	if err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	defer func() {
		if retErr != nil {
			remote.Close()
		}
	}()
	s := &Server{cfg: cfg, reg: reg, vmms: vmms, changed: make(chan struct{}), bus: b, ownBus: ownBus, store: store, remote: remote}
	s.metrics = newMetrics(s)
	s.budget = &budget{s: s}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if s.beats, err = newHeartbeats(ctx, s); err != nil {
		return nil, err
	}
	fns, w, err := reg.watch(s.ctx)
	if err != nil {
		return nil, err
	}
	reg.orphanSnapshots(fns)
	// Fetched again as the records say (followWorkingSet).
	os.RemoveAll(s.wsetsDir())
	for _, f := range fns {
		e := s.add(f)
		if !reg.ours(f) {
			s.openCopy(e)
			s.followWorkingSet(e)
			continue
		}
		switch f.State {
		case api.StateReady:
			s.open(e)
			s.resumePublish(e)
		case api.StateCreating, api.StateRecording:
			slog.Info("serve: resuming the creation a previous service began", "function", f.Name, "state", f.State)
			s.startCreate(e)
		}
	}
	s.router = newRouter(s)
	s.wg.Add(4)
	go s.reapIdle()
	go s.followRegistry(w)
	go s.router.run()
	go s.beats.run()
	return s, nil
}

// nodeRE is what a node name may be: a NATS server name and a key of the
// nodes bucket.
var nodeRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// add registers f in memory, with its pool.
func (s *Server) add(f api.Function) *entry {
	e := s.newEntry(f)
	s.reg.mu.Lock()
	s.reg.entries[f.Name] = e
	s.reg.mu.Unlock()
	return e
}

// newEntry is f with an empty pool and no background work.
func (s *Server) newEntry(f api.Function) *entry {
	e := &entry{name: f.Name, f: f, done: make(chan struct{})}
	close(e.done)
	e.pool = &pool{s: s, e: e}
	return e
}

// errConflict and errNotFound map to 409 and 404.
var (
	errConflict = errors.New("conflict")
	errNotFound = errors.New("not found")
)

// Create registers a function and starts making its snapshot and working
// set in the background.
func (s *Server) Create(req api.CreateRequest) (api.Function, error) {
	if err := validate(&req, s.cfg.MinGuestMiB); err != nil {
		return api.Function{}, err
	}
	f := api.Function{
		Name: req.Name, Function: req.Function, Runtime: req.Runtime, MemMiB: req.MemMiB, DataMiB: req.DataMiB,
		State: api.StateCreating, Progress: api.Progress{Step: "queued", Total: 3},
		Node: s.cfg.Node,
	}
	s.reg.mu.Lock()
	if old := s.reg.entries[req.Name]; old != nil {
		s.reg.mu.Unlock()
		if old.deleting {
			return api.Function{}, fmt.Errorf("%w: function %s is being deleted; create it again once DELETE has returned", errConflict, req.Name)
		}
		return api.Function{}, fmt.Errorf("%w: function %s exists; delete it first to create it anew", errConflict, req.Name)
	}
	e := s.newEntry(f)
	s.reg.entries[f.Name] = e
	// Persisted before the 202, under the registry lock, so that a
	// concurrent delete of the name waits for a record to delete; the
	// bucket refuses a name another node registered meanwhile.
	e.mu.Lock()
	err := s.reg.createRecord(e)
	e.mu.Unlock()
	if err != nil {
		delete(s.reg.entries, f.Name)
		s.reg.mu.Unlock()
		return api.Function{}, err
	}
	s.reg.mu.Unlock()
	slog.Info("serve: function registered", "function", f.Name, "runs", f.Function, "memory_mib", f.MemMiB, "data_mib", f.DataMiB)
	s.startCreate(e)
	return e.view(), nil
}

// startCreate runs e's creation in the background from the state it is
// in: creating makes the snapshot, recording the working set.
func (s *Server) startCreate(e *entry) {
	ctx, cancel := context.WithCancel(s.ctx)
	done := make(chan struct{})
	e.mu.Lock()
	e.cancel, e.done = cancel, done
	e.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(done)
		defer cancel()
		err := s.create(ctx, e)
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			// Deleted, or the service stops: a restart resumes it.
			slog.Info("serve: creation stopped", "function", e.name, "err", err)
			return
		}
		slog.Error("serve: creation failed", "function", e.name, "err", err)
		s.reg.update(e, func(f *api.Function) {
			f.State, f.Error = api.StateFailed, err.Error()
		})
	}()
}

// create makes e's snapshot (state creating) and records its working set
// (state recording), then opens it for restores (state ready).
func (s *Server) create(ctx context.Context, e *entry) error {
	path := s.reg.snapshotPath(e.name)
	e.mu.Lock()
	f := e.f
	e.mu.Unlock()
	if f.State == api.StateCreating {
		if err := s.reg.update(e, func(f *api.Function) { f.Progress = api.Progress{Step: "snapshot", Done: 0, Total: 3} }); err != nil {
			return err
		}
		t := time.Now()
		if err := s.cfg.Builder.Snapshot(ctx, f, path); err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
		s.metrics.createSeconds.WithLabelValues("snapshot").Observe(time.Since(t).Seconds())
		if err := s.reg.update(e, func(f *api.Function) {
			f.State, f.Progress = api.StateRecording, api.Progress{Step: "record", Done: 1, Total: 3}
		}); err != nil {
			return err
		}
	}
	dir, err := snapshot.Open(path)
	if err != nil {
		return fmt.Errorf("the snapshot fails validation: %w", err)
	}
	keep := false
	defer func() {
		if !keep {
			dir.Close()
		}
	}()
	t := time.Now()
	if err := s.cfg.Builder.Record(ctx, dir, s.cfg.RecordInputs, false); err != nil {
		return fmt.Errorf("record the working set: %w", err)
	}
	s.metrics.createSeconds.WithLabelValues("record").Observe(time.Since(t).Seconds())
	ws, err := wset.Read(dir.File(policy.WorkingSetFile))
	if err != nil {
		return err
	}
	// The snapshot is open before the state says ready, so that an
	// invocation that sees ready finds it. It is published after, in the
	// background: the record tells the other nodes when they can fetch
	// it (publish.go).
	keep = true
	e.mu.Lock()
	e.snap = s.snaps.open(dir, nil)
	e.mu.Unlock()
	now := time.Now().UTC().Truncate(time.Second)
	if err := s.reg.update(e, func(f *api.Function) {
		f.State, f.Progress, f.Error = api.StateReady, api.Progress{Step: "ready", Done: 3, Total: 3}, ""
		f.SnapshotID, f.WSetPages, f.RecordedAt = dir.Manifest.ID, ws.Pages(), &now
		f.WSetVersion, f.Publication = 1, &api.Publication{}
	}); err != nil {
		return err
	}
	slog.Info("serve: function ready", "function", e.name, "snapshot", dir.Manifest.ID, "wset_pages", ws.Pages())
	s.startPublish(e)
	return nil
}

// resumePublish publishes a ready function of this home whose snapshot the
// store lacks (a service stopped while publishing, or failing to). A
// record from before publications were recorded counts as working set
// version 1 not known to be published: the store says (a publication
// finds what it holds and uploads nothing).
func (s *Server) resumePublish(e *entry) {
	e.mu.Lock()
	opened, old := e.openDir() != nil, e.f.WSetVersion == 0 || e.f.Publication == nil
	e.mu.Unlock()
	if !opened {
		return // failed validation
	}
	if old {
		s.reg.update(e, func(f *api.Function) {
			f.WSetVersion = max(1, f.WSetVersion)
			if f.Publication == nil {
				f.Publication = &api.Publication{}
			}
		})
	}
	s.startPublish(e)
}

// open validates a ready function's snapshot and keeps it open for
// restores; a snapshot that fails marks the function failed, never
// restored.
func (s *Server) open(e *entry) {
	dir, err := snapshot.Open(s.reg.snapshotPath(e.name))
	if err == nil {
		_, err = wset.Read(dir.File(policy.WorkingSetFile))
		if err != nil {
			dir.Close()
		}
	}
	if err != nil {
		slog.Error("serve: the snapshot of a ready function fails validation; the function is marked failed", "function", e.name, "err", err)
		s.reg.update(e, func(f *api.Function) {
			f.State, f.Error = api.StateFailed, fmt.Sprintf("the snapshot fails validation: %v (delete and create the function again)", err)
		})
		return
	}
	e.mu.Lock()
	e.snap = s.snaps.open(dir, nil)
	e.mu.Unlock()
}

// Get returns function name.
func (s *Server) Get(name string) (api.Function, error) {
	e := s.reg.get(name)
	if e == nil {
		return api.Function{}, fmt.Errorf("%w: no function %s (list them with GET /v1/functions)", errNotFound, name)
	}
	f := e.view()
	s.readyOn(&f)
	return f, nil
}

// List returns every function, by name.
func (s *Server) List() []api.Function {
	var out []api.Function
	for _, e := range s.reg.all() {
		f := e.view()
		s.readyOn(&f)
		out = append(out, f)
	}
	sortFunctions(out)
	return out
}

// Delete stops function name's background work and instances and removes
// it with its snapshot, on every node. A create of the name meanwhile
// answers 409.
func (s *Server) Delete(name string) error {
	return s.delete(name, false)
}

// delete removes function name; remote says another node deleted its
// record already, so only what this node holds goes.
func (s *Server) delete(name string, remote bool) error {
	s.reg.mu.Lock()
	e := s.reg.entries[name]
	switch {
	case e == nil:
		s.reg.mu.Unlock()
		return fmt.Errorf("%w: no function %s", errNotFound, name)
	case e.deleting:
		s.reg.mu.Unlock()
		return fmt.Errorf("%w: function %s is being deleted already", errConflict, name)
	}
	e.deleting = true
	s.reg.mu.Unlock()

	e.mu.Lock()
	cancel, done := e.cancel, e.done
	e.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	<-done
	e.stopPublish()
	s.router.leave(name)
	e.pool.close()
	e.pool.wait()
	e.closeDir()
	s.forgetWorkingSets(name)
	var err error
	if remote {
		err = s.reg.removeLocal(name)
	} else {
		err = s.reg.remove(name)
	}
	s.reg.mu.Lock()
	if err != nil && !remote {
		e.deleting = false // still registered: a retry can finish it
	} else {
		delete(s.reg.entries, name)
	}
	s.reg.mu.Unlock()
	if err == nil {
		s.unpublish(e, remote)
		slog.Info("serve: function deleted", "function", name, "by_another_node", remote)
	}
	return err
}

// unpublish deletes deleted function e's snapshot from the snapshot store,
// on its home (the one node that publishes it, and it has stopped: an
// upload cannot put objects back after this) and on the node that took
// the delete if that is another (the home may be down; then this is the
// only chance). The store's delete is idempotent, so the two do not
// conflict. A failure leaves the objects, logged, and not the function.
func (s *Server) unpublish(e *entry, remote bool) {
	e.mu.Lock()
	f := e.f
	e.mu.Unlock()
	if f.SnapshotID == "" || (remote && !s.reg.ours(f)) {
		return
	}
	// A sick store holds the delete up no longer than this.
	ctx, cancel := context.WithTimeout(s.ctx, 2*snapstore.CallTimeout)
	defer cancel()
	if err := s.store.Delete(ctx, f.SnapshotID); err != nil {
		slog.Warn("serve: the deleted function's snapshot could not be deleted from the snapshot store; its objects stay there", "function", f.Name, "snapshot", f.SnapshotID, "bucket", s.store.Bucket(), "err", err)
	}
}

// Drain refuses new invocations (503) and lets those in flight finish;
// queued ones are refused too. Call it on SIGTERM before shutting the HTTP
// servers down, and Close after them.
func (s *Server) Drain() {
	s.mu.Lock()
	if !s.draining {
		slog.Info("serve: draining: new invocations are refused, those in flight finish; publications stop")
	}
	s.draining = true
	s.notify()
	s.mu.Unlock()
	// A node that goes away publishes nothing more: an upload under way
	// stops cleanly and the next service on this home publishes again.
	for _, e := range s.reg.all() {
		e.mu.Lock()
		if p := e.publishing; p != nil {
			p.cancel()
		}
		e.mu.Unlock()
	}
}

// Close ends the background work and every instance. Drain first to let
// in-flight invocations finish.
func (s *Server) Close() error {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	s.cancel()
	for _, e := range s.reg.all() {
		e.pool.close()
	}
	// Cancelled, the invocations in flight end at once and stop their
	// instances; wait for that, so no VMM outlives the service.
	for _, e := range s.reg.all() {
		e.pool.wait()
	}
	s.wg.Wait()
	// An instance handed to end meanwhile may still be stopping its VMM.
	s.instances.Wait()
	for _, e := range s.reg.all() {
		e.closeDir()
	}
	// No VMM is left: every mount goes.
	err := errors.Join(s.vmms.close(), s.remote.Close())
	if s.ownBus {
		err = errors.Join(err, s.bus.Close())
	}
	return err
}
