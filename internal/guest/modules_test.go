package guest

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ulikunitz/xz"
)

const testVersion = "1.0-test"

var testVermagic = testVersion + " SMP preempt mod_unload modversions "

// testModule describes a module file for writeModuleTree.
type testModule struct {
	file    string // path under kernel/
	name    string
	deps    []string
	magic   string // vermagic; default testVermagic
	xzipped bool
}

// writeModuleTree lays out lib/modules/<testVersion> with the given modules
// and builtin list, and returns its index.
func writeModuleTree(t *testing.T, mods []testModule, builtin ...string) *moduleIndex {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "lib", "modules", testVersion)
	for _, m := range mods {
		magic := m.magic
		if magic == "" {
			magic = testVermagic
		}
		data := makeModule(t, m.name, magic, m.deps...)
		p := filepath.Join(dir, "kernel", m.file)
		if m.xzipped {
			var b bytes.Buffer
			zw, err := xz.NewWriter(&b)
			if err != nil {
				t.Fatal(err)
			}
			zw.Write(data)
			zw.Close()
			data, p = b.Bytes(), p+".xz"
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var bl strings.Builder
	for _, b := range builtin {
		bl.WriteString("kernel/" + b + ".ko\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte(bl.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	idx, err := indexModules(dir)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

// debianVirtio mirrors the dependencies of the 6.1 cloud kernel's modules.
var debianVirtio = []testModule{
	{file: "drivers/virtio/virtio_ring.ko", name: "virtio_ring"},
	{file: "drivers/virtio/virtio.ko", name: "virtio", deps: []string{"virtio_ring"}},
	{file: "drivers/virtio/virtio_mmio.ko", name: "virtio_mmio", deps: []string{"virtio", "virtio_ring"}},
	{file: "drivers/virtio/virtio_balloon.ko", name: "virtio_balloon", deps: []string{"virtio", "virtio_ring"}},
	{file: "drivers/char/virtio_console.ko", name: "virtio_console", deps: []string{"virtio", "virtio_ring"}},
	{file: "net/vmw_vsock/vsock.ko", name: "vsock"},
	{file: "net/vmw_vsock/vmw_vsock_virtio_transport_common.ko", name: "vmw_vsock_virtio_transport_common", deps: []string{"vsock"}},
	{file: "net/vmw_vsock/vmw_vsock_virtio_transport.ko", name: "vmw_vsock_virtio_transport",
		deps: []string{"virtio", "vmw_vsock_virtio_transport_common", "virtio_ring", "vsock"}},
	{file: "drivers/char/hw_random/virtio-rng.ko", name: "virtio_rng", deps: []string{"virtio", "virtio_ring"}},
}

func TestResolveModules(t *testing.T) {
	tests := []struct {
		name      string
		mods      []testModule
		builtin   []string
		want, opt []string
		order     []string
		err       string
	}{
		{
			name: "debian guest set", mods: debianVirtio,
			want: GuestModules, opt: OptionalGuestModules,
			order: []string{"virtio_ring", "virtio", "virtio_mmio", "virtio_balloon", "virtio_console"},
		},
		{
			name: "deps pulled in ahead", mods: debianVirtio,
			want:  []string{"virtio_balloon", "vmw_vsock_virtio_transport"},
			order: []string{"virtio_ring", "virtio", "virtio_balloon", "vsock", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport"},
		},
		{
			name: "dash in file name", mods: debianVirtio,
			want: []string{"virtio-rng"}, order: []string{"virtio_ring", "virtio", "virtio_rng"},
		},
		{
			name: "builtin skipped", mods: debianVirtio[1:], builtin: []string{"drivers/virtio/virtio_ring"},
			want: []string{"virtio_mmio"}, order: []string{"virtio", "virtio_mmio"},
		},
		{
			name: "optional absent", mods: debianVirtio[:4],
			want: GuestModules, opt: OptionalGuestModules,
			order: []string{"virtio_ring", "virtio", "virtio_mmio", "virtio_balloon"},
		},
		{
			name: "compressed", mods: []testModule{
				{file: "a.ko", name: "a", xzipped: true},
				{file: "b.ko", name: "b", deps: []string{"a"}},
			},
			want: []string{"b"}, order: []string{"a", "b"},
		},
		{
			name: "missing", mods: debianVirtio[:1], want: []string{"virtio_balloon"},
			err: "module virtio_balloon is not in",
		},
		{
			name: "missing dependency", mods: debianVirtio[1:2], want: []string{"virtio"},
			err: "module virtio_ring (needed by virtio) is not in",
		},
		{
			name: "wrong kernel", mods: []testModule{{file: "a.ko", name: "a", magic: "9.9 SMP "}},
			want: []string{"a"}, err: "not kernel " + testVersion,
		},
		{
			name: "version prefix is not a match", mods: []testModule{{file: "a.ko", name: "a", magic: testVersion + "0 SMP "}},
			want: []string{"a"}, err: "not kernel " + testVersion,
		},
		{
			name: "cycle", mods: []testModule{
				{file: "a.ko", name: "a", deps: []string{"b"}},
				{file: "b.ko", name: "b", deps: []string{"a"}},
			},
			want: []string{"a"}, err: "cycle: a -> b -> a",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			idx := writeModuleTree(t, tc.mods, tc.builtin...)
			got, err := resolveModules(context.Background(), idx, testVersion, tc.want, tc.opt, testLog(t))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, m := range got {
				names = append(names, m.Name)
				mi, err := readModinfo(m.Data)
				if err != nil || mi.Name != m.Name {
					t.Errorf("%s: data is not the uncompressed module (%+v, %v)", m.Name, mi, err)
				}
			}
			if !reflect.DeepEqual(names, tc.order) {
				t.Fatalf("order %q, want %q", names, tc.order)
			}
		})
	}
}

func TestParseModinfo(t *testing.T) {
	sec := []byte("alias=virtio:d00000005v*\x00depends=virtio,virtio_ring\x00retpoline=Y\x00intree=Y\x00name=virtio_balloon\x00vermagic=6.1.0-56-cloud-amd64 SMP preempt mod_unload modversions \x00\x00")
	got := parseModinfo(sec)
	want := modinfo{Name: "virtio_balloon", Depends: []string{"virtio", "virtio_ring"}, Vermagic: "6.1.0-56-cloud-amd64 SMP preempt mod_unload modversions "}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("parseModinfo = %+v, want %+v", got, want)
	}
	if got := parseModinfo([]byte("depends=\x00name=virtio_ring\x00")); got.Depends != nil {
		t.Fatalf("empty depends = %q, want none", got.Depends)
	}
}

func TestModuleNameOf(t *testing.T) {
	tests := map[string]string{
		"a/virtio_ring.ko":     "virtio_ring",
		"a/virtio-rng.ko.xz":   "virtio_rng",
		"a/virtio_mmio.ko.zst": "virtio_mmio",
		"a/b.ko.gz":            "b",
		"a/modules.order":      "",
	}
	for in, want := range tests {
		got, ok := moduleNameOf(in)
		if got != want || ok != (want != "") {
			t.Errorf("moduleNameOf(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}
