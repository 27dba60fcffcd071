package capture

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"

	"github.com/snapbpf/snapbpf/internal/capture/capturetest"
	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/pages"
)

// debianBTF holds the types the program reads, cut from the BTF of Debian
// 12's kernel (linux-image-6.1.0-48-cloud-amd64, the guest kernel here),
// which has no readahead tracepoint, keeps a folio's order in _folio_order
// and numbers PG_head 16 (6 on 6.18). To cut it again from a kernel image:
//
//	apt-get download linux-image-6.1.0-48-cloud-amd64 && dpkg -x linux-image-*.deb x
//	(extract vmlinux from x/boot/vmlinuz-*; Debian's is lz4, after the bytes 02 21 4c 18)
//	objcopy -O binary --only-section=.BTF vmlinux vmlinux.btf
//	SNAPBPF_CUT_BTF=vmlinux.btf go test ./internal/capture -run TestOlderKernels
const debianBTF = "testdata/debian-6.1.0-48-cloud-amd64.btf.gz"

// readTypes are the kernel types the program reads and the tracepoint
// prototypes it checks, with all they refer to.
var readTypes = []string{
	"folio", "pageflags", "address_space", "task_struct", "file", "pt_regs",
	"btf_trace_mm_filemap_add_to_page_cache", "btf_trace_sys_exit",
}

