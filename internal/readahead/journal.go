package readahead

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/snapbpf/snapbpf/internal/atomicfile"
	"github.com/snapbpf/snapbpf/internal/blockdev"
	"github.com/snapbpf/snapbpf/internal/owner"
)

// An Entry journals one open Window: what to put back where, and who must.
type Entry struct {
	Queue       blockdev.Queue `json:"queue"`         // sysfs queue directory of the disk
	Device      string         `json:"device"`        // the disk's MAJ:MIN
	ReadaheadKB string         `json:"read_ahead_kb"` // the value to put back
	Owner       owner.Owner    `json:"owner"`
	Why         string         `json:"why"`
	Since       time.Time      `json:"since"`
	Deadline    time.Time      `json:"deadline"`
}

func (e *Entry) describe() string {
	return fmt.Sprintf("pid %d (%s)", e.Owner.PID, e.Why)
}

func journalPath(name string) string {
	return filepath.Join(LockDir, "readahead-"+name+".json")
}

// writeJournal publishes e at path atomically and durably: a reader sees
// the old entry or the new one, never part of one, even after a crash.
func writeJournal(path string, e *Entry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("readahead journal: %w", err)
	}
	if err := atomicfile.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("readahead journal: %w", err)
	}
	return nil
}

// readJournal returns the entry at path, or nil if there is none.
func readJournal(path string) (*Entry, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read readahead journal: %w", err)
	}
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("readahead journal %s: %w; remove it after checking read_ahead_kb of its disk", path, err)
	}
	return &e, nil
}

func removeJournal(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove readahead journal: %w", err)
	}
	return atomicfile.SyncDir(filepath.Dir(path))
}

// repairLocked puts back the value journaled at path, if any. The caller
// holds the disk's lock, so an entry there is one its owner did not clear:
// the owner died, or could not write the value back.
func repairLocked(path string) (*Entry, error) {
	e, err := readJournal(path)
	if err != nil || e == nil {
		return nil, err
	}
	if boot, err := owner.BootID(); err != nil {
		return nil, err
	} else if boot != e.Owner.Boot {
		// Left before a reboot, which reset the disk anyway.
		return nil, removeJournal(path)
	}
	if err := e.Queue.Set(knob, e.ReadaheadKB); err != nil {
		return nil, fmt.Errorf("put back read_ahead_kb that %s left lowered: %w", e.describe(), err)
	}
	slog.Warn("readahead: put back read_ahead_kb left lowered by a process that did not end its window",
		"device", e.Device, "read_ahead_kb", e.ReadaheadKB, "owner_pid", e.Owner.PID, "why", e.Why, "since", e.Since)
	return e, removeJournal(path)
}

// A Finding is a window Repair found left behind.
type Finding struct {
	Entry
	// Stuck says the owner still runs but is past its deadline: Repair
	// put the value back, but the window stays journaled until the owner
	// ends it (if it was stopped) or dies.
	Stuck bool
}

func (f Finding) String() string {
	if f.Stuck {
		return fmt.Sprintf("disk %s: %s is %v past its deadline; read_ahead_kb put back to %s",
			f.Device, f.describe(), time.Since(f.Deadline).Round(time.Millisecond), f.ReadaheadKB)
	}
	return fmt.Sprintf("disk %s: %s died with read_ahead_kb at 0 (since %s); put back to %s",
		f.Device, f.describe(), f.Since.Format(time.RFC3339), f.ReadaheadKB)
}

// stuckGrace is how far past its deadline a live owner may be before
// Repair calls its window stuck: its own timer restores the value at the
// deadline, so only a stopped or wedged process misses it by this much.
const stuckGrace = time.Second

// Repair puts back read_ahead_kb on every disk whose window's owner is
// gone (killed before it could end the window) or stuck past its
// deadline, and returns what it found. Every snapbpf command calls it at
// startup; without LockDir (nothing ever lowered a disk) it does nothing.
func Repair() ([]Finding, error) {
	paths, err := filepath.Glob(filepath.Join(LockDir, "readahead-*.json"))
	if err != nil {
		return nil, fmt.Errorf("list readahead journals: %w", err)
	}
	var found []Finding
	errs := []error{removeStaleTemps()}
	for _, p := range paths {
		f, err := repairOne(p)
		if err != nil {
			errs = append(errs, err)
		}
		if f != nil {
			found = append(found, *f)
		}
	}
	return found, errors.Join(errs...)
}

// removeStaleTemps removes journal temp files that a process killed
// between creating and publishing one left. A live writer publishes within
// microseconds, so a temp file a minute old has no writer.
func removeStaleTemps() error {
	temps, err := filepath.Glob(filepath.Join(LockDir, ".readahead-*.json.tmp*"))
	if err != nil {
		return fmt.Errorf("list readahead journal temp files: %w", err)
	}
	for _, p := range temps {
		if fi, err := os.Stat(p); err == nil && time.Since(fi.ModTime()) > time.Minute {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("remove stale readahead journal temp file: %w", err)
			}
		}
	}
	return nil
}

func repairOne(path string) (*Finding, error) {
	e, err := readJournal(path)
	if err != nil || e == nil {
		return nil, err
	}
	alive := e.Owner.Alive()
	if alive && time.Since(e.Deadline) < stuckGrace {
		return nil, nil // a window in use
	}
	lock, err := openLock(e.Device)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	ok, err := tryLock(lock)
	if err != nil {
		return nil, err
	}
	if ok {
		// Whoever wrote the entry no longer holds the lock.
		e, err := repairLocked(path)
		if err != nil || e == nil {
			return nil, err
		}
		return &Finding{Entry: *e}, nil
	}
	if !alive {
		return nil, nil // a new window, or another repair, holds the disk now
	}
	// The owner holds the lock but missed its deadline by far (stopped,
	// wedged): put the value back under it. When the owner ends its window
	// it writes the same value again, which is harmless. Unless the owner
	// ended meanwhile and a new window lowered the disk: look again.
	if now, err := readJournal(path); err != nil || now == nil || now.Owner != e.Owner || !now.Since.Equal(e.Since) {
		return nil, err
	}
	if err := e.Queue.Set(knob, e.ReadaheadKB); err != nil {
		return nil, fmt.Errorf("put back read_ahead_kb held past its deadline by %s: %w", e.describe(), err)
	}
	slog.Warn("readahead: put back read_ahead_kb held past its window's deadline",
		"device", e.Device, "read_ahead_kb", e.ReadaheadKB, "owner_pid", e.Owner.PID, "why", e.Why, "deadline", e.Deadline)
	return &Finding{Entry: *e, Stuck: true}, nil
}
