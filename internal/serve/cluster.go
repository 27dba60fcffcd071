package serve

import (
	"log/slog"
	"os"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/snapbpf/snapbpf/api"
	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/snapshot"
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
			if deleting {
				continue // this node's own delete
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
				e.f = f
				e.mu.Unlock()
				s.openCopy(e)
				continue
			}
			s.openCopy(s.add(f))
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
	f, open := e.f, e.dir != nil
	e.mu.Unlock()
	if s.reg.ours(f) || f.State != api.StateReady {
		return
	}
	path := s.reg.snapshotPath(e.name)
	if _, err := os.Stat(path); err != nil {
		return
	}
	if open {
		e.mu.Lock()
		same := e.dir.Manifest.ID == f.SnapshotID
		e.mu.Unlock()
		if same {
			return
		}
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
	e.mu.Lock()
	old := e.dir
	e.dir = dir
	e.mu.Unlock()
	if old != nil {
		old.Close()
	}
	slog.Info("serve: serving a local copy of another node's snapshot", "function", e.name, "node", f.Node, "snapshot", f.SnapshotID)
}
