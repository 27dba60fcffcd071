package guest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/ulikunitz/xz"
)

// arFile is one member for makeAr.
type arFile struct {
	name string
	data []byte
}

// makeAr writes a common-format ar archive, as dpkg-deb does.
func makeAr(t *testing.T, files ...arFile) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteString(arMagic)
	for _, f := range files {
		fmt.Fprintf(&b, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", f.name, 0, 0, 0, "100644", len(f.data))
		b.Write(f.data)
		if len(f.data)%2 == 1 {
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

// tarFile is one member for makeTar; a trailing "/" makes a directory and
// link a symlink.
type tarFile struct {
	name, body, link string
}

// makeTar writes a tar stream compressed as comp says ("", "gz" or "xz").
func makeTar(t *testing.T, comp string, files ...tarFile) []byte {
	t.Helper()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), Typeflag: tar.TypeReg}
		switch {
		case f.link != "":
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, f.link, 0
		case strings.HasSuffix(f.name, "/"):
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	switch comp {
	case "":
		return raw.Bytes()
	case "gz":
		zw := gzip.NewWriter(&out)
		zw.Write(raw.Bytes())
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	case "xz":
		zw, err := xz.NewWriter(&out)
		if err != nil {
			t.Fatal(err)
		}
		zw.Write(raw.Bytes())
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("unknown compression %q", comp)
	}
	return out.Bytes()
}

// makeDeb builds a .deb whose data member is compressed as comp says.
func makeDeb(t *testing.T, comp string, files ...tarFile) []byte {
	t.Helper()
	name := "data.tar"
	if comp != "" {
		name += "." + comp
	}
	return makeAr(t,
		arFile{"debian-binary", []byte("2.0\n")},
		arFile{"control.tar.gz", makeTar(t, "gz", tarFile{name: "./control", body: "Package: test\n"})},
		arFile{name, makeTar(t, comp, files...)},
	)
}

// makeModule writes a minimal relocatable x86-64 ELF with a .modinfo
// section, enough for readModinfo (the kernel would not load it).
func makeModule(t *testing.T, name, vermagic string, depends ...string) []byte {
	t.Helper()
	modinfo := fmt.Sprintf("license=GPL\x00depends=%s\x00name=%s\x00vermagic=%s\x00",
		strings.Join(depends, ","), name, vermagic)
	shstrtab := "\x00.modinfo\x00.shstrtab\x00"
	const ehsize, shentsize = 64, 64
	modOff := uint64(ehsize)
	strOff := modOff + uint64(len(modinfo))
	shOff := (strOff + uint64(len(shstrtab)) + 7) &^ 7

	var b bytes.Buffer
	hdr := elf.Header64{
		Type: uint16(elf.ET_REL), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Shoff: shOff, Ehsize: ehsize, Shentsize: shentsize, Shnum: 3, Shstrndx: 2,
	}
	copy(hdr.Ident[:], elf.ELFMAG)
	hdr.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	hdr.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	hdr.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	binary.Write(&b, binary.LittleEndian, &hdr)
	b.WriteString(modinfo)
	b.WriteString(shstrtab)
	b.Write(make([]byte, int(shOff)-b.Len()))
	for _, s := range []elf.Section64{
		{},
		{Name: 1, Type: uint32(elf.SHT_PROGBITS), Flags: uint64(elf.SHF_ALLOC), Off: modOff, Size: uint64(len(modinfo)), Addralign: 1},
		{Name: 10, Type: uint32(elf.SHT_STRTAB), Off: strOff, Size: uint64(len(shstrtab)), Addralign: 1},
	} {
		binary.Write(&b, binary.LittleEndian, &s)
	}
	return b.Bytes()
}
