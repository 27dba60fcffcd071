package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/kmod"
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

// addKernelEntropy credits e to the input pool and reseeds the kernel's
// generator now; without the reseed a clone's getrandom output would stay
// tied to the snapshot until the next scheduled reseed.
func addKernelEntropy(e []byte) error {
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

// prepareSnapshot gives free guest memory back before the snapshot: with
// the balloon's free page reporting, the host punches holes in the memory
// file where guest pages are free. The host watches the file to see when
// reporting has settled.
func prepareSnapshot(req protocol.Message) (protocol.Message, error) {
	info := map[string]string{}
	if req.ReportOrder >= 0 {
		if _, err := os.Stat(reportOrderPath); err != nil {
			return protocol.Message{}, fmt.Errorf("free page reporting unavailable (%s missing: virtio_balloon not loaded or no balloon device): %w", filepath.Base(reportOrderPath), err)
		}
		if err := os.WriteFile(reportOrderPath, []byte(strconv.Itoa(req.ReportOrder)), 0); err != nil {
			return protocol.Message{}, fmt.Errorf("set reporting order: %w", err)
		}
		info["report_order"] = strconv.Itoa(req.ReportOrder)
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
	return protocol.Message{Info: info, Mem: mem}, err
}
