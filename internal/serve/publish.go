package serve

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/snapbpf/snapbpf/api"
	"github.com/snapbpf/snapbpf/internal/atomicfile"
	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/snapstore"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// A function is ready on its home as soon as its working set is recorded;
// its snapshot is published to the snapshot store after that, in the
// background, and its record's Publication tells the other nodes when the
// store has it (they forward to the nodes that serve it until then). A
// re-recording publishes the new working set the same way, and the nodes
// that serve the function from the store fetch it for their later cold
// starts (followWorkingSet).

// publishRetryMax bounds the wait between attempts of a failing
// publication.
const publishRetryMax = 5 * time.Minute

// publisher is a publication of one function's snapshot under way.
type publisher struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// startPublish publishes e's snapshot in the background unless the store
// holds its current working set version, one of e's publications runs, or
// the service drains.
func (s *Server) startPublish(e *entry) {
	s.mu.Lock()
	draining := s.draining
	s.mu.Unlock()
	s.reg.mu.Lock()
	defer s.reg.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if draining || e.deleting || e.publishing != nil || e.openDir() == nil || e.f.State != api.StateReady || !s.reg.ours(e.f) || e.f.Published() {
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	p := &publisher{cancel: cancel, done: make(chan struct{})}
	e.publishing = p
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(p.done)
		defer cancel()
		s.publishLoop(ctx, e)
	}()
}

// openDir is e's open snapshot, nil if none; call with e.mu held.
func (e *entry) openDir() *snapshot.Dir {
	if e.snap == nil {
		return nil
	}
	return e.snap.dir
}

// workingSet is the working set file e's cold starts use instead of their
// snapshot's own, "" for the snapshot's.
func (e *entry) workingSet() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.wsPath
}

// stopPublish cancels e's publication, if one runs, and waits for it.
func (e *entry) stopPublish() {
	e.mu.Lock()
	p := e.publishing
	e.mu.Unlock()
	if p != nil {
		p.cancel()
		<-p.done
	}
}

// publishLoop publishes e's current working set version until the store
// and the record have it, the next version too if a re-recording bumps it
// meanwhile; a failed attempt is retried after a wait that doubles up to
// publishRetryMax, and shows in the record. It ends with ctx (a delete,
// a drain, Close): the upload stops within a chunk and leaves the store as
// it was, and the next service on this home publishes again.
func (s *Server) publishLoop(ctx context.Context, e *entry) {
	delay := s.cfg.PublishRetry
	attempts := 0
	var last error
	for {
		e.mu.Lock()
		f, dir := e.f, e.openDir()
		// Decided under e.mu, where startPublish looks: a version
		// bumped after this starts a publication of its own.
		if ctx.Err() != nil || (f.Published() && last == nil) {
			e.publishing = nil
			e.mu.Unlock()
			if ctx.Err() != nil && !f.Published() {
				slog.Info("serve: publication stopped; the next service on this home publishes again", "function", e.name, "wset_version", f.WSetVersion)
			}
			return
		}
		e.mu.Unlock()
		if last = s.publishOnce(ctx, e, dir, f); last == nil {
			attempts, delay = 0, s.cfg.PublishRetry
			continue
		}
		if ctx.Err() != nil {
			continue
		}
		attempts++
		retryAt := time.Now().Add(delay).UTC().Truncate(time.Second)
		slog.Warn("serve: the snapshot could not be published; other nodes forward to this one meanwhile", "function", e.name, "wset_version", f.WSetVersion, "attempt", attempts, "retry_in", delay, "err", last)
		s.reg.update(e, func(f *api.Function) {
			p := api.Publication{}
			if f.Publication != nil {
				p = *f.Publication
			}
			p.Attempts, p.Error, p.RetryAt = attempts, last.Error(), &retryAt
			f.Publication = &p
		})
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
		delay = min(2*delay, publishRetryMax)
	}
}

