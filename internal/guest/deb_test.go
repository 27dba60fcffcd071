package guest

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestArReader(t *testing.T) {
	// Odd sizes exercise the padding byte; a GNU-style trailing "/" on the
	// name must be dropped.
	ar := makeAr(t,
		arFile{"debian-binary", []byte("2.0\n")},
		arFile{"odd/", []byte("abc")},
		arFile{"empty", nil},
		arFile{"last", []byte("z")},
	)
	r, err := newArReader(bytes.NewReader(ar))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		m, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(b)) != m.Size {
			t.Fatalf("%s: read %d bytes, header says %d", m.Name, len(b), m.Size)
		}
		got = append(got, m.Name+"="+string(b))
	}
	want := "debian-binary=2.0\n,odd=abc,empty=,last=z"
	if s := strings.Join(got, ","); s != want {
		t.Fatalf("members %q, want %q", s, want)
	}
}

func TestArReaderSkipsUnread(t *testing.T) {
	ar := makeAr(t, arFile{"a", []byte("12345")}, arFile{"b", []byte("xy")})
	r, err := newArReader(bytes.NewReader(ar))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	m, err := r.Next() // without reading a
	if err != nil || m.Name != "b" {
		t.Fatalf("second member = %+v, %v", m, err)
	}
	if b, _ := io.ReadAll(r); string(b) != "xy" {
		t.Fatalf("b = %q", b)
	}
}

func TestArReaderBadMagic(t *testing.T) {
	if _, err := newArReader(strings.NewReader("PK\x03\x04 not an ar file")); err == nil {
		t.Fatal("accepted a non-ar file")
	}
}

func TestExtractDeb(t *testing.T) {
	files := []tarFile{
		{name: "./"},
		{name: "./boot/"},
		{name: "./boot/vmlinuz-1.0-test", body: "kernel"},
		{name: "./lib/modules/1.0-test/kernel/drivers/virtio/virtio.ko", body: "module"},
		{name: "./lib/modules/1.0-test/modules.builtin", body: "kernel/drivers/x.ko\n"},
		{name: "./lib/modules/1.0-test/link", link: "modules.builtin"},
	}
	for _, comp := range []string{"", "gz", "xz"} {
		t.Run("data.tar."+comp, func(t *testing.T) {
			dir := t.TempDir()
			deb := filepath.Join(dir, "k.deb")
			if err := os.WriteFile(deb, makeDeb(t, comp, files...), 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "tree")
			if err := os.Mkdir(out, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := extractDeb(context.Background(), deb, out); err != nil {
				t.Fatal(err)
			}
			for p, want := range map[string]string{
				"boot/vmlinuz-1.0-test":                                "kernel",
				"lib/modules/1.0-test/kernel/drivers/virtio/virtio.ko": "module",
				"lib/modules/1.0-test/link":                            "kernel/drivers/x.ko\n",
			} {
				b, err := os.ReadFile(filepath.Join(out, p))
				if err != nil || string(b) != want {
					t.Errorf("%s = %q, %v; want %q", p, b, err, want)
				}
			}
		})
	}
}

func TestExtractDebRefusesEscapes(t *testing.T) {
	tests := []struct {
		name string
		file tarFile
	}{
		{"dotdot", tarFile{name: "../escape", body: "x"}},
		{"nested dotdot", tarFile{name: "./a/../../escape", body: "x"}},
		{"symlink out", tarFile{name: "./a/link", link: "../../escape"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			deb := filepath.Join(dir, "k.deb")
			if err := os.WriteFile(deb, makeDeb(t, "gz", tc.file), 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "a", "b")
			if err := os.MkdirAll(out, 0o755); err != nil {
				t.Fatal(err)
			}
			err := extractDeb(context.Background(), deb, out)
			if err == nil || !strings.Contains(err.Error(), "leaves the tree") {
				t.Fatalf("extract error = %v, want a refusal", err)
			}
			if _, err := os.Lstat(filepath.Join(dir, "a", "escape")); err == nil {
				t.Fatal("a file was written outside the tree")
			}
		})
	}
}

// An absolute symlink is skipped, so nothing can be written through it.
func TestExtractDebSkipsAbsoluteSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "outside")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	deb := filepath.Join(dir, "k.deb")
	data := makeDeb(t, "xz", tarFile{name: "./d", link: target}, tarFile{name: "./d/file", body: "x"})
	if err := os.WriteFile(deb, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "tree")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := extractDeb(context.Background(), deb, out); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(target, "file")); err == nil {
		t.Fatal("wrote through an absolute symlink")
	}
	if fi, err := os.Lstat(filepath.Join(out, "d")); err != nil || !fi.IsDir() {
		t.Fatalf("tree/d = %v, %v; want a plain directory", fi, err)
	}
}

func TestExtractDebNoData(t *testing.T) {
	dir := t.TempDir()
	deb := filepath.Join(dir, "k.deb")
	if err := os.WriteFile(deb, makeAr(t, arFile{"debian-binary", []byte("2.0\n")}), 0o644); err != nil {
		t.Fatal(err)
	}
	err := extractDeb(context.Background(), deb, dir)
	if err == nil || !strings.Contains(err.Error(), "no data.tar") {
		t.Fatalf("error = %v, want one about the missing data member", err)
	}
}
