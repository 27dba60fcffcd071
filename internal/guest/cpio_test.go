package guest

import (
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// parsedEntry is what readCpio finds for one member.
type parsedEntry struct {
	Name         string
	Ino, Mode    uint32
	Nlink, Mtime uint32
	RdevMj       uint32
	RdevMn       uint32
	Data         string
}

// readCpio is an independent newc reader for the tests: it checks magic,
// alignment and the trailer, and returns the members in archive order.
func readCpio(b []byte) ([]parsedEntry, error) {
	var out []parsedEntry
	off := 0
	for {
		if off%4 != 0 {
			return nil, fmt.Errorf("entry at %d is not 4-byte aligned", off)
		}
		if off+110 > len(b) {
			return nil, fmt.Errorf("truncated header at %d", off)
		}
		h := b[off : off+110]
		if string(h[:6]) != "070701" {
			return nil, fmt.Errorf("bad magic %q at %d", h[:6], off)
		}
		field := func(i int) uint32 {
			v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				panic(err)
			}
			return uint32(v)
		}
		size, namesize := int(field(6)), int(field(11))
		nameStart := off + 110
		name := string(b[nameStart : nameStart+namesize-1])
		if b[nameStart+namesize-1] != 0 {
			return nil, fmt.Errorf("name %q not NUL-terminated", name)
		}
		dataStart := nameStart + namesize
		dataStart += pad4(dataStart)
		if name == cpioTrailer {
			if rest := b[dataStart:]; len(bytes.Trim(rest, "\x00")) != 0 {
				return nil, fmt.Errorf("%d bytes after trailer", len(rest))
			}
			return out, nil
		}
		out = append(out, parsedEntry{
			Name: name, Ino: field(0), Mode: field(1), Nlink: field(4), Mtime: field(5),
			RdevMj: field(9), RdevMn: field(10),
			Data: string(b[dataStart : dataStart+size]),
		})
		off = dataStart + size + pad4(size)
	}
}

func TestCpioRoundTrip(t *testing.T) {
	a := newCpioArchive()
	a.File("/init", 0o755, []byte("agent"))
	a.File("lib/modules/virtio.ko", 0o644, []byte("1234")) // size already aligned
	a.File("etc/snapbpf/modules", 0o644, []byte("virtio\n"))
	a.Dir("tmp", 0o1777)
	a.CharDev("dev/console", 0o600, 5, 1)
	a.File("empty", 0o644, nil)
	var buf bytes.Buffer
	n, err := a.WriteTo(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) {
		t.Errorf("WriteTo returned %d, wrote %d", n, buf.Len())
	}
	got, err := readCpio(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	want := []parsedEntry{
		{Name: "dev", Mode: cpioModeDir | 0o755, Nlink: 2},
		{Name: "dev/console", Mode: cpioModeChar | 0o600, Nlink: 1, RdevMj: 5, RdevMn: 1},
		{Name: "empty", Mode: cpioModeReg | 0o644, Nlink: 1},
		{Name: "etc", Mode: cpioModeDir | 0o755, Nlink: 2},
		{Name: "etc/snapbpf", Mode: cpioModeDir | 0o755, Nlink: 2},
		{Name: "etc/snapbpf/modules", Mode: cpioModeReg | 0o644, Nlink: 1, Data: "virtio\n"},
		{Name: "init", Mode: cpioModeReg | 0o755, Nlink: 1, Data: "agent"},
		{Name: "lib", Mode: cpioModeDir | 0o755, Nlink: 2},
		{Name: "lib/modules", Mode: cpioModeDir | 0o755, Nlink: 2},
		{Name: "lib/modules/virtio.ko", Mode: cpioModeReg | 0o644, Nlink: 1, Data: "1234"},
		{Name: "tmp", Mode: cpioModeDir | 0o1777, Nlink: 2},
	}
	for i := range want {
		want[i].Ino = uint32(i + 1)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("entries:\n got %+v\nwant %+v", got, want)
	}
}

// Every name length and data length modulo 4 must keep the stream aligned.
func TestCpioPadding(t *testing.T) {
	for nameLen := 1; nameLen <= 8; nameLen++ {
		for dataLen := 0; dataLen <= 8; dataLen++ {
			a := newCpioArchive()
			name := strings.Repeat("n", nameLen)
			data := strings.Repeat("d", dataLen)
			a.File(name, 0o644, []byte(data))
			a.File("z", 0o644, []byte("after"))
			var buf bytes.Buffer
			if _, err := a.WriteTo(&buf); err != nil {
				t.Fatal(err)
			}
			got, err := readCpio(buf.Bytes())
			if err != nil {
				t.Fatalf("name %d data %d: %v", nameLen, dataLen, err)
			}
			if len(got) != 2 || got[0].Data != data || got[1].Data != "after" {
				t.Fatalf("name %d data %d: got %+v", nameLen, dataLen, got)
			}
		}
	}
}

func TestCpioDeterministic(t *testing.T) {
	build := func(order []string) []byte {
		a := newCpioArchive()
		for _, n := range order {
			a.File(n, 0o644, []byte(n))
		}
		var buf bytes.Buffer
		if _, err := a.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	x := build([]string{"b/c", "a", "b/a"})
	y := build([]string{"a", "b/a", "b/c"})
	if !bytes.Equal(x, y) {
		t.Fatal("same entries added in another order gave different archives")
	}
}

// The cpio tool, when installed, must read the archive the same way.
func TestCpioToolAgrees(t *testing.T) {
	tool, err := exec.LookPath("cpio")
	if err != nil {
		t.Skip("cpio not installed (apt-get install cpio)")
	}
	a := newCpioArchive()
	a.File("init", 0o755, []byte("x"))
	a.File("lib/modules/virtio_ring.ko", 0o644, []byte("abc"))
	a.CharDev("dev/console", 0o600, 5, 1)
	var buf bytes.Buffer
	if _, err := a.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tool, "-t", "--quiet")
	cmd.Stdin = &buf
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -t: %v", err)
	}
	want := "dev\ndev/console\ninit\nlib\nlib/modules\nlib/modules/virtio_ring.ko\n"
	if string(out) != want {
		t.Fatalf("cpio -t listed\n%s\nwant\n%s", out, want)
	}
}

var _ io.WriterTo = (*cpioArchive)(nil)
