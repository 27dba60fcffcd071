package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/snapbpf/snapbpf/api"
	"github.com/snapbpf/snapbpf/internal/atomicfile"
	"github.com/snapbpf/snapbpf/internal/snapshot"
)

// registry is the set of registered functions, each persisted as one JSON
// file written atomically (functions/NAME.json) beside its snapshot
// (snapshots/NAME): a service killed at any point leaves every function
// it acknowledged, in its last state.
type registry struct {
	home string

	mu      sync.Mutex
	entries map[string]*entry
}

// entry is one function: its persisted record and what the service holds
// for it while it runs.
type entry struct {
	name string

	mu sync.Mutex // guards f, dir and misses
	f  api.Function
	// dir is the opened, validated snapshot of a ready function.
	dir *snapshot.Dir
	// misses are the recent cold restores' outcomes (rerecord.go).
	misses missWindow
	// rerecording is set while a re-recording runs.
	rerecording bool

	// deleting is set (under registry.mu) once a delete has begun: the
	// name then answers 409 until the delete ends.
	deleting bool
	// cancel ends the background work (creation, re-recording); done is
	// closed when it has ended.
	cancel context.CancelFunc
	done   chan struct{}

	pool *pool
}

func newRegistry(home string) (*registry, error) {
	r := &registry{home: home, entries: map[string]*entry{}}
	for _, d := range []string{r.functionsDir(), r.snapshotsDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("serve: registry under %s: %w", home, err)
		}
	}
	return r, nil
}

func (r *registry) functionsDir() string { return filepath.Join(r.home, "functions") }
func (r *registry) snapshotsDir() string { return filepath.Join(r.home, "snapshots") }

// snapshotPath is where function name's snapshot lives.
func (r *registry) snapshotPath(name string) string { return filepath.Join(r.snapshotsDir(), name) }

func (r *registry) recordPath(name string) string {
	return filepath.Join(r.functionsDir(), name+".json")
}

// load reads every persisted function.
func (r *registry) load() ([]api.Function, error) {
	des, err := os.ReadDir(r.functionsDir())
	if err != nil {
		return nil, fmt.Errorf("serve: read the registry: %w", err)
	}
	var fns []api.Function
	for _, de := range des {
		name, ok := strings.CutSuffix(de.Name(), ".json")
		if !ok || !nameRE.MatchString(name) {
			continue // atomicfile's temporaries, or foreign files
		}
		b, err := os.ReadFile(filepath.Join(r.functionsDir(), de.Name()))
		if err != nil {
			return nil, fmt.Errorf("serve: registry: %w", err)
		}
		var f api.Function
		if err := json.Unmarshal(b, &f); err != nil || f.Name != name {
			slog.Error("serve: registry record unreadable; the function is skipped (delete the file to forget it)", "path", filepath.Join(r.functionsDir(), de.Name()), "err", err)
			continue
		}
		fns = append(fns, f)
	}
	return fns, nil
}

// save persists e's record; call with e.mu held.
func (r *registry) save(e *entry) error {
	f := e.f
	f.Instances = api.Instances{}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(r.recordPath(e.name), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("serve: persist function %s: %w", e.name, err)
	}
	return nil
}

// remove forgets function name on disk: its record first, so a crash
// halfway leaves no record of a half-removed snapshot, then the snapshot.
func (r *registry) remove(name string) error {
	err := os.Remove(r.recordPath(name))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("serve: delete function %s: %w", name, err)
	}
	if err := atomicfile.SyncDir(r.functionsDir()); err != nil {
		return err
	}
	if err := os.RemoveAll(r.snapshotPath(name)); err != nil {
		return fmt.Errorf("serve: delete the snapshot of %s: %w", name, err)
	}
	return nil
}

// orphanSnapshots removes snapshot directories no record names (a crash
// between the two steps of remove, or a creation killed before its first
// record... which cannot happen: the record comes first).
func (r *registry) orphanSnapshots() {
	des, err := os.ReadDir(r.snapshotsDir())
	if err != nil {
		return
	}
	for _, de := range des {
		name := de.Name()
		if _, err := os.Stat(r.recordPath(name)); errors.Is(err, fs.ErrNotExist) && nameRE.MatchString(name) {
			slog.Info("serve: removing the snapshot of a deleted function", "path", r.snapshotPath(name))
			os.RemoveAll(r.snapshotPath(name))
		}
	}
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
