// Package terminal draws a progress.Meter as a bar (github.com/schollz/progressbar)
// with the step count, elapsed time and ETA, on a terminal. Only the CLI
// imports it: libraries drive a progress.Meter.
package terminal

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/snapbpf/snapbpf/internal/progress"
)

// IsTerminal says whether w is a terminal, where a bar can redraw itself.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Terminal is a progress.Meter that draws one bar, with the step count, elapsed
// time and ETA, on a terminal. One job shows at a time: a job started
// while another runs (a recording inside a bench) shows nothing.
type Terminal struct {
	w  io.Writer
	mu sync.Mutex
	// bar is the job being shown, nil between jobs.
	bar *progressbar.ProgressBar
}

// NewTerminal returns a Terminal drawing on w.
func NewTerminal(w io.Writer) *Terminal { return &Terminal{w: w} }

// redraw is how often a bar redraws while a step runs, so its elapsed
// time and ETA keep moving.
const redraw = time.Second

// descWidth bounds the step description, so the bar fits a line.
const descWidth = 48

// Start implements progress.Meter.
func (t *Terminal) Start(name string, total int) progress.Job {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.bar != nil {
		return progress.Or(nil).Start(name, total)
	}
	bar := progressbar.NewOptions(total,
		progressbar.OptionSetWriter(t.w),
		progressbar.OptionSetDescription(name),
		progressbar.OptionSetWidth(24),
		progressbar.OptionShowCount(),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(t.w) }),
	)
	bar.RenderBlank()
	t.bar = bar
	j := &termJob{t: t, bar: bar, name: name, stop: make(chan struct{})}
	go j.tick()
	return j
}

// Writer returns the writer for everything else written to the terminal
// while a bar may show (the log): each write clears the bar, writes, and
// draws the bar again below it.
func (t *Terminal) Writer() io.Writer { return termWriter{t} }

type termWriter struct{ t *Terminal }

func (w termWriter) Write(p []byte) (int, error) {
	w.t.mu.Lock()
	defer w.t.mu.Unlock()
	if w.t.bar == nil {
		return w.t.w.Write(p)
	}
	w.t.bar.Clear()
	n, err := w.t.w.Write(p)
	w.t.bar.RenderBlank()
	return n, err
}

type termJob struct {
	t    *Terminal
	bar  *progressbar.ProgressBar
	name string
	stop chan struct{}
	step int
	done bool
}

func (j *termJob) tick() {
	tk := time.NewTicker(redraw)
	defer tk.Stop()
	for {
		select {
		case <-j.stop:
			return
		case <-tk.C:
			j.t.mu.Lock()
			if !j.done {
				j.bar.RenderBlank()
			}
			j.t.mu.Unlock()
		}
	}
}

func (j *termJob) Step(what string) {
	j.t.mu.Lock()
	defer j.t.mu.Unlock()
	if j.done {
		return
	}
	j.step++
	if r := []rune(what); len(r) > descWidth {
		what = string(r[:descWidth-1]) + "…"
	}
	j.bar.Describe(j.name + ": " + what)
	j.bar.Set(j.step - 1)
}

func (j *termJob) Done() {
	j.t.mu.Lock()
	defer j.t.mu.Unlock()
	if j.done {
		return
	}
	j.done = true
	close(j.stop)
	j.bar.Describe(j.name)
	j.bar.Finish()
	j.t.bar = nil
}
