// Package progress shows how far a long command (image build, snapshot
// creation, recording, bench) has come: a bar with an ETA when stderr is a
// terminal, plain log lines (step i/n, elapsed, eta) when it is not.
// Libraries drive a Meter and never see the bar library.
package progress

import (
	"log/slog"
	"sync"
	"time"
)

// Meter starts jobs whose steps it shows.
type Meter interface {
	// Start begins a job called name of total steps.
	Start(name string, total int) Job
}

// Job is one long job of a known number of steps.
type Job interface {
	// Step says the step described by what starts, so the one before
	// it has finished.
	Step(what string)
	// Done ends the job; steps after it are ignored.
	Done()
}

// Or returns m, or a Meter that shows nothing when m is nil, so library
// options can leave their Meter unset.
func Or(m Meter) Meter {
	if m == nil {
		return none{}
	}
	return m
}

type none struct{}

func (none) Start(string, int) Job { return none{} }
func (none) Step(string)           {}
func (none) Done()                 {}

// ETA estimates how long the rest of a job takes from how long its first
// done of total steps took; ok is false before a step has finished.
func ETA(elapsed time.Duration, done, total int) (eta time.Duration, ok bool) {
	if done <= 0 || total <= 0 {
		return 0, false
	}
	if done >= total {
		return 0, true
	}
	return time.Duration(float64(elapsed) / float64(done) * float64(total-done)), true
}

// Log returns a Meter that writes one line to l when each step starts and
// one when the job is done: for output that is not a terminal (a CI log, a
// file), where a bar would be noise.
func Log(l *slog.Logger) Meter { return &logMeter{l: l, now: time.Now} }

type logMeter struct {
	l   *slog.Logger
	now func() time.Time
}

func (m *logMeter) Start(name string, total int) Job {
	return &logJob{l: m.l, now: m.now, name: name, total: total, start: m.now()}
}

type logJob struct {
	l     *slog.Logger
	now   func() time.Time
	name  string
	total int
	start time.Time

	mu   sync.Mutex
	step int
	done bool
}

func (j *logJob) Step(what string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.done {
		return
	}
	j.step++
	elapsed := j.now().Sub(j.start)
	attrs := []any{"job", j.name, "step", what, "i", j.step, "n", j.total, "elapsed", round(elapsed).String()}
	if eta, ok := ETA(elapsed, j.step-1, j.total); ok {
		attrs = append(attrs, "eta", round(eta).String())
	}
	j.l.Info("progress", attrs...)
}

func (j *logJob) Done() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.done {
		return
	}
	j.done = true
	j.l.Info("progress: done", "job", j.name, "steps", j.step, "n", j.total, "elapsed", round(j.now().Sub(j.start)).String())
}

// round keeps a duration readable in a log line.
func round(d time.Duration) time.Duration {
	if d >= time.Minute {
		return d.Round(time.Second)
	}
	return d.Round(100 * time.Millisecond)
}
