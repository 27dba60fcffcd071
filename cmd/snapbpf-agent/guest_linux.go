package main

import (
	"encoding/binary"
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
func (linuxSystem) PrepareSnapshot(reportOrder int) (protocol.Message, error) {
	info := map[string]string{}
	if reportOrder >= 0 {
		if _, err := os.Stat(reportOrderPath); err != nil {
			return protocol.Message{}, fmt.Errorf("free page reporting unavailable (%s missing: virtio_balloon not loaded or no balloon device): %w", filepath.Base(reportOrderPath), err)
		}
		if err := os.WriteFile(reportOrderPath, []byte(strconv.Itoa(reportOrder)), 0); err != nil {
			return protocol.Message{}, fmt.Errorf("set reporting order: %w", err)
		}
		info["report_order"] = strconv.Itoa(reportOrder)
	}
	// Reporting runs when pages of at least the reporting order are freed,
	// so free after setting the order: the Go heap, then the page cache
	// (the initramfs and friends).
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
		n, err := zeroFreeMemory(mem["MemFree"])
		if err != nil {
			return protocol.Message{}, err
		}
		info["zeroed_bytes"] = strconv.FormatInt(n, 10)
	}
	return protocol.Message{Info: info, Mem: mem}, nil
}

// zeroFreeMemory writes zeroes over all but a reserve of the guest's free
// memory (free bytes) and gives it back, and returns how much. Free page
// reporting alone leaves free pages with old contents in the memory file
// when it has not got to them: it reports a sixteenth of a free list per
// pass, passes 2 s apart, and in a busy guest starts late (bert's
// snapshots were saved before it had reported anything, json's once).
// Zeroed, those pages become holes all the same: the host punches the
// memory file's zero pages after the snapshot (snapshot.PunchZeroPages).
// The kernel zeroes each anonymous page it hands out, so a write per page
// is all it takes.
func zeroFreeMemory(free int64) (int64, error) {
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
		return 0, nil
	}
	m, err := unix.Mmap(-1, 0, int(n), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return 0, fmt.Errorf("zero free memory: map %d MiB: %w", n>>20, err)
	}
	page := os.Getpagesize()
	for i := 0; i < len(m); i += page {
		m[i] = 0
	}
	if err := unix.Munmap(m); err != nil {
		return 0, fmt.Errorf("zero free memory: unmap: %w", err)
	}
	return n, nil
}

// MemInfo returns /proc/meminfo in bytes.
func (linuxSystem) MemInfo() (map[string]int64, error) { return meminfo() }

// meminfo returns /proc/meminfo in bytes.
func meminfo() (map[string]int64, error) { return procfs.Meminfo("") }
