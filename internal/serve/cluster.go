package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/snapbpf/snapbpf/api"
	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/snapstore"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// followRegistry applies the other nodes' changes to the registry until
// the service closes: a function registered elsewhere appears here, its
// home's progress shows here, and a function deleted elsewhere goes, with
// its instances and any snapshot of it here.
func (s *Server) followRegistry(w jetstream.KeyWatcher) {
	defer s.wg.Done()
	defer w.Stop()
	for {
		var u jetstream.KeyValueEntry
		select {
		case <-s.ctx.Done():
			return
		case u = <-w.Updates():
		}
		if u == nil {
			continue
		}
		name := u.Key()
		switch u.Operation() {
		case jetstream.KeyValueDelete, jetstream.KeyValuePurge:
			e := s.reg.get(name)
			if e == nil {
				continue
			}
			s.reg.mu.Lock()
			deleting := e.deleting
			s.reg.mu.Unlock()
			e.mu.Lock()
			stale := u.Revision() < e.rev
			e.mu.Unlock()
			if deleting || stale {
				// This node's own delete, or the delete of the name's
				// function before this one (its own delete's event
				// coming after the name was registered again).
				continue
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				if err := s.delete(name, true); err != nil {
					slog.Warn("serve: a function deleted on another node could not be removed here", "function", name, "err", err)
				}
			}()
		case jetstream.KeyValuePut:
			f, ok := decodeRecord(u)
			if !ok || s.reg.ours(f) {
				continue // this node wrote it
			}
			if e := s.reg.get(name); e != nil {
				e.mu.Lock()
				if e.f.Node != f.Node {
					// Deleted and registered again elsewhere while this
					// node missed the delete: the old one goes first.
					e.mu.Unlock()
					if err := s.delete(name, true); err != nil {
						slog.Warn("serve: a function registered anew on another node: the old one could not be removed here", "function", name, "err", err)
						continue
					}
					s.add(f)
					continue
				}
				e.f, e.rev = f, u.Revision()
				e.mu.Unlock()
				s.openCopy(e)
				s.followWorkingSet(e)
				continue
			}
			e := s.add(f)
			e.mu.Lock()
			e.rev = u.Revision()
			e.mu.Unlock()
			s.openCopy(e)
			s.followWorkingSet(e)
			slog.Debug("serve: function registered on another node", "function", name, "node", f.Node, "state", f.State)
		}
	}
}

// readyOn adds to f the nodes that serve it now.
func (s *Server) readyOn(f *api.Function) {
	f.ReadyOn = s.beats.readyOn(f.Name)
}

// openCopy opens the snapshot of another node's function if this node
// holds a copy of it (the same snapshot ID), so this node serves it too;
// a copy of another snapshot is stale and not served.
func (s *Server) openCopy(e *entry) {
	e.mu.Lock()
	f, cur := e.f, e.snap
	e.mu.Unlock()
	if s.reg.ours(f) || f.State != api.StateReady {
		return
	}
	path := s.reg.snapshotPath(e.name)
	if _, err := os.Stat(path); err != nil {
		if !s.cfg.NoRemoteFetch {
			s.checkPublished(e, f)
		}
		return
	}
	if cur != nil && (cur.lease != nil || cur.dir.Manifest.ID == f.SnapshotID) {
		// Served already: this copy, or the snapshot store's (which
		// moves to the store's own local copy once complete).
		return
	}
	dir, err := snapshot.Open(path)
	if err == nil {
		_, err = wset.Read(dir.File(policy.WorkingSetFile))
		if err != nil {
			dir.Close()
		}
	}
	if err != nil || dir.Manifest.ID != f.SnapshotID {
		if err == nil {
			dir.Close()
		}
		slog.Info("serve: a local copy of another node's snapshot is not the registered one; not served", "function", e.name, "path", path, "err", err)
		return
	}
	if !e.replaceSnap(cur, s.snaps.open(dir, nil)) {
		return
	}
	slog.Info("serve: serving a local copy of another node's snapshot", "function", e.name, "node", f.Node, "snapshot", f.SnapshotID)
}

// replaceSnap makes next e's snapshot for new cold starts if old still is,
// and gives up the entry's ownership of old (its instances keep it until
// they end); otherwise (e moved on meanwhile) it gives up next. It reports
// whether next replaced old.
func (e *entry) replaceSnap(old, next *snapRef) bool {
	e.mu.Lock()
	ok := e.snap == old
	if ok {
		e.snap = next
	}
	e.mu.Unlock()
	if !ok {
		next.disown()
		return false
	}
	if old != nil {
		old.disown()
	}
	return true
}

