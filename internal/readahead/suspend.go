package readahead

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/blockdev"
	"github.com/snapbpf/snapbpf/internal/owner"
)

// LockDir holds, per disk, a lock file and, while the disk's read_ahead_kb
// is lowered, a journal of the value to put back (see Repair). It is on
// /run, a tmpfs: the journal then costs no disk I/O on the restore path,
// and it goes away at reboot together with the sysfs value it guards.
// It does not follow SNAPBPF_HOME on purpose: the disk is shared by every
// snapbpf on the host, whatever home each one uses.
var LockDir = "/run/snapbpf"

// briefWindow bounds the windows DisableForProcess opens; they last
// microseconds, so a holder still lowered after this is stuck.
const briefWindow = time.Second

// A Window is a disk's read_ahead_kb held at 0: every struct file opened
// or POSIX_FADV_NORMAL-ed on that disk meanwhile starts with no readahead.
// It ends at Close or at its deadline, whichever comes first, and then
// puts the disk's value back.
//
// The setting is device-wide: files that other processes open on the disk
// meanwhile keep no readahead for as long as they stay open. Hold a window
// as briefly as possible.
type Window struct {
	queue   blockdev.Queue
	old     string // the disk's read_ahead_kb before
	lock    *os.File
	journal string
	start   time.Time
	timer   *time.Timer
	expired chan struct{}

	once sync.Once
	dur  time.Duration
	err  error
}

// Suspend opens a Window on the disk holding path, for at most max (why
// names its purpose to whoever has to wait for it or repair it).
//
// Windows on one disk are serialised across processes by a flock on the
// disk's lock file, so a second window cannot mistake 0 for the value to
// put back. Suspend waits for the holder until ctx is done and then fails
// with an error naming it. Before it lowers the disk, Suspend journals the
// old value with this process as its owner, so that if this process dies
// before the window ends, the next snapbpf command puts it back (Repair).
func Suspend(ctx context.Context, path string, max time.Duration, why string) (*Window, error) {
	queue, err := blockdev.For(path)
	if err != nil {
		return nil, fmt.Errorf("readahead of %w", err)
	}
	return suspendQueue(ctx, queue, max, why)
}

func suspendQueue(ctx context.Context, queue blockdev.Queue, max time.Duration, why string) (w *Window, retErr error) {
	name, err := queue.Dev()
	if err != nil {
		return nil, err
	}
	lock, err := lockDisk(ctx, name)
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			lock.Close()
		}
	}()

	journal := journalPath(name)
	if _, err := repairLocked(journal); err != nil {
		return nil, err
	}
	old, err := queue.Get(knob)
	if err != nil {
		return nil, err
	}
	self, err := owner.Self()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	e := &Entry{
		Queue:       queue,
		Device:      name,
		ReadaheadKB: old,
		Owner:       self,
		Why:         why,
		Since:       start,
		Deadline:    start.Add(max),
	}
	if err := writeJournal(journal, e); err != nil {
		return nil, err
	}
	if err := queue.Set(knob, "0"); err != nil {
		return nil, errors.Join(err, removeJournal(journal))
	}
	w = &Window{queue: queue, old: old, lock: lock, journal: journal, start: start, expired: make(chan struct{})}
	w.timer = time.AfterFunc(max, func() { w.end(true) })
	return w, nil
}

// Close ends the window if its deadline has not, and returns what putting
// the disk's value back returned. It is safe to call more than once;
// callers defer it so that the value is restored on every path.
func (w *Window) Close() error {
	w.timer.Stop()
	w.end(false)
	return w.err
}

// Expired is closed when the window ended at its deadline, not by Close.
func (w *Window) Expired() <-chan struct{} { return w.expired }

// Lowered is how long the disk was at 0; valid once the window has ended.
func (w *Window) Lowered() time.Duration { return w.dur }

// end puts the disk's value back and unlocks, once. Expired is closed
// inside the once, so that it is settled by the time any end returns.
func (w *Window) end(atDeadline bool) {
	w.once.Do(func() {
		w.dur = time.Since(w.start)
		w.err = w.queue.Set(knob, w.old)
		if w.err == nil {
			// Keep the journal if the write failed: the next window on
			// this disk, or Repair, retries it.
			w.err = removeJournal(w.journal)
		}
		if err := w.lock.Close(); err != nil && w.err == nil {
			w.err = fmt.Errorf("unlock %s: %w", w.lock.Name(), err)
		}
		if atDeadline {
			close(w.expired)
		}
	})
}

// lockDisk takes the disk's lock, polling with backoff so that the wait
// ends when ctx does: flock(2) itself cannot be interrupted by a deadline.
func lockDisk(ctx context.Context, name string) (*os.File, error) {
	f, err := openLock(name)
	if err != nil {
		return nil, err
	}
	delay := time.Millisecond
	for {
		ok, err := tryLock(f)
		if err != nil {
			f.Close()
			return nil, err
		}
		if ok {
			return f, nil
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, heldError(name, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
}

func openLock(name string) (*os.File, error) {
	if err := os.MkdirAll(LockDir, 0o755); err != nil {
		return nil, fmt.Errorf("readahead lock directory: %w", err)
	}
	path := filepath.Join(LockDir, "readahead-"+name+".lock")
	// O_CLOEXEC (os.OpenFile's default) matters: a child that inherited
	// the descriptor would keep the disk locked after we die.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open readahead lock: %w", err)
	}
	return f, nil
}

// tryLock takes f's flock if it is free and reports whether it did.
func tryLock(f *os.File) (bool, error) {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, unix.EWOULDBLOCK):
			return false, nil
		case !errors.Is(err, unix.EINTR):
			return false, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
	}
}

// heldError says who holds the disk's window, from its journal.
func heldError(name string, cause error) error {
	e, err := readJournal(journalPath(name))
	if err != nil || e == nil {
		return fmt.Errorf("readahead of disk %s is held by another snapbpf process (lock in %s): %w; retry when it is done", name, LockDir, cause)
	}
	left := fmt.Sprintf("deadline in %v", time.Until(e.Deadline).Round(time.Millisecond))
	if time.Now().After(e.Deadline) {
		// Its own timer would have ended it: the holder is stopped or
		// wedged, and the next snapbpf command after stuckGrace repairs it.
		left = fmt.Sprintf("%v past its deadline", time.Since(e.Deadline).Round(time.Millisecond))
	}
	return fmt.Errorf("readahead of disk %s is held at 0 by %s for %v now (%s): %w; retry when it is done, or give this command more time",
		name, e.describe(), time.Since(e.Since).Round(time.Millisecond), left, cause)
}
