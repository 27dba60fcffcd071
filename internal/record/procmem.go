package record

import (
	"encoding/binary"
	"fmt"
	"os"

	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/procfs"
)

// guestRAM is where a process maps a memory file: the address of the
// file's offset 0 (every mapping of the file in the process must agree) and
// the address range the mappings cover.
type guestRAM struct {
	base   uint64
	lo, hi uint64
}

// page returns the file page at addr and whether addr is guest RAM.
func (g guestRAM) page(addr uint64) (uint64, bool) {
	if addr < g.lo || addr >= g.hi {
		return 0, false
	}
	return (addr - g.base) / pages.Size, true
}

// findGuestRAM reads /proc/PID/maps for the mappings of the file at path.
func findGuestRAM(pid int, path string) (guestRAM, error) {
	f, err := procfs.FileOf(path)
	if err != nil {
		return guestRAM{}, fmt.Errorf("find guest RAM: %w", err)
	}
	ms, err := procfs.Maps(pid)
	if err != nil {
		return guestRAM{}, fmt.Errorf("find guest RAM: %w", err)
	}
	return guestRAMOf(procfs.Of(ms, f), path, pid)
}

// guestRAMOf is where the mappings ms of the file at path put it: every
// one must map the file's offset 0 at the same address.
func guestRAMOf(ms []procfs.Mapping, path string, pid int) (guestRAM, error) {
	var g guestRAM
	found := false
	for _, m := range ms {
		if m.Offset > m.Lo {
			continue // offset 0 would lie below address 0: not guest RAM
		}
		base := m.Lo - m.Offset
		if !found {
			g, found = guestRAM{base: base, lo: m.Lo, hi: m.Hi}, true
			continue
		}
		if base != g.base {
			return guestRAM{}, fmt.Errorf("process %d maps %s more than once at different places; cannot tell guest pages apart", pid, path)
		}
		g.lo, g.hi = min(g.lo, m.Lo), max(g.hi, m.Hi)
	}
	if !found {
		return guestRAM{}, fmt.Errorf("process %d does not map %s", pid, path)
	}
	return g, nil
}

// presentPages returns the file pages of g the process already has mapped,
// from /proc/PID/pagemap (bit 63: present, bit 62: swapped).
func presentPages(pid int, g guestRAM) ([]uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/pagemap", pid))
	if err != nil {
		return nil, fmt.Errorf("read pagemap: %w", err)
	}
	defer f.Close()
	var out []uint64
	const chunk = 1 << 16 // entries per read
	buf := make([]byte, 8*chunk)
	for addr := g.lo; addr < g.hi; {
		n := min(uint64(chunk), (g.hi-addr)/pages.Size)
		if n == 0 {
			break
		}
		b := buf[:8*n]
		if _, err := f.ReadAt(b, int64(addr/pages.Size*8)); err != nil {
			return nil, fmt.Errorf("read pagemap of %d: %w", pid, err)
		}
		for i := uint64(0); i < n; i++ {
			if binary.LittleEndian.Uint64(b[8*i:])&(3<<62) != 0 {
				out = append(out, (addr-g.base)/pages.Size+i)
			}
		}
		addr += n * pages.Size
	}
	return out, nil
}
