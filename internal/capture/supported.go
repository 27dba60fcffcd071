package capture

import (
	"fmt"
	"os"
	"slices"

	"github.com/cilium/ebpf/btf"

	"github.com/snapbpf/snapbpf/internal/tracepoint"
)

// Supported reports whether BPF capture can run here: nil if the program
// loads and attaches, else an error that says what is missing (the error
// wraps ErrNoPrivilege when privileges are).
func Supported() error {
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return fmt.Errorf("kernel BTF missing (/sys/kernel/btf/vmlinux), which CO-RE needs: %w", err)
	}
	r := &Recorder{done: make(chan struct{})}
	if err := r.load(options{ringBuffer: uint32(os.Getpagesize())}); err != nil {
		return err
	}
	return r.Close()
}

// KernelSupport is what the running kernel offers the capture program
// beyond the page-cache insertion tracepoint it needs. All of it is read
// from the kernel's BTF; none of it needs tracefs.
type KernelSupport struct {
	// ReadaheadTracepoint: the page_cache_ra_order tracepoint exists with
	// the arguments the program reads, so a recording can show that it
	// holds no readahead.
	ReadaheadTracepoint bool
	// FolioOrder: the program can read a folio's order from this kernel's
	// struct folio, so a large folio counts as all its pages.
	FolioOrder bool
	// OpenEvents: the sys_exit tracepoint exists and the open syscalls'
	// numbers are known here, so a recording sees opens of its files.
	OpenEvents bool
}

// Kernel reads the running kernel's BTF for what KernelSupport lists.
func Kernel() (KernelSupport, error) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return KernelSupport{}, fmt.Errorf("kernel BTF: %w", err)
	}
	return kernelSupport(spec), nil
}

func kernelSupport(spec *btf.Spec) KernelSupport {
	return KernelSupport{
		ReadaheadTracepoint: tracepoint.Check(spec, tpRAOrder.name, tpRAOrder.params...) == nil,
		FolioOrder:          folioOrderKnown(spec),
		OpenEvents:          openSyscalls().known() && tracepoint.Check(spec, tpSysExit.name, tpSysExit.params...) == nil,
	}
}

// folioOrderKnown mirrors folio_order in bpf/capture.c: it needs the page
// flags word, the PG_head flag's number, and one of the two places a large
// folio's order has been kept.
func folioOrderKnown(spec *btf.Spec) bool {
	var pageflags *btf.Enum
	if spec.TypeByName("pageflags", &pageflags) != nil ||
		!slices.ContainsFunc(pageflags.Values, func(v btf.EnumValue) bool { return v.Name == "PG_head" }) {
		return false
	}
	var folio *btf.Struct
	if spec.TypeByName("folio", &folio) != nil {
		return false
	}
	return hasMember(folio.Members, "flags") && (hasMember(folio.Members, "_folio_order") || hasMember(folio.Members, "_flags_1"))
}

// hasMember reports whether members have one called name, looking into
// anonymous structs and unions as C does.
func hasMember(members []btf.Member, name string) bool {
	for _, m := range members {
		if m.Name == name {
			return true
		}
		if m.Name != "" {
			continue
		}
		switch t := m.Type.(type) {
		case *btf.Struct:
			if hasMember(t.Members, name) {
				return true
			}
		case *btf.Union:
			if hasMember(t.Members, name) {
				return true
			}
		}
	}
	return false
}
