// Package remotesnap gives a node the snapshots other nodes published to
// the snapshot store: a restore asks for a snapshot by ID and gets a
// directory to restore from, local if the node has the snapshot, else
// (Lazy) a lazymem mount whose memory arrives as the guest needs it while
// the rest streams into a local copy, or (Full) a local copy fetched whole
// first.
//
// Under its directory a Cache keeps
//
//	DIR/snapshots/ID   complete local copies, used directly once there
//	DIR/mnt/ID         lazymem mounts while their copies fill in
//
// A mount goes once its copy is complete and its last lease is released;
// a node that starts again unmounts what a crash left (lazymem.Clean) and
// the next copy into DIR/snapshots removes unfinished ones.
package remotesnap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/snapbpf/snapbpf/internal/lazymem"
	"github.com/snapbpf/snapbpf/internal/logging"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/snapstore"
)

// Mode says how a snapshot that is not local is made available.
type Mode string

const (
	// Lazy serves the snapshot through a lazymem mount at once.
	Lazy Mode = "lazy"
	// Full fetches the whole snapshot before the first restore.
	Full Mode = "full"
)

// ParseMode reads a --remote-fetch value.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case Lazy, Full:
		return Mode(s), nil
	}
	return "", fmt.Errorf("remote fetch mode %q: want %q or %q", s, Lazy, Full)
}

// Store is what a Cache needs of the snapshot store; *snapstore.Store has it.
type Store interface {
	Manifest(ctx context.Context, id string) (*snapstore.Manifest, error)
	Reader(m *snapstore.Manifest) *snapstore.Reader
	Fetch(ctx context.Context, id, out string) (*snapshot.Dir, snapstore.FetchStats, error)
}

// Cache is a node's view of the store's snapshots. Safe for concurrent use.
type Cache struct {
	dir   string
	store Store
	mode  Mode
	delay time.Duration
	log   *slog.Logger

	mu      sync.Mutex
	mounts  map[string]*mounted // by ID, while they serve new leases
	live    map[*mounted]bool   // every mount not yet unmounted
	fetches map[string]*fetching
	closed  bool
}

// mounted is a lazymem mount and its leases.
type mounted struct {
	m    *lazymem.Mount
	refs int
	// replaced is closed once the committed local copy has replaced the
	// mount: Get hands out the copy from then on.
	replaced chan struct{}
}

// fetching is a full fetch under way, which other callers wait for.
type fetching struct {
	done chan struct{}
	err  error
}

// Options tune New.
type Options struct {
	// Mode is Lazy (the default) or Full.
	Mode Mode
	// BackgroundDelay is lazymem.Options.BackgroundDelay of the mounts.
	BackgroundDelay time.Duration
	// Log receives diagnostics; nil discards them.
	Log *slog.Logger
}

// New returns a cache under dir, first unmounting the lazymem mounts a
// killed process left there.
func New(dir string, store Store, o Options) (*Cache, error) {
	mode := o.Mode
	if mode == "" {
		mode = Lazy
	}
	if _, err := ParseMode(string(mode)); err != nil {
		return nil, err
	}
	log := logging.Or(o.Log)
	for _, d := range []string{dir, filepath.Join(dir, "snapshots"), filepath.Join(dir, "mnt")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("remote snapshots: %w", err)
		}
	}
	gone, err := lazymem.Clean(dir)
	for _, p := range gone {
		log.Warn("remote snapshots: removed a mount a killed process left", "mount", p)
	}
	if err != nil {
		return nil, err
	}
	return &Cache{dir: dir, store: store, mode: mode, delay: o.BackgroundDelay, log: log, mounts: map[string]*mounted{}, live: map[*mounted]bool{}, fetches: map[string]*fetching{}}, nil
}

// Lease is a snapshot directory to restore from. Release it once no VMM
// maps its memory file any more.
type Lease struct {
	// Dir is the snapshot directory.
	Dir string
	// Lazy says Dir is a lazymem mount, not a local copy.
	Lazy     bool
	release  func()
	once     sync.Once
	replaced <-chan struct{}
}

// closedChan is the Replaced of a lease of the local copy.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Replaced is closed once the snapshot's complete local copy is what Get
// hands out: at once for a lease of the local copy; for a lease of a
// mount, when the mount's copy has been committed (never, if the copy
// fails: the mount keeps serving). A lazy lease stays valid after it, its
// mount mounted until it and the mount's other leases are released: a
// holder switches later restores to a new Get and releases this lease
// once no VMM maps the mount's memory file any more.
func (l *Lease) Replaced() <-chan struct{} {
	if l.replaced == nil {
		return closedChan
	}
	return l.replaced
}

// Release ends the lease.
func (l *Lease) Release() {
	l.once.Do(func() {
		if l.release != nil {
			l.release()
		}
	})
}

