package capture

import (
	"fmt"
	"os"
	"slices"

	"github.com/cilium/ebpf/btf"
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
// beyond the page-cache insertion tracepoint it needs.
type KernelSupport struct {
	// ReadaheadTracepoint: readahead:page_cache_ra_order exists, so a
	// recording can show that it holds no readahead.
	ReadaheadTracepoint bool
	// FolioOrder: the insertion tracepoint reports a folio's order, so a
	// large folio counts as all its pages.
	FolioOrder bool
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
	var ks KernelSupport
	_, err := spec.AnyTypeByName("trace_event_raw_page_cache_ra_order")
	ks.ReadaheadTracepoint = err == nil
	if t, err := spec.AnyTypeByName("trace_event_raw_mm_filemap_op_page_cache"); err == nil {
		if s, ok := t.(*btf.Struct); ok {
			ks.FolioOrder = slices.ContainsFunc(s.Members, func(m btf.Member) bool { return m.Name == "order" })
		}
	}
	return ks
}