// publishOnce publishes f's working set version of snapshot dir (the
// whole snapshot the first time) and records that the store has it.
func (s *Server) publishOnce(ctx context.Context, e *entry, dir *snapshot.Dir, f api.Function) error {
	t := time.Now()
	m, err := s.store.PublishVersion(ctx, dir, policy.WorkingSetFile, f.WSetVersion)
	if err != nil {
		return fmt.Errorf("publish snapshot %s to the snapshot store: %w", f.SnapshotID, err)
	}
	s.metrics.createSeconds.WithLabelValues("publish").Observe(time.Since(t).Seconds())
	now := time.Now().UTC().Truncate(time.Second)
	if err := s.reg.update(e, func(f *api.Function) {
		f.Publication = &api.Publication{WSetVersion: m.WSetVersion(), At: &now}
	}); err != nil {
		return err
	}
	slog.Info("serve: snapshot published; other nodes may fetch it", "function", e.name, "snapshot", m.ID, "wset_version", m.WSetVersion(), "seconds", time.Since(t).Seconds())
	return nil
}

// wsetsDir holds the working sets this node fetched from the store for
// other nodes' functions (followWorkingSet); it starts empty.
func (s *Server) wsetsDir() string { return filepath.Join(s.cfg.Home, "wsets") }

// followWorkingSet gives this node's later cold starts of another node's
// function e the working set its home published last, once it is newer
// than the first: the snapshot this node restores from (a lazymem mount,
// the local copy the store's cache completed, a copy in Home/snapshots)
// holds the working set of the manifest it was made from. The set comes
// from the store, every chunk checked against the manifest, and must be of
// e's snapshot. It runs in the background; a failure leaves the set in use.
func (s *Server) followWorkingSet(e *entry) {
	e.mu.Lock()
	f, have := e.f, e.wsVersion
	e.mu.Unlock()
	if s.cfg.NoRemoteFetch || s.reg.ours(f) || f.State != api.StateReady || f.Publication == nil || f.Publication.WSetVersion < 2 || f.Publication.WSetVersion <= have {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		e.wsMu.Lock()
		defer e.wsMu.Unlock()
		if err := s.fetchWorkingSet(e, f); err != nil && s.ctx.Err() == nil {
			slog.Warn("serve: another node's re-recorded working set could not be fetched; the one in use stays", "function", e.name, "wset_version", f.Publication.WSetVersion, "err", err)
		}
	}()
}

func (s *Server) fetchWorkingSet(e *entry, f api.Function) error {
	ctx, cancel := context.WithTimeout(s.ctx, 2*snapstore.CallTimeout)
	defer cancel()
	m, err := s.store.Manifest(ctx, f.SnapshotID)
	if err != nil {
		return err
	}
	e.mu.Lock()
	have := e.wsVersion
	e.mu.Unlock()
	v := m.WSetVersion()
	if v <= have || m.WorkingSet == nil {
		return nil // fetched meanwhile
	}
	b, err := s.store.Reader(m).Object(ctx, m.WorkingSet)
	if err != nil {
		return err
	}
	var ws wset.Set
	if err := ws.UnmarshalBinary(b); err != nil {
		return fmt.Errorf("working set version %d of snapshot %s: %w", v, m.ID, err)
	}
	if ws.Mem.SnapshotID != f.SnapshotID {
		return fmt.Errorf("working set version %d in the store is of snapshot %s, not %s", v, ws.Mem.SnapshotID, f.SnapshotID)
	}
	if err := os.MkdirAll(s.wsetsDir(), 0o700); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	path := filepath.Join(s.wsetsDir(), fmt.Sprintf("%s.%s.%d.ws", e.name, m.ID, v))
	if err := atomicfile.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	e.mu.Lock()
	old := e.wsPath
	same := e.f.SnapshotID == f.SnapshotID
	if same {
		e.wsPath, e.wsVersion = path, v
	}
	e.mu.Unlock()
	if !same {
		os.Remove(path)
		return nil
	}
	// The set before may be read by a cold start that just began: it goes
	// with the next one.
	if prev, _ := filepath.Glob(filepath.Join(s.wsetsDir(), e.name+".*.ws")); len(prev) > 0 {
		for _, p := range prev {
			if p != path && p != old {
				os.Remove(p)
			}
		}
	}
	slog.Info("serve: another node's re-recorded working set fetched for later cold starts", "function", e.name, "snapshot", m.ID, "wset_version", v, "pages", ws.Pages())
	return nil
}

// forgetWorkingSets removes the working sets fetched for function name.
func (s *Server) forgetWorkingSets(name string) {
	paths, _ := filepath.Glob(filepath.Join(s.wsetsDir(), name+".*.ws"))
	for _, p := range paths {
		os.Remove(p)
	}
}
