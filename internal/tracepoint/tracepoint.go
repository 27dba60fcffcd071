// Package tracepoint attaches BPF programs to the kernel's tracepoints as
// raw tracepoints, and finds out which tracepoints exist and what arguments
// they pass, from the kernel's BTF alone.
//
// Classic tracepoint programs (link.Tracepoint) look their event's ID up in
// tracefs, which a fresh host often has not mounted. A raw tracepoint is
// attached by name through bpf(2) (BPF_RAW_TRACEPOINT_OPEN) and its program
// receives the tracepoint's own arguments, whose types the kernel's BTF
// describes as the typedef btf_trace_<name>: neither needs a mount.
package tracepoint

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"

	"github.com/snapbpf/snapbpf/internal/procfs"
)

// Mechanism says in one line how the programs are attached, for reports.
const Mechanism = "raw tracepoints by name through bpf(2), arguments read with CO-RE; no tracefs or debugfs needed"

// ErrNotExist is wrapped by errors about a tracepoint the kernel lacks.
var ErrNotExist = errors.New("no such tracepoint")

// Check reports whether the kernel whose BTF is spec has tracepoint name
// with the given arguments, each written as Param formats it ("*folio",
// "int8", "uint8"...). The error wraps ErrNotExist if the tracepoint is
// missing; a tracepoint whose arguments differ is an error of its own, so
// a program never reads arguments laid out otherwise than it expects.
func Check(spec *btf.Spec, name string, params ...string) error {
	var td *btf.Typedef
	if err := spec.TypeByName("btf_trace_"+name, &td); err != nil {
		if errors.Is(err, btf.ErrNotFound) {
			return fmt.Errorf("tracepoint %s: %w", name, ErrNotExist)
		}
		return fmt.Errorf("tracepoint %s: %w", name, err)
	}
	ptr, ok := td.Type.(*btf.Pointer)
	if !ok {
		return fmt.Errorf("tracepoint %s: btf_trace_%s is %v, not a function pointer", name, name, td.Type)
	}
	proto, ok := ptr.Target.(*btf.FuncProto)
	if !ok {
		return fmt.Errorf("tracepoint %s: btf_trace_%s points to %v, not a function", name, name, ptr.Target)
	}
	// The first parameter is the tracepoint's private data, not an argument.
	if len(proto.Params) == 0 {
		return fmt.Errorf("tracepoint %s: prototype without parameters", name)
	}
	got := make([]string, 0, len(proto.Params)-1)
	for _, p := range proto.Params[1:] {
		got = append(got, Param(p.Type))
	}
	if !slices.Equal(got, params) {
		return fmt.Errorf("tracepoint %s passes (%s), the program expects (%s)", name, strings.Join(got, ", "), strings.Join(params, ", "))
	}
	return nil
}

// Param describes an argument type the way Check compares them: a pointer
// is "*" and the name of what it points to ("*void" for void *), an integer
// "int" or "uint" and its size in bytes.
func Param(t btf.Type) string {
	switch t := btf.UnderlyingType(t).(type) {
	case *btf.Pointer:
		target := btf.UnderlyingType(t.Target)
		if _, ok := target.(*btf.Void); ok {
			return "*void"
		}
		if name := target.TypeName(); name != "" {
			return "*" + name
		}
		return "*" + fmt.Sprint(target)
	case *btf.Int:
		if t.Encoding&btf.Signed != 0 {
			return fmt.Sprintf("int%d", t.Size)
		}
		return fmt.Sprintf("uint%d", t.Size)
	}
	return fmt.Sprint(t)
}

// Attach attaches prog, a raw tracepoint program, to tracepoint name.
// The error wraps ErrNotExist if the kernel has no such tracepoint.
func Attach(name string, prog *ebpf.Program) (link.Link, error) {
	l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: name, Program: prog})
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("attach raw tracepoint %s: %w (%w)", name, ErrNotExist, err)
	}
	if err != nil {
		return nil, fmt.Errorf("attach raw tracepoint %s: %w", name, err)
	}
	return l, nil
}

// Mounts lists where tracefs and debugfs are mounted in this process's
// mount namespace. Nothing here needs them; check reports them.
func Mounts() (tracefs, debugfs []string, err error) {
	ms, err := procfs.Mounts()
	if err != nil {
		return nil, nil, err
	}
	tracefs, debugfs = split(ms)
	return tracefs, debugfs, nil
}

// split picks the tracefs and debugfs mount points out of ms.
func split(ms []procfs.Mount) (tracefs, debugfs []string) {
	for _, m := range ms {
		switch m.FSType {
		case "tracefs":
			tracefs = append(tracefs, m.Point)
		case "debugfs":
			debugfs = append(debugfs, m.Point)
		}
	}
	return tracefs, debugfs
}
