package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/snapbpf/snapbpf/api"
	"github.com/snapbpf/snapbpf/internal/bus"
)

// FunctionsBucket is the JetStream key-value bucket of the function
// registry, shared by every node: key NAME, value the api.Function record
// of the node that makes its snapshot (api.Function.Node), in its last
// state. A node keeps its own local state (the snapshot here, open and
// ready) in memory and on its disk, and says which functions it can serve
// in its heartbeat (NodesBucket).
const FunctionsBucket = "snapbpf-functions"

// kvTimeout bounds one registry call to JetStream.
const kvTimeout = 10 * time.Second

// registry is the set of registered functions: every node's, from the
// shared bucket, each with what this node holds for it. A record is
// written only by its function's home node (its creation and
// re-recordings) and deleted by whichever node is asked to.
type registry struct {
	home string
	node string
	kv   jetstream.KeyValue

	mu      sync.Mutex
	entries map[string]*entry
}

// entry is one function: its record and what the service holds for it
// while it runs.
type entry struct {
	name string

	mu sync.Mutex // guards f, snap and misses
	f  api.Function
	// snap is the opened, validated snapshot of a function ready here,
	// which new cold starts restore from (with the remote lease it was
	// opened through, if any); instances hold the one they were
	// restored from (snapref.go).
	snap *snapRef
	// fetchable says another node's function is published in the
	// snapshot store, so this node can serve it without a local copy
	// (the first cold start fetches it: openRemote).
	fetchable bool
	// opening serializes openRemote.
	opening sync.Mutex
	// misses are the recent cold restores' outcomes (rerecord.go).
	misses missWindow
	// rerecording is set while a re-recording runs.
	rerecording bool
	// rev is the bucket revision of the record as this node last wrote
	// or received it (0: listed at start): a delete of the name older
	// than it deleted an earlier function of the name.
	rev uint64
	// publishing is the publication of this home's snapshot under way
	// (publish.go).
	publishing *publisher
	// wsPath, if set, is the working set this node's cold starts of
	// another node's function use instead of their snapshot's own: the
	// home's version wsVersion, fetched from the store after a
	// re-recording (followWorkingSet, which wsMu serializes).
	wsPath    string
	wsVersion int
	wsMu      sync.Mutex

	// deleting is set (under registry.mu) once a delete has begun: the
	// name then answers 409 until the delete ends.
	deleting bool
	// cancel ends the background work (creation, re-recording); done is
	// closed when it has ended.
	cancel context.CancelFunc
	done   chan struct{}

	pool *pool
}

func newRegistry(ctx context.Context, home, node string, b *bus.Bus) (*registry, error) {
	r := &registry{home: home, node: node, entries: map[string]*entry{}}
	if err := os.MkdirAll(r.snapshotsDir(), 0o700); err != nil {
		return nil, fmt.Errorf("serve: registry under %s: %w", home, err)
	}
	kv, err := b.KeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      FunctionsBucket,
		Description: "snapbpf function registry: NAME -> the function's record",
		History:     1,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("serve: the function registry: %w", err)
	}
	r.kv = kv
	return r, nil
}

func (r *registry) snapshotsDir() string { return filepath.Join(r.home, "snapshots") }

// snapshotPath is where function name's snapshot lives.
func (r *registry) snapshotPath(name string) string { return filepath.Join(r.snapshotsDir(), name) }

// ours says whether this node is f's home: it writes f's record.
func (r *registry) ours(f api.Function) bool { return f.Node == r.node }

// watch returns every record in the bucket and a watcher of the changes
// after them (the caller stops it).
func (r *registry) watch(ctx context.Context) ([]api.Function, jetstream.KeyWatcher, error) {
	w, err := r.kv.WatchAll(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("serve: watch the function registry: %w", err)
	}
	var fns []api.Function
	timeout := time.After(kvTimeout)
	for {
		select {
		case u := <-w.Updates():
			if u == nil { // the initial values are all in
				return fns, w, nil
			}
			if f, ok := decodeRecord(u); ok {
				fns = append(fns, f)
			}
		case <-timeout:
			w.Stop()
			return nil, nil, fmt.Errorf("serve: the function registry (bucket %s) did not list within %v", FunctionsBucket, kvTimeout)
		}
	}
}

// decodeRecord reads a put of the registry bucket.
func decodeRecord(u jetstream.KeyValueEntry) (api.Function, bool) {
	var f api.Function
	if u.Operation() != jetstream.KeyValuePut {
		return f, false
	}
	if err := json.Unmarshal(u.Value(), &f); err != nil || f.Name != u.Key() {
		slog.Error("serve: registry record unreadable; the function is skipped", "bucket", FunctionsBucket, "key", u.Key(), "err", err)
		return f, false
	}
	return f, true
}

