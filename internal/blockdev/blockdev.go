// Package blockdev reads and sets what sysfs says about the disk under a
// file: its request queue (read_ahead_kb, max_sectors_kb, rotational,
// scheduler), its name, device number and model. A partition is resolved to
// its disk, which owns the queue.
package blockdev

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Queue is a disk's sysfs queue directory (/sys/dev/block/MAJ:MIN/queue,
// resolved). It is a plain path, so it can be stored and used again.
type Queue string

// For is the queue of the disk that holds the file at path.
func For(path string) (Queue, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return "", fmt.Errorf("stat %s: %w", path, err)
	}
	q, err := ForDev(uint64(st.Dev))
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return q, nil
}

// ForDev is the queue of the disk that device dev (st_dev) is or is a
// partition of.
func ForDev(dev uint64) (Queue, error) {
	link := fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(dev), unix.Minor(dev))
	dir, err := filepath.EvalSymlinks(link)
	if err != nil {
		return "", fmt.Errorf("not on a block device (%s: %w): tmpfs, overlayfs and btrfs have no per-device queue here", link, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "partition")); err == nil {
		dir = filepath.Dir(dir)
	}
	q := Queue(filepath.Join(dir, "queue"))
	if _, err := os.Stat(q.knob("read_ahead_kb")); err != nil {
		return "", fmt.Errorf("queue of %s: %w", dir, err)
	}
	return q, nil
}

func (q Queue) knob(name string) string { return filepath.Join(string(q), name) }

// Name is the disk's kernel name (vda, nvme0n1).
func (q Queue) Name() string { return filepath.Base(filepath.Dir(string(q))) }

// Dev is the disk's device number as sysfs writes it (MAJ:MIN).
func (q Queue) Dev() (string, error) {
	b, err := os.ReadFile(filepath.Join(filepath.Dir(string(q)), "dev"))
	if err != nil {
		return "", fmt.Errorf("device of %s: %w", q, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Get reads a queue attribute (read_ahead_kb, scheduler, ...).
func (q Queue) Get(name string) (string, error) {
	b, err := os.ReadFile(q.knob(name))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", q.knob(name), err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Set writes a queue attribute; only root can.
func (q Queue) Set(name, v string) error {
	if err := os.WriteFile(q.knob(name), []byte(v), 0o644); err != nil {
		return fmt.Errorf("write %q to %s: %w", v, q.knob(name), err)
	}
	return nil
}

// KB reads a queue attribute counted in KiB (read_ahead_kb, max_sectors_kb).
func (q Queue) KB(name string) (int64, error) {
	s, err := q.Get(name)
	if err != nil {
		return 0, err
	}
	kb, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", q.knob(name), err)
	}
	return kb, nil
}

// Info is what a benchmark report says about a disk.
type Info struct {
	Name         string
	Model        string
	Rotational   bool
	Scheduler    string // the active one
	ReadAheadKB  int64
	MaxSectorsKB int64
}

// Info reads the disk's description; what cannot be read stays empty.
func (q Queue) Info() Info {
	get := func(name string) string { s, _ := q.Get(name); return s }
	model, _ := os.ReadFile(filepath.Join(filepath.Dir(string(q)), "device", "model"))
	ra, _ := q.KB("read_ahead_kb")
	ms, _ := q.KB("max_sectors_kb")
	return Info{
		Name:         q.Name(),
		Model:        strings.TrimSpace(string(model)),
		Rotational:   get("rotational") == "1",
		Scheduler:    activeScheduler(get("scheduler")),
		ReadAheadKB:  ra,
		MaxSectorsKB: ms,
	}
}

// activeScheduler picks "mq-deadline" out of "[mq-deadline] kyber none".
func activeScheduler(s string) string {
	if i := strings.IndexByte(s, '['); i >= 0 {
		if j := strings.IndexByte(s[i:], ']'); j > 0 {
			return s[i+1 : i+j]
		}
	}
	return s
}
