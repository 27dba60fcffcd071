// Package readahead turns kernel readahead off for one process's view of a
// file, without the process's cooperation.
//
// Readahead is a property of an open file description (struct file), not of
// the file: the kernel copies the device's read_ahead_kb into the struct
// file at open(2), and again on posix_fadvise(POSIX_FADV_NORMAL). A process
// that maps a file and never madvises it (a VMM mapping guest memory) keeps
// reading 2*read_ahead_kb around every fault. madvise cannot be applied
// from outside and process_madvise takes no MADV_RANDOM, so the window is
// changed where the kernel reads it: the device's value is set to 0 for the
// moment the struct file copies it, then put back.
package readahead

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// DeviceFor returns the sysfs queue directory (/sys/dev/block/MAJ:MIN/queue)
// of the block device whose read_ahead_kb the files at path start with. A
// partition is resolved to its disk, which owns the queue.
func DeviceFor(path string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return "", fmt.Errorf("stat %s: %w", path, err)
	}
	dev := uint64(st.Dev)
	link := fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(dev), unix.Minor(dev))
	dir, err := filepath.EvalSymlinks(link)
	if err != nil {
		return "", fmt.Errorf("%s is not on a block device (%s: %w): tmpfs, overlayfs and btrfs have no per-device readahead here", path, link, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "partition")); err == nil {
		dir = filepath.Dir(dir)
	}
	queue := filepath.Join(dir, "queue")
	if _, err := os.Stat(filepath.Join(queue, "read_ahead_kb")); err != nil {
		return "", fmt.Errorf("readahead knob of %s: %w", path, err)
	}
	return queue, nil
}

// devName returns the MAJ:MIN name of the disk that owns queue.
func devName(queue string) (string, error) {
	b, err := os.ReadFile(filepath.Join(filepath.Dir(queue), "dev"))
	if err != nil {
		return "", fmt.Errorf("device of %s: %w", queue, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func readKnob(queue string) (string, error) {
	knob := filepath.Join(queue, "read_ahead_kb")
	b, err := os.ReadFile(knob)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", knob, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func writeKnob(queue, kb string) error {
	knob := filepath.Join(queue, "read_ahead_kb")
	if err := os.WriteFile(knob, []byte(kb), 0o644); err != nil {
		return fmt.Errorf("write %q to %s: %w", kb, knob, err)
	}
	return nil
}
