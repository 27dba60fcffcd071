package replay

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugeAlign is where guest memory starts, like a VMM places guest RAM: on
// a 2 MiB boundary, so a huge folio of the file can be mapped whole.
const hugeAlign = 2 << 20

// guestMem is one VM's guest memory in this process: a fixed address range
// built from one or more mappings.
type guestMem struct {
	base unsafe.Pointer
	size uintptr
	// vmas counts the mappings placed in it (FaaSnap maps per region).
	vmas int
}

// reserveGuestMem reserves size bytes of address space at a 2 MiB
// boundary; the caller maps into it with mapFixed.
func reserveGuestMem(size int64) (*guestMem, error) {
	total := uintptr(size) + hugeAlign
	p, err := unix.MmapPtr(-1, 0, nil, total, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("reserve %d bytes of guest memory: %w", size, err)
	}
	skip := (hugeAlign - uintptr(p)%hugeAlign) % hugeAlign
	base := unsafe.Add(p, skip)
	// Give back the slack on both sides.
	if skip > 0 {
		_ = unix.MunmapPtr(p, skip)
	}
	if tail := total - skip - uintptr(size); tail > 0 {
		_ = unix.MunmapPtr(unsafe.Add(base, size), tail)
	}
	return &guestMem{base: base, size: uintptr(size)}, nil
}

// mapFixed maps length bytes at offset off of the guest memory: from fd at
// fileOff, or anonymous memory when fd is nil. Always private.
func (g *guestMem) mapFixed(off, length int64, f *os.File, fileOff int64) error {
	if off < 0 || length <= 0 || uintptr(off+length) > g.size {
		return fmt.Errorf("map %d bytes at %d: outside the guest memory's %d bytes", length, off, g.size)
	}
	fd, flags := -1, unix.MAP_PRIVATE|unix.MAP_FIXED
	if f == nil {
		flags |= unix.MAP_ANONYMOUS | unix.MAP_NORESERVE
		fileOff = 0
	} else {
		fd = int(f.Fd())
	}
	addr := unsafe.Add(g.base, off)
	if _, err := unix.MmapPtr(fd, fileOff, addr, uintptr(length), unix.PROT_READ|unix.PROT_WRITE, flags); err != nil {
		what := "anonymous memory"
		if f != nil {
			what = fmt.Sprintf("%s at %d", f.Name(), fileOff)
		}
		if errors.Is(err, unix.ENOMEM) {
			return fmt.Errorf("map %s into guest memory: %w (more mappings than vm.max_map_count allows?)", what, err)
		}
		return fmt.Errorf("map %s into guest memory: %w", what, err)
	}
	g.vmas++
	return nil
}

// madvise applies advice to all of the guest memory.
func (g *guestMem) madvise(advice int) error {
	_, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(g.base), g.size, uintptr(advice))
	if errno != 0 {
		return fmt.Errorf("madvise(%d) guest memory: %w", advice, errno)
	}
	return nil
}

// addr is the address of byte off of the guest memory.
func (g *guestMem) addr(off int64) uintptr { return uintptr(g.base) + uintptr(off) }

// bytes is the guest memory as a slice.
func (g *guestMem) bytes() []byte {
	return unsafe.Slice((*byte)(g.base), g.size)
}

// unmap releases the guest memory.
func (g *guestMem) unmap() error {
	if g.base == nil {
		return nil
	}
	err := unix.MunmapPtr(g.base, g.size)
	g.base = nil
	if err != nil {
		return fmt.Errorf("unmap guest memory: %w", err)
	}
	return nil
}