// checkPublished marks another node's ready function f fetchable if the
// snapshot store holds its snapshot, so this node serves it too. A record
// whose publication has not ended is not fetchable yet, whatever the
// store holds: its manifest, written last, may be there already while the
// record lags behind, never the other way round.
func (s *Server) checkPublished(e *entry, f api.Function) {
	if f.Publication != nil && f.Publication.WSetVersion == 0 {
		e.mu.Lock()
		e.fetchable = false
		e.mu.Unlock()
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, snapstore.CallTimeout)
	defer cancel()
	m, err := s.store.Manifest(ctx, f.SnapshotID)
	ok := err == nil && m.ID == f.SnapshotID
	if err != nil && !errors.Is(err, snapstore.ErrNotPublished) {
		slog.Warn("serve: the snapshot store could not be asked for another node's snapshot", "function", e.name, "snapshot", f.SnapshotID, "err", err)
	}
	e.mu.Lock()
	e.fetchable = ok && e.f.SnapshotID == f.SnapshotID
	e.mu.Unlock()
	if ok {
		slog.Info("serve: another node's function is fetchable from the snapshot store", "function", e.name, "node", f.Node, "snapshot", f.SnapshotID)
	}
}

// openRemote opens the snapshot of fetchable function e from the snapshot
// store (remotesnap: a lazymem mount or, with --remote-fetch full, a whole
// local copy first) and keeps it, with its lease, as e's snapshot. A
// mount is replaced by the local copy once that is complete (switchLocal).
func (s *Server) openRemote(ctx context.Context, e *entry) (*snapRef, error) {
	e.opening.Lock()
	defer e.opening.Unlock()
	e.mu.Lock()
	cur, id := e.snap, e.f.SnapshotID
	e.mu.Unlock()
	if cur != nil {
		return cur, nil // opened meanwhile
	}
	t := time.Now()
	ref, err := s.openLeased(ctx, id)
	if err != nil {
		return nil, err
	}
	if !e.replaceSnap(nil, ref) {
		// A copy in Home/snapshots was opened meanwhile (openCopy).
		e.mu.Lock()
		cur = e.snap
		e.mu.Unlock()
		if cur == nil {
			return nil, fmt.Errorf("snapshot %s from the store: the function was deleted meanwhile", id)
		}
		return cur, nil
	}
	slog.Info("serve: serving another node's snapshot from the snapshot store", "function", e.name, "snapshot", id, "lazy", ref.lease.Lazy, "dir", ref.dir.Path, "seconds", time.Since(t).Seconds())
	if ref.lease.Lazy {
		s.wg.Add(1)
		go s.switchLocal(e, ref)
	}
	return ref, nil
}

// openLeased gets snapshot id from the remote cache and opens it, checked.
func (s *Server) openLeased(ctx context.Context, id string) (*snapRef, error) {
	lease, err := s.remote.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	dir, err := snapshot.Open(lease.Dir)
	if err == nil {
		if _, err = wset.Read(dir.File(policy.WorkingSetFile)); err != nil {
			dir.Close()
		}
	}
	if err == nil && dir.Manifest.ID != id {
		dir.Close()
		err = fmt.Errorf("the store's snapshot is %s, not %s", dir.Manifest.ID, id)
	}
	if err != nil {
		lease.Release()
		return nil, fmt.Errorf("snapshot %s from the store: %w", id, err)
	}
	return s.snaps.open(dir, lease), nil
}

// switchLocal waits for the local copy of mounted snapshot ref to replace
// its mount and then moves e's later cold starts to the copy, if e still
// uses ref. The instances restored from the mount keep it (their pages
// come from it) until they end; the last one unmounts it.
func (s *Server) switchLocal(e *entry, ref *snapRef) {
	defer s.wg.Done()
	select {
	case <-ref.lease.Replaced():
	case <-ref.gone: // deleted or closed first; the mount goes as it did
		return
	case <-s.ctx.Done():
		return
	}
	e.opening.Lock()
	defer e.opening.Unlock()
	e.mu.Lock()
	same := e.snap == ref
	e.mu.Unlock()
	if !same {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, snapstore.CallTimeout)
	defer cancel()
	next, err := s.openLeased(ctx, ref.dir.Manifest.ID)
	if err == nil && next.lease.Lazy {
		next.disown()
		err = errors.New("the store's cache still serves it through the mount")
	}
	if err != nil {
		slog.Warn("serve: the local copy of a snapshot served through a mount could not be opened; the mount keeps serving", "function", e.name, "snapshot", ref.dir.Manifest.ID, "err", err)
		return
	}
	if e.replaceSnap(ref, next) {
		slog.Info("serve: cold starts use the completed local copy of a snapshot from the store", "function", e.name, "snapshot", next.dir.Manifest.ID, "dir", next.dir.Path, "mount", ref.dir.Path)
	}
}

// closeDir gives up e's snapshot: the instances restored from it keep it
// until they end, and a lazymem mount goes with its last lease.
func (e *entry) closeDir() {
	e.mu.Lock()
	ref := e.snap
	e.snap = nil
	e.mu.Unlock()
	if ref != nil {
		ref.disown()
	}
}
