package record

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/pages"
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
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return guestRAM{}, fmt.Errorf("stat %s: %w", path, err)
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return guestRAM{}, fmt.Errorf("find guest RAM: %w", err)
	}
	defer f.Close()
	return parseMaps(f, unix.Major(uint64(st.Dev)), unix.Minor(uint64(st.Dev)), st.Ino, path, pid)
}

func parseMaps(r io.Reader, major, minor uint32, ino uint64, path string, pid int) (guestRAM, error) {
	var g guestRAM
	found := false
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// start-end perms offset major:minor inode [path]
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		if n, err := strconv.ParseUint(f[4], 10, 64); err != nil || n != ino {
			continue
		}
		dev := strings.SplitN(f[3], ":", 2)
		if len(dev) != 2 {
			continue
		}
		ma, err1 := strconv.ParseUint(dev[0], 16, 32)
		mi, err2 := strconv.ParseUint(dev[1], 16, 32)
		if err1 != nil || err2 != nil || uint32(ma) != major || uint32(mi) != minor {
			continue
		}
		rng := strings.SplitN(f[0], "-", 2)
		if len(rng) != 2 {
			continue
		}
		lo, err1 := strconv.ParseUint(rng[0], 16, 64)
		hi, err2 := strconv.ParseUint(rng[1], 16, 64)
		off, err3 := strconv.ParseUint(f[2], 16, 64)
		if err1 != nil || err2 != nil || err3 != nil || hi <= lo || off > lo {
			continue
		}
		base := lo - off
		if !found {
			g = guestRAM{base: base, lo: lo, hi: hi}
			found = true
			continue
		}
		if base != g.base {
			return guestRAM{}, fmt.Errorf("process %d maps %s more than once at different places; cannot tell guest pages apart", pid, path)
		}
		g.lo, g.hi = min(g.lo, lo), max(g.hi, hi)
	}
	if err := sc.Err(); err != nil {
		return guestRAM{}, fmt.Errorf("read /proc/%d/maps: %w", pid, err)
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
