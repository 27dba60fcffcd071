package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/kmod"
	"github.com/snapbpf/snapbpf/internal/procfs"
	"github.com/snapbpf/snapbpf/internal/protocol"
)

const (
	// reportOrderPath is only there once virtio_balloon has registered
	// page reporting, which also resets the order; so it is set late.
	reportOrderPath = "/sys/module/page_reporting/parameters/page_reporting_order"
)

func loadModules() (int, error) {
	names, err := kmod.LoadImageModules()
	return len(names), err
}

// linuxSystem is the guest the agent runs in as PID 1.
type linuxSystem struct{}

// AddEntropy credits e to the input pool and reseeds the kernel's
// generator now; without the reseed a clone's getrandom output would stay
// tied to the snapshot until the next scheduled reseed.
func (linuxSystem) AddEntropy(e []byte) error {
	f, err := os.OpenFile("/dev/urandom", os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("entropy: %w", err)
	}
	defer f.Close()
	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
	buf := make([]byte, 8+len(e))
	binary.NativeEndian.PutUint32(buf[0:], uint32(8*len(e)))
	binary.NativeEndian.PutUint32(buf[4:], uint32(len(e)))
	copy(buf[8:], e)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDADDENTROPY, uintptr(unsafe.Pointer(&buf[0]))); errno != 0 {
		return fmt.Errorf("entropy: RNDADDENTROPY: %w", errno)
	}
	runtime.KeepAlive(buf)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDRESEEDCRNG, 0); errno != 0 {
		return fmt.Errorf("entropy: RNDRESEEDCRNG: %w", errno)
	}
	return nil
}

// PrepareSnapshot gives free guest memory back before the snapshot: with
// the balloon's free page reporting, the host punches holes in the memory
// file where guest pages are free. The host watches the file to see when
// reporting has settled.
//
// Nothing is reported while the agent zeroes free memory: a reporting
// pass takes blocks off the free lists, up to 32 at a time, until the host
// has handled them, which under TCG takes long, and the zeroing, which
// claims nearly all free memory at once, then found too little and ran a
// 128 MiB guest out of memory. So reporting is stopped first and set to
// reportOrder just before the zeroed memory is freed, which starts a pass
// over all of it.
func (linuxSystem) PrepareSnapshot(reportOrder int) (protocol.Message, error) {
	info := map[string]string{}
	if reportOrder >= 0 {
		if _, err := stopReporting(); err != nil {
			return protocol.Message{}, err
		}
		info["report_order"] = strconv.Itoa(reportOrder)
	}
	// Free what the snapshot need not hold: the Go heap, then the page
	// cache (the initramfs and friends).
	runtime.GC()
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		return protocol.Message{}, fmt.Errorf("drop caches: %w", err)
	}
	mem, err := meminfo()
	if err != nil {
		return protocol.Message{}, err
	}
	if reportOrder >= 0 {
		n, err := zeroFreeMemory(mem["MemFree"], func() error { return setReportOrder(reportOrder) })
		if err != nil {
			return protocol.Message{}, err
		}
		info["zeroed_bytes"] = strconv.FormatInt(n, 10)
	}
	return protocol.Message{Info: info, Mem: mem}, nil
}

// SetReporting sets the free page reporting order; a negative order stops
// reporting. The host stops it once reporting has given the free memory
// back, before the snapshot is saved. Every clone would otherwise go on
// reporting: a pass starts 2 s (guest time) after any page is freed and
// walks every free list, reading the page structures of all free memory, a
// few hundred pages of the memory file that no invocation needs (issue 16:
// 245 of chameleon's 285 prefetched but untouched pages on its other
// input). A clone's freed memory then stays with it until it exits, which
// short-lived clones do anyway.
func (linuxSystem) SetReporting(order int) (protocol.Message, error) {
	var err error
	if order < 0 {
		order, err = stopReporting()
	} else {
		err = setReportOrder(order)
	}
	if err != nil {
		return protocol.Message{}, err
	}
	return protocol.Message{Info: map[string]string{"report_order": strconv.Itoa(order)}}, nil
}

