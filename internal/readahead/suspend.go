package readahead

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// LockDir holds one lock file per disk. While a disk's read_ahead_kb is
// lowered, its lock file records the value to put back, so a holder killed
// before it could restore (SIGKILL, crash) is repaired by the next one.
var LockDir = "/run/snapbpf"

// Suspend sets read_ahead_kb of the disk holding path to 0, so that every
// struct file opened or POSIX_FADV_NORMAL-ed on that disk from now on starts
// with no readahead, and returns resume, which puts the old value back.
// resume is safe to call more than once; callers defer it so the value is
// restored on every path.
//
// While suspended, the setting is device-wide: files that other processes
// open on the disk meanwhile keep no readahead for as long as they stay
// open. Hold it as briefly as possible.
//
// Suspensions of one disk are serialised, across processes, by a flock on
// the disk's lock file: a second Suspend waits for the first resume, so the
// second cannot mistake 0 for the value to restore.
func Suspend(path string) (resume func() error, err error) {
	queue, err := DeviceFor(path)
	if err != nil {
		return nil, err
	}
	return suspendQueue(queue)
}

func suspendQueue(queue string) (resume func() error, retErr error) {
	name, err := devName(queue)
	if err != nil {
		return nil, err
	}
	lock, err := lockDisk(name)
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			lock.Close()
		}
	}()

	if err := repair(lock, queue); err != nil {
		return nil, err
	}
	old, err := readKnob(queue)
	if err != nil {
		return nil, err
	}
	if err := saveValue(lock, old); err != nil {
		return nil, err
	}
	if err := writeKnob(queue, "0"); err != nil {
		return nil, errors.Join(err, clearValue(lock))
	}

	var once sync.Once
	var rerr error
	resume = func() error {
		once.Do(func() {
			rerr = writeKnob(queue, old)
			if rerr == nil {
				// Keep the saved value if the write failed: the next
				// Suspend of this disk retries it.
				rerr = clearValue(lock)
			}
			if err := lock.Close(); err != nil && rerr == nil {
				rerr = fmt.Errorf("unlock %s: %w", lock.Name(), err)
			}
		})
		return rerr
	}
	return resume, nil
}

func lockDisk(name string) (*os.File, error) {
	if err := os.MkdirAll(LockDir, 0o755); err != nil {
		return nil, fmt.Errorf("lock dir: %w", err)
	}
	path := filepath.Join(LockDir, "readahead-"+name+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

// The lock file holds "BOOT_ID VALUE" while the disk is lowered: the boot id
// tells a value left by a crashed holder in this boot from one left before a
// reboot, which reset the disk anyway.
func saveValue(lock *os.File, kb string) error {
	boot, err := bootID()
	if err != nil {
		return err
	}
	if err := lock.Truncate(0); err != nil {
		return fmt.Errorf("truncate %s: %w", lock.Name(), err)
	}
	if _, err := lock.WriteAt([]byte(boot+" "+kb+"\n"), 0); err != nil {
		return fmt.Errorf("write %s: %w", lock.Name(), err)
	}
	return nil
}

func clearValue(lock *os.File) error {
	if err := lock.Truncate(0); err != nil {
		return fmt.Errorf("truncate %s: %w", lock.Name(), err)
	}
	return nil
}

// repair puts back a value that a previous holder saved but never restored.
func repair(lock *os.File, queue string) error {
	b, err := io.ReadAll(io.NewSectionReader(lock, 0, 1<<10))
	if err != nil {
		return fmt.Errorf("read %s: %w", lock.Name(), err)
	}
	fields := strings.Fields(string(bytes.TrimSpace(b)))
	if len(fields) != 2 {
		return nil
	}
	boot, err := bootID()
	if err != nil {
		return err
	}
	if fields[0] != boot {
		return clearValue(lock)
	}
	if err := writeKnob(queue, fields[1]); err != nil {
		return fmt.Errorf("restore read_ahead_kb left lowered by a previous run: %w", err)
	}
	return clearValue(lock)
}

func bootID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("boot id: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}
