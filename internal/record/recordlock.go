package record

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/snapshot"
)

// LockFile is the lock that serialises recordings of one snapshot; it
// holds the process ID of the recording that has it.
const LockFile = "wset/record.lock"

// ErrBusy is returned, with Options.NoWait, when another recording of the
// snapshot is running.
var ErrBusy = errors.New("another recording of the snapshot is running")

// lockPoll is how often a waiting recording tries the lock again.
const lockPoll = 200 * time.Millisecond

// lockRecording takes the snapshot's recording lock, an flock the kernel
// releases when its holder exits however it exits. Two recordings of one
// snapshot at once would each store a set and the last would win; and
// each would run its VMs beside the other's, on a busy host. If another
// recording holds the lock, it says so on log and waits until ctx ends, or
// with noWait fails at once.
func lockRecording(ctx context.Context, dir *snapshot.Dir, noWait bool, log *slog.Logger) (unlock func(), err error) {
	path := dir.File(LockFile)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("record: lock %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("record: lock %s: %w", path, err)
	}
	waited := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("record: lock %s: %w", path, err)
		}
		holder := lockHolder(f)
		if noWait {
			f.Close()
			return nil, fmt.Errorf("record %s: %w (%s)", dir.Path, ErrBusy, holder)
		}
		if !waited {
			waited = true
			log.Info("record: waiting for another recording", "snapshot", dir.Path, "holder", holder)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("record %s: gave up waiting for another recording (%s): %w", dir.Path, holder, context.Cause(ctx))
		case <-time.After(lockPoll):
		}
	}
	// Who holds it, for the message of the next one to wait.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() { f.Close() }, nil
}

// lockHolder names the process that holds the lock, as well as it is known.
func lockHolder(f *os.File) string {
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	if pid, err := strconv.Atoi(strings.TrimSpace(string(b[:n]))); err == nil {
		return fmt.Sprintf("pid %d", pid)
	}
	return "pid unknown"
}
