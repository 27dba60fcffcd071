package procfs

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
)

// Mount is one line of /proc/self/mountinfo: where a file system is
// mounted and of what type.
type Mount struct {
	Point  string // mount point, unescaped
	FSType string // e.g. "tracefs", "fuse.snapbpf-lazymem"
	Source string
}

// Mounts lists the mounts of this process's mount namespace.
func Mounts() ([]Mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("mounts: %w", err)
	}
	defer f.Close()
	return ParseMountinfo(f)
}

// ParseMountinfo reads proc(5)'s mountinfo format: "ID PARENT MAJ:MIN ROOT
// MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS". Lines
// of another shape are skipped.
func ParseMountinfo(r io.Reader) ([]Mount, error) {
	var out []Mount
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || sep+1 >= len(fields) {
			continue
		}
		m := Mount{Point: unescapeOctal(fields[4]), FSType: fields[sep+1]}
		if sep+2 < len(fields) {
			m.Source = unescapeOctal(fields[sep+2])
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("mountinfo: %w", err)
	}
	return out, nil
}

// unescapeOctal undoes mountinfo's escapes of spaces and the like (\040).
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			var v byte
			ok := true
			for _, c := range []byte(s[i+1 : i+4]) {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + c - '0'
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