// cutBTF returns raw BTF holding readTypes of spec, each passed through
// edit first.
func cutBTF(t *testing.T, spec *btf.Spec, edit func(btf.Type) btf.Type) []byte {
	t.Helper()
	var types []btf.Type
	for _, name := range readTypes {
		typ, err := spec.AnyTypeByName(name)
		if err != nil {
			t.Fatalf("BTF: %s: %v", name, err)
		}
		types = append(types, edit(typ))
	}
	b, err := btf.NewBuilder(types, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := b.Marshal(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// withoutOrder is this kernel's BTF with no field a folio's order could be
// read from, as a kernel whose struct folio the program does not know, and
// without the readahead tracepoint.
func withoutOrder(t *testing.T) *btf.Spec {
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		t.Skipf("no kernel BTF: %v", err)
	}
	var folio *btf.Struct
	if err := kernel.TypeByName("folio", &folio); err != nil {
		t.Fatal(err)
	}
	// In place: every type that refers to struct folio must see the change,
	// or the cut would hold two folios. LoadKernelSpec's spec is our own.
	if n := deleteMembers(folio, "_folio_order", "_flags_1"); n == 0 {
		t.Fatal("this kernel's struct folio has no order field to remove")
	}
	raw := cutBTF(t, kernel, func(typ btf.Type) btf.Type { return typ })
	return loadBTF(t, "kernel BTF without folio order fields", raw)
}

// deleteMembers removes the members called names from c and the anonymous
// structs and unions in it, and returns how many it removed.
func deleteMembers(c btf.Type, names ...string) int {
	var members *[]btf.Member
	switch c := c.(type) {
	case *btf.Struct:
		members = &c.Members
	case *btf.Union:
		members = &c.Members
	default:
		return 0
	}
	n := 0
	*members = slices.DeleteFunc(*members, func(m btf.Member) bool {
		if slices.Contains(names, m.Name) {
			n++
			return true
		}
		return false
	})
	for _, m := range *members {
		if m.Name == "" {
			n += deleteMembers(m.Type, names...)
		}
	}
	return n
}

func debian(t *testing.T) *btf.Spec {
	if from := os.Getenv("SNAPBPF_CUT_BTF"); from != "" {
		recutDebian(t, from)
	}
	f, err := os.Open(debianBTF)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", debianBTF, err)
	}
	raw, err := io.ReadAll(z)
	if err != nil {
		t.Fatalf("%s: %v", debianBTF, err)
	}
	return loadBTF(t, filepath.Base(debianBTF), raw)
}

// recutDebian rewrites debianBTF from a kernel's raw BTF (see debianBTF).
func recutDebian(t *testing.T, from string) {
	f, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	full, err := btf.LoadSpecFromReader(f)
	if err != nil {
		t.Fatalf("%s: %v", from, err)
	}
	var out bytes.Buffer
	z, _ := gzip.NewWriterLevel(&out, gzip.BestCompression)
	if _, err := z.Write(cutBTF(t, full, func(typ btf.Type) btf.Type { return typ })); err != nil {
		t.Fatal(err)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(debianBTF, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// loadBTF parses raw BTF, named what for errors.
func loadBTF(t *testing.T, what string, raw []byte) *btf.Spec {
	t.Helper()
	spec, err := btf.LoadSpecFromReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return spec
}

// TestOlderKernels loads the program with CO-RE resolved against the BTF
// of older kernels, into the running one: it must load, capture exactly
// the touched pages, and say when it could not see folio orders.
func TestOlderKernels(t *testing.T) {
	needRoot(t)
	// The running kernel (6.18 here) has everything.
	ks, err := Kernel()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("this kernel: %+v", ks)
	if !ks.FolioOrder {
		t.Errorf("Kernel() = %+v: no folio order on the running kernel", ks)
	}
	for _, tc := range []struct {
		name    string
		types   func(*testing.T) *btf.Spec
		noOrder bool
	}{
		{"debian-6.1 (no readahead tracepoints)", debian, false},
		{"no folio order, no readahead tracepoints", withoutOrder, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kt := tc.types(t)
			if ks := kernelSupport(kt); ks.ReadaheadTracepoint || ks.FolioOrder == tc.noOrder {
				t.Errorf("kernelSupport = %+v, want no readahead tracepoint and folio order %v", ks, !tc.noOrder)
			}
			if _, err := kt.AnyTypeByName("btf_trace_page_cache_ra_order"); err == nil {
				t.Fatal("the kernel types hold the readahead tracepoint")
			}
			path := capturetest.DataFile(t, 16*mib)
			if _, err := pagecache.Drop(path); err != nil {
				t.Fatal(err)
			}
			r, err := NewRecorder([]string{path}, func(o *options) { o.kernelTypes = kt })
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			defer r.Close()
			if err := r.Start(); err != nil {
				t.Fatal(err)
			}
			want := capturetest.Sorted(capturetest.RandomPages(11, 200, 16*mib/pages.Size))
			capturetest.Run(t, capturetest.Argv(t, path, want, "random", ""))
			c, err := r.Stop()
			if err != nil {
				t.Fatal(err)
			}
			got := capturetest.Sorted(Pages(c, 0))
			capturetest.AssertCovers(t, got, want)
			if len(got) > len(want)*105/100 {
				t.Errorf("captured %d pages for %d touched", len(got), len(want))
			}
			if c.ReadaheadWindows != 0 || c.ReadaheadChecked {
				t.Errorf("readahead checked (%v, %d windows) without the readahead tracepoint", c.ReadaheadChecked, c.ReadaheadWindows)
			}
			// Another kernel's offsets read this kernel's struct file
			// wrongly; only the order-less variant of this kernel's BTF
			// can find the open.
			if tc.noOrder && len(c.Opens) == 0 {
				t.Error("no open of the file seen (sys_exit)")
			}
			warned := strings.Contains(strings.Join(c.Warnings(), "\n"), "no folio order")
			switch {
			case tc.noOrder && (c.NoOrder == 0 || c.NoOrder != uint64(len(c.Accesses))):
				t.Errorf("NoOrder = %d, want every one of the %d insertions", c.NoOrder, len(c.Accesses))
			case !tc.noOrder && c.NoOrder != 0:
				t.Errorf("NoOrder = %d with the order field present", c.NoOrder)
			case tc.noOrder != warned:
				t.Errorf("warnings %q: want a folio-order warning %v", c.Warnings(), tc.noOrder)
			}
		})
	}
}
