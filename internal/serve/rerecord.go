package serve

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/snapbpf/snapbpf/api"
	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// RerecordConfig says when a function's working set is re-recorded: after
// After cold restores in a row each took more than MissFaults major faults
// on the memory file (pages the set did not bring in: an input that
// touches other data, say).
type RerecordConfig struct {
	// MissFaults is the most memory-file faults a cold restore may take
	// and count as a hit (0 means 32). Negative turns re-recording off.
	MissFaults int64
	// After is how many missing cold restores in a row trigger a
	// re-recording (3).
	After int
	// Window is how many recent cold restores the miss rate covers (20).
	Window int
}

func (c *RerecordConfig) defaults() {
	if c.MissFaults == 0 {
		c.MissFaults = 32
	}
	if c.After <= 0 {
		c.After = 3
	}
	if c.Window <= 0 {
		c.Window = 20
	}
}

// missWindow is a function's recent cold restores.
type missWindow struct {
	recent []bool   // true: missed, the latest last
	streak []uint64 // inputs of the current run of misses
}

// maxRerecordInputs bounds the inputs a re-recording adds: each costs a
// recording's restores.
const maxRerecordInputs = 4

// coldRestored accounts a cold restore of e on input that took faults
// memory-file major faults (-1: not measured), and starts a re-recording
// when the misses have lasted.
func (s *Server) coldRestored(e *entry, input uint64, faults int64) {
	if faults < 0 {
		slog.Debug("serve: cold restore without a fault count", "function", e.name)
		return
	}
	s.metrics.wsetMisses.WithLabelValues(e.name).Add(float64(faults))
	c := s.cfg.Rerecord
	missed := c.MissFaults >= 0 && faults > c.MissFaults
	slog.Info("serve: cold restore", "function", e.name, "input", input, "mem_file_faults", faults, "missed", missed)
	e.mu.Lock()
	w := &e.misses
	w.recent = append(w.recent, missed)
	if len(w.recent) > c.Window {
		w.recent = w.recent[len(w.recent)-c.Window:]
	}
	if missed {
		if !slices.Contains(w.streak, input) {
			w.streak = append(w.streak, input)
		}
	} else {
		w.streak = nil
	}
	n := 0
	for _, m := range w.recent {
		if m {
			n++
		}
	}
	e.f.MissRate = float64(n) / float64(len(w.recent))
	// Only the home re-records: it owns the record (a copy elsewhere
	// serves the home's set).
	trigger := missed && len(w.recent) >= c.After && !e.rerecording && s.reg.ours(e.f)
	for _, m := range w.recent[max(0, len(w.recent)-c.After):] {
		trigger = trigger && m
	}
	var inputs []uint64
	if trigger {
		e.rerecording = true
		inputs = w.streak[max(0, len(w.streak)-maxRerecordInputs):]
		w.streak = nil
	}
	e.mu.Unlock()
	if trigger {
		reason := fmt.Sprintf("%d cold restore(s) in a row took more than %d memory-file faults (last: %d); recorded inputs %v and merged them into the set", c.After, c.MissFaults, faults, inputs)
		s.startRerecord(e, inputs, reason)
	}
}

// startRerecord re-records e's working set on inputs in the background,
// merged with the old set, which keeps serving until the new one replaces
// it atomically.
func (s *Server) startRerecord(e *entry, inputs []uint64, reason string) {
	s.reg.mu.Lock()
	if e.deleting {
		s.reg.mu.Unlock()
		return
	}
	e.mu.Lock()
	if e.snap == nil { // closed by the service's Close
		e.mu.Unlock()
		s.reg.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	done := make(chan struct{})
	prevDone := e.done
	e.cancel, e.done = cancel, done
	dir := e.snap.dir
	e.mu.Unlock()
	s.reg.mu.Unlock()
	slog.Info("serve: re-recording a working set", "function", e.name, "inputs", inputs, "reason", reason)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(done)
		defer cancel()
		<-prevDone
		err := s.cfg.Builder.Record(ctx, dir, inputs, true)
		var ws *wset.Set
		if err == nil {
			ws, err = wset.Read(dir.File(policy.WorkingSetFile))
		}
		e.mu.Lock()
		e.rerecording = false
		e.mu.Unlock()
		if err != nil {
			s.metrics.rerecords.WithLabelValues(e.name, "failed").Inc()
			slog.Error("serve: re-recording failed; the old working set keeps serving", "function", e.name, "err", err)
			return
		}
		s.metrics.rerecords.WithLabelValues(e.name, "ok").Inc()
		now := time.Now().UTC().Truncate(time.Second)
		s.reg.update(e, func(f *api.Function) {
			f.WSetPages, f.RecordedAt = ws.Pages(), &now
			f.Rerecords = append(f.Rerecords, api.Rerecord{At: now, Reason: reason})
			f.WSetVersion = max(1, f.WSetVersion) + 1
		})
		e.mu.Lock()
		e.misses = missWindow{}
		e.f.MissRate = 0
		e.mu.Unlock()
		slog.Info("serve: working set re-recorded", "function", e.name, "pages", ws.Pages())
		// The other nodes that serve e from the store get the new set
		// once it is published.
		s.startPublish(e)
	}()
}

// rerecordingNow says whether a re-recording of e runs.
func (e *entry) rerecordingNow() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.rerecording
}
