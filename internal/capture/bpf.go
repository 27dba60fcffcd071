package capture

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/tracepoint"
)

// The BPF program lives in bpf/capture.c. Regenerate the committed
// capture_bpfel.go and capture_bpfel.o after editing it (needs clang,
// llvm-strip and libbpf-dev, which `make generate` installs and pins; a
// plain `go build` does not):
//
//	make generate
//
// bpfel rather than a single architecture: the program reads only
// CO-RE-relocated kernel fields, and the one architecture-specific read
// (the syscall number in pt_regs) is guarded by a field-existence check and
// attached only where openSyscalls knows the numbers, so one object serves
// every little-endian machine.

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
	nrs := openSyscalls()
	for name, nr := range map[string]int64{captureVarNrOpen: nrs.open, captureVarNrOpenat: nrs.openat, captureVarNrOpenat2: nrs.openat2} {
		if err := spec.Variables[name].Set(nr); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
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
	if err := r.attach(o.kernelTypes); err != nil {
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
		return fmt.Errorf("%s: %w (%w)", what, ErrNoPrivilege, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// The tracepoints the programs attach to, with the arguments they read
// (tracepoint.Check's notation).
var (
	tpInsert  = hook{"mm_filemap_add_to_page_cache", []string{"*folio"}}
	tpSysExit = hook{"sys_exit", []string{"*pt_regs", "int8"}}
	tpRAOrder = hook{"page_cache_ra_order", []string{"*inode", "uint8", "*file_ra_state"}}
)

type hook struct {
	name   string
	params []string
}

// attach links the programs as raw tracepoints, which need no tracefs.
// Only the insertion tracepoint is required; the open and readahead ones
// make a recording checkable and are skipped where the kernel lacks them or
// passes other arguments, which its BTF says before anything is attached.
// kernel is that BTF; nil loads the running kernel's (tests pass an older
// kernel's, as for CO-RE).
func (r *Recorder) attach(kernel *btf.Spec) error {
	if kernel == nil {
		var err error
		if kernel, err = btf.LoadKernelSpec(); err != nil {
			return fmt.Errorf("kernel BTF: %w", err)
		}
	}
	if err := tracepoint.Check(kernel, tpInsert.name, tpInsert.params...); err != nil {
		return fmt.Errorf("capture needs the page-cache insertion tracepoint: %w", err)
	}
	l, err := tracepoint.Attach(tpInsert.name, r.objs.OnAddToPageCache)
	if err != nil {
		return privilegeError("capture", err)
	}
	r.links = append(r.links, l)
	optional := []struct {
		hook
		prog *ebpf.Program
		ok   bool
	}{
		{tpSysExit, r.objs.OnSysExit, openSyscalls().known()},
		{tpRAOrder, r.objs.OnRaOrder, true},
	}
	for _, h := range optional {
		if !h.ok {
			continue
		}
		if err := tracepoint.Check(kernel, h.name, h.params...); err != nil {
			if !errors.Is(err, tracepoint.ErrNotExist) {
				slog.Warn("capture: tracepoint not attached", "err", err)
			}
			continue
		}
		l, err := tracepoint.Attach(h.name, h.prog)
		if errors.Is(err, tracepoint.ErrNotExist) {
			continue
		}
		if err != nil {
			return privilegeError("capture", err)
		}
		r.links = append(r.links, l)
		if h.name == tpRAOrder.name {
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