func (r *registry) marshal(e *entry) ([]byte, error) {
	f := e.f
	f.Instances = api.Instances{}
	f.ReadyOn = nil
	return json.Marshal(f)
}

// createRecord persists a new record of e, unless the name is taken on
// any node; call with e.mu held.
func (r *registry) createRecord(e *entry) error {
	b, err := r.marshal(e)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), kvTimeout)
	defer cancel()
	rev, err := r.kv.Create(ctx, e.name, b)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("%w: function %s exists (registered on another node); delete it first to create it anew", errConflict, e.name)
		}
		return fmt.Errorf("serve: register function %s: %w", e.name, err)
	}
	e.rev = rev
	return nil
}

// save persists e's record if this node is its home; call with e.mu held.
func (r *registry) save(e *entry) error {
	if !r.ours(e.f) {
		return nil
	}
	b, err := r.marshal(e)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), kvTimeout)
	defer cancel()
	rev, err := r.kv.Put(ctx, e.name, b)
	if err != nil {
		return fmt.Errorf("serve: persist function %s: %w", e.name, err)
	}
	e.rev = rev
	return nil
}

// remove forgets function name: its record first (every node then drops
// it), so a crash halfway leaves no record of a half-removed snapshot,
// then the snapshot here.
func (r *registry) remove(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), kvTimeout)
	defer cancel()
	if err := r.kv.Delete(ctx, name); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("serve: delete function %s: %w", name, err)
	}
	return r.removeLocal(name)
}

// removeLocal removes function name's snapshot on this node.
func (r *registry) removeLocal(name string) error {
	if err := os.RemoveAll(r.snapshotPath(name)); err != nil {
		return fmt.Errorf("serve: delete the snapshot of %s: %w", name, err)
	}
	return nil
}

// orphanSnapshots removes snapshot directories no record names (a crash
// between the two steps of remove, or a delete while this node was down).
func (r *registry) orphanSnapshots(known []api.Function) {
	names := map[string]bool{}
	for _, f := range known {
		names[f.Name] = true
	}
	des, err := os.ReadDir(r.snapshotsDir())
	if err != nil {
		return
	}
	for _, de := range des {
		name := de.Name()
		if !names[name] && nameRE.MatchString(name) {
			slog.Info("serve: removing the snapshot of a deleted function", "path", r.snapshotPath(name))
			os.RemoveAll(r.snapshotPath(name))
		}
	}
}

// migrateFiles moves the registry a service before the bus kept in files
// (functions/NAME.json) into the bucket, as functions of this node, then
// renames the directory (functions.migrated) so it is done once. A name
// the bucket has already is left to the bucket.
func (r *registry) migrateFiles() error {
	dir := filepath.Join(r.home, "functions")
	des, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("serve: read the old registry %s: %w", dir, err)
	}
	for _, de := range des {
		name, ok := strings.CutSuffix(de.Name(), ".json")
		if !ok || !nameRE.MatchString(name) {
			continue // atomicfile's temporaries, or foreign files
		}
		path := filepath.Join(dir, de.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("serve: old registry: %w", err)
		}
		var f api.Function
		if err := json.Unmarshal(b, &f); err != nil || f.Name != name {
			slog.Error("serve: old registry record unreadable; not migrated", "path", path, "err", err)
			continue
		}
		f.Node = r.node
		e := &entry{name: name, f: f}
		if err := r.createRecord(e); err != nil {
			if errors.Is(err, errConflict) {
				slog.Warn("serve: old registry record not migrated: the registry has the name already", "path", path)
				continue
			}
			return err
		}
		slog.Info("serve: function migrated from the old registry files", "function", name, "state", f.State)
	}
	if err := os.Rename(dir, dir+".migrated"); err != nil {
		return fmt.Errorf("serve: old registry migrated, but %s could not be renamed: %w", dir, err)
	}
	return nil
}

// get returns the entry of name, or nil.
func (r *registry) get(name string) *entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.entries[name]
}

// all returns the entries, in no order.
func (r *registry) all() []*entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*entry, 0, len(r.entries))
	for _, e := range r.entries {
		out = append(out, e)
	}
	return out
}

// view is e's record as the API shows it.
func (e *entry) view() api.Function {
	e.mu.Lock()
	f := e.f
	e.mu.Unlock()
	f.Rerecords = append([]api.Rerecord(nil), f.Rerecords...)
	if e.pool != nil {
		f.Instances = e.pool.counts()
	}
	return f
}

// update changes e's record under its lock and persists it.
func (r *registry) update(e *entry, change func(f *api.Function)) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	change(&e.f)
	return r.save(e)
}