// setReportOrder sets the free page reporting order: free blocks of 2^order
// pages and more are reported, and freeing one starts a pass.
func setReportOrder(order int) error {
	if _, err := os.Stat(reportOrderPath); err != nil {
		return fmt.Errorf("free page reporting unavailable (%s missing: virtio_balloon not loaded or no balloon device): %w", filepath.Base(reportOrderPath), err)
	}
	if err := os.WriteFile(reportOrderPath, []byte(strconv.Itoa(order)), 0); err != nil {
		return fmt.Errorf("set free page reporting order %d: %w", order, err)
	}
	return nil
}

// stopReporting sets the reporting order above every block the buddy
// allocator has: nothing freed starts a pass, and a pass already pending
// walks no free list. Kernels that bound the order (6.3 and later, to
// MAX_ORDER) get the largest, where only the few largest blocks are
// walked. It returns the order set.
func stopReporting() (int, error) {
	err := setReportOrder(reportOff)
	if err == nil || !errors.Is(err, unix.EINVAL) {
		return reportOff, err
	}
	top, terr := topOrder()
	if terr != nil {
		return 0, errors.Join(err, terr)
	}
	return top, setReportOrder(top)
}

// reportOff is an order no buddy allocator has (x86 goes to 10).
const reportOff = 63

// topOrder is the largest order of the buddy allocator: /proc/buddyinfo has
// a column per order.
func topOrder() (int, error) {
	b, err := os.ReadFile("/proc/buddyinfo")
	if err != nil {
		return 0, fmt.Errorf("largest page order: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // Node 0, zone DMA32 n0 n1 ...
	if len(f) < 5 {
		return 0, fmt.Errorf("largest page order: /proc/buddyinfo line %q", line)
	}
	return len(f) - 5, nil
}

// zeroFreeMemory writes zeroes over all but a reserve of the guest's free
// memory (free bytes) and gives it back, and returns how much; beforeFree
// runs once the memory is written, before it is freed. Free page reporting
// alone leaves free pages with old contents in the memory file
// when it has not got to them: it reports a sixteenth of a free list per
// pass, passes 2 s apart, and in a busy guest starts late (bert's
// snapshots were saved before it had reported anything, json's once).
// Zeroed, those pages become holes all the same: the host punches the
// memory file's zero pages after the snapshot (snapshot.PunchZeroPages).
// The kernel zeroes each anonymous page it hands out, so a write per page
// is all it takes.
func zeroFreeMemory(free int64, beforeFree func() error) (int64, error) {
	// Leave the kernel well above its watermarks (min_free_kbytes is 2 MiB
	// on a 256 MiB guest) so that nothing is reclaimed or killed.
	reserve := int64(8 << 20)
	if b, err := os.ReadFile("/proc/sys/vm/min_free_kbytes"); err == nil {
		if kb, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil {
			reserve = max(reserve, 4*kb<<10)
		}
	}
	n := (free - reserve) &^ (1<<20 - 1)
	if n <= 0 {
		return 0, beforeFree()
	}
	m, err := unix.Mmap(-1, 0, int(n), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return 0, errors.Join(fmt.Errorf("zero free memory: map %d MiB: %w", n>>20, err), beforeFree())
	}
	page := os.Getpagesize()
	for i := 0; i < len(m); i += page {
		m[i] = 0
	}
	err = beforeFree()
	if uerr := unix.Munmap(m); uerr != nil {
		return 0, errors.Join(err, fmt.Errorf("zero free memory: unmap: %w", uerr))
	}
	return n, err
}

// MemInfo returns /proc/meminfo in bytes.
func (linuxSystem) MemInfo() (map[string]int64, error) { return meminfo() }

// meminfo returns /proc/meminfo in bytes.
func meminfo() (map[string]int64, error) { return procfs.Meminfo("") }