// localPath is where the complete copy of id lives.
func (c *Cache) localPath(id string) string { return filepath.Join(c.dir, "snapshots", id) }

// Local reports whether the node has a complete copy of id.
func (c *Cache) Local(id string) bool {
	_, err := os.Lstat(filepath.Join(c.localPath(id), snapshot.ManifestName))
	return err == nil
}

// Get returns a directory of snapshot id to restore from.
func (c *Cache) Get(ctx context.Context, id string) (*Lease, error) {
	if !isID(id) {
		return nil, fmt.Errorf("remote snapshots: %q is not a snapshot ID (32 hex digits)", id)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, errors.New("remote snapshots: cache closed")
	}
	// The local copy first: once committed it replaces the mount, which
	// only serves the leases it has until they end.
	if c.Local(id) {
		c.mu.Unlock()
		return &Lease{Dir: c.localPath(id)}, nil
	}
	if mt := c.mounts[id]; mt != nil {
		mt.refs++
		c.mu.Unlock()
		return c.lease(id, mt), nil
	}
	if c.mode == Full {
		return c.full(ctx, id) // unlocks
	}
	defer c.mu.Unlock()
	// Mounting under the lock keeps a second caller from mounting too;
	// it costs the manifest, the state and the working set (KiBs).
	man, err := c.store.Manifest(ctx, id)
	if err != nil {
		return nil, err
	}
	mp := filepath.Join(c.dir, "mnt", id)
	if err := os.Mkdir(mp, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("remote snapshots: %w", err)
	}
	m, err := lazymem.New(ctx, mp, c.localPath(id), c.store.Reader(man), lazymem.Options{BackgroundDelay: c.delay, Log: c.log})
	if err != nil {
		return nil, err
	}
	mt := &mounted{m: m, refs: 1, replaced: make(chan struct{})}
	c.mounts[id] = mt
	c.live[mt] = true
	go c.retire(id, mt)
	return c.lease(id, mt), nil
}

// lease is a new lease of mt, counted in mt.refs already.
func (c *Cache) lease(id string, mt *mounted) *Lease {
	return &Lease{Dir: mt.m.Path(), Lazy: true, release: func() { c.release(id, mt) }, replaced: mt.replaced}
}

// full fetches id whole, once however many ask; c.mu is held on entry.
func (c *Cache) full(ctx context.Context, id string) (*Lease, error) {
	f := c.fetches[id]
	if f == nil {
		f = &fetching{done: make(chan struct{})}
		c.fetches[id] = f
		go func() {
			d, _, err := c.store.Fetch(context.WithoutCancel(ctx), id, c.localPath(id))
			if err == nil {
				d.Close()
			}
			c.mu.Lock()
			f.err = err
			delete(c.fetches, id)
			c.mu.Unlock()
			close(f.done)
		}()
	}
	c.mu.Unlock()
	select {
	case <-f.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if f.err != nil {
		return nil, f.err
	}
	return &Lease{Dir: c.localPath(id)}, nil
}

// retire waits for mt's copy and, once it is committed, stops handing out
// the mount; the mount goes with its last lease.
func (c *Cache) retire(id string, mt *mounted) {
	<-mt.m.Done()
	if err := mt.m.Err(); err != nil {
		c.log.Warn("remote snapshots: local copy not completed; the mount keeps serving", "snapshot", id, "err", err)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mounts[id] == mt {
		delete(c.mounts, id)
	}
	// After the delete: a holder woken by it gets the local copy from Get.
	close(mt.replaced)
	if mt.refs == 0 {
		c.unmount(mt)
	}
}

// release ends one lease of mt, unmounting it if it was the last and the
// local copy has replaced it.
func (c *Cache) release(id string, mt *mounted) {
	c.mu.Lock()
	defer c.mu.Unlock()
	mt.refs--
	if mt.refs == 0 && c.mounts[id] != mt {
		c.unmount(mt)
	}
}

func (c *Cache) unmount(mt *mounted) {
	if !c.live[mt] {
		return
	}
	delete(c.live, mt)
	if err := mt.m.Close(); err != nil {
		c.log.Warn("remote snapshots: unmount", "mount", mt.m.Path(), "err", err)
	}
	os.Remove(mt.m.Path())
}

// Close unmounts every mount. Leases must have been released (their VMMs
// ended); an unfinished local copy is removed.
func (c *Cache) Close() error {
	c.mu.Lock()
	c.closed = true
	live := c.live
	c.mounts, c.live = map[string]*mounted{}, map[*mounted]bool{}
	c.mu.Unlock()
	var errs []error
	for mt := range live {
		errs = append(errs, mt.m.Close())
		os.Remove(mt.m.Path())
	}
	return errors.Join(errs...)
}

// isID reports whether s looks like a snapshot ID: it names directories.
func isID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
