package capture

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// The BPF program lives in bpf/capture.c. Regenerate the committed
// capture_bpfel.go and capture_bpfel.o after editing it (needs clang and
// llvm-strip; a plain `go build` does not):
//
//	go generate ./internal/capture/
//
// bpfel rather than a single architecture: the program only reads
// tracepoint records and CO-RE-relocated kernel fields, nothing
// architecture-specific such as pt_regs, so one object serves every
// little-endian machine.

//go:generate go tool bpf2go -tags linux -target bpfel -type event -type file_key capture ../../bpf/capture.c -- -I../../bpf/include -Wall -Werror -O2 -g

// load loads and attaches the programs and opens the ring buffer.
func (r *Recorder) load(o options) (retErr error) {
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK. Newer ones
	// do not, and there RemoveMemlock fails only for lack of privileges,
	// which the load below reports more usefully.
	_ = rlimit.RemoveMemlock()
	spec, err := loadCapture()
	if err != nil {
		return fmt.Errorf("load capture spec: %w", err)
	}
	spec.Maps[captureMapFiles].MaxEntries = uint32(max(len(r.files), 1))
	spec.Maps[captureMapEvents].MaxEntries = o.ringBuffer
	if err := spec.Variables[captureVarIgnoreTgid].Set(uint32(os.Getpid())); err != nil {
		return fmt.Errorf("set ignore_tgid: %w", err)
	}
	if err := spec.Variables[captureVarWakeupBytes].Set(uint64(o.ringBuffer / 4)); err != nil {
		return fmt.Errorf("set wakeup_bytes: %w", err)
	}
	var co *ebpf.CollectionOptions
	if o.kernelTypes != nil {
		co = &ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{KernelTypes: o.kernelTypes}}
	}
	if err := spec.LoadAndAssign(&r.objs, co); err != nil {
		return privilegeError("load capture program", err)
	}
	defer func() {
		if retErr != nil {
			r.Close()
		}
	}()
	if err := r.attach(); err != nil {
		return err
	}
	r.rd, err = ringbuf.NewReader(r.objs.Events)
	if err != nil {
		return fmt.Errorf("open ring buffer: %w", err)
	}
	return nil
}

func privilegeError(what string, err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%s: %w (%w); run as root, or use --method mincore, which includes readahead", what, ErrNoPrivilege, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// attach links the programs. Only the insertion tracepoint is required;
// the open and readahead ones make a recording checkable and are skipped on
// kernels without them (sys_exit_open does not exist on arm64).
func (r *Recorder) attach() error {
	l, err := link.Tracepoint("filemap", "mm_filemap_add_to_page_cache", r.objs.OnAddToPageCache, nil)
	if err != nil {
		return privilegeError("attach filemap:mm_filemap_add_to_page_cache", err)
	}
	r.links = append(r.links, l)
	for _, tp := range []struct {
		group, name string
		prog        *ebpf.Program
	}{
		{"syscalls", "sys_exit_openat", r.objs.OnExitOpenat},
		{"syscalls", "sys_exit_openat2", r.objs.OnExitOpenat2},
		{"syscalls", "sys_exit_open", r.objs.OnExitOpen},
		{"readahead", "page_cache_ra_order", r.objs.OnRaOrder},
	} {
		l, err := link.Tracepoint(tp.group, tp.name, tp.prog, nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return privilegeError("attach "+tp.group+":"+tp.name, err)
		}
		r.links = append(r.links, l)
		if tp.group == "readahead" {
			r.raHook = true
		}
	}
	return nil
}

// watchKey returns the file and the (device, inode) key the kernel's
// tracepoints report for it.
func watchKey(path string) (File, captureFileKey, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return File{}, captureFileKey{}, fmt.Errorf("stat %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return File{}, captureFileKey{}, fmt.Errorf("capture %s: not a regular file", path)
	}
	if err := CheckFS(path); err != nil {
		return File{}, captureFileKey{}, err
	}
	dev := uint64(st.Dev)
	key := captureFileKey{
		Ino: st.Ino,
		// Tracepoints print the kernel's dev_t (major<<20 | minor), not
		// the userspace encoding stat returns.
		Dev: unix.Major(dev)<<20 | unix.Minor(dev),
	}
	return File{Path: path, Size: st.Size}, key, nil
}

// CheckFS rejects a file (or directory) on a filesystem whose files the
// capture never matches: the tracepoint reports the superblock's s_dev and
// the inode that owns the page cache.
func CheckFS(path string) error {
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil {
		return fmt.Errorf("statfs %s: %w", path, err)
	}
	switch fs.Type {
	case unix.TMPFS_MAGIC:
		return fmt.Errorf("capture %s: on tmpfs, pages never enter the page cache by a read, so there is nothing to record; put the file on a disk filesystem", path)
	case unix.OVERLAYFS_SUPER_MAGIC:
		return fmt.Errorf("capture %s: on overlayfs the page cache belongs to the underlying inode; watch the file on its real filesystem", path)
	case unix.BTRFS_SUPER_MAGIC:
		return fmt.Errorf("capture %s: on btrfs stat reports a per-subvolume device, not the superblock's the kernel reports; not supported", path)
	}
	return nil
}
