// Package catalog names every function snapbpf can snapshot: the agent's
// Go functions by their name ("json") and a language runtime's functions
// by runtime and name ("python:json"). The two sets share names (json,
// gzip, image, linpack), so whatever lists functions of both kinds (the
// bench, the demo) names them through here.
package catalog

import (
	"fmt"
	"strings"

	"github.com/snapbpf/snapbpf/internal/functions"
	"github.com/snapbpf/snapbpf/internal/funcvm"
	"github.com/snapbpf/snapbpf/internal/pyfn"
)

// Function is one function a snapshot can be taken of.
type Function struct {
	// Name is what the agent or the runtime's runner calls it.
	Name string
	// Runtime is the language runtime it runs in (snapshot.Manifest's
	// Runtime); empty for the agent's Go functions.
	Runtime string
}

// sep separates a runtime from a function's name in a reference.
const sep = ":"

// Ref is how f is named on the command line and in bench results: "json"
// for a Go function, "python:json" for a runtime's.
func (f Function) Ref() string {
	if f.Runtime == "" {
		return f.Name
	}
	return f.Runtime + sep + f.Name
}

func (f Function) String() string { return f.Ref() }

// Parse finds the function ref names: "RUNTIME:NAME", or a bare NAME,
// which is the Go function of that name or, when no Go function has it,
// the runtime function ("pyaes" is python:pyaes).
func Parse(ref string) (Function, error) {
	if rt, name, ok := strings.Cut(ref, sep); ok {
		if !pyfn.IsRuntime(rt) {
			return Function{}, fmt.Errorf("function %q: unknown runtime %q (have: %s)", ref, rt, strings.Join(pyfn.Runtimes(), ", "))
		}
		if !pyfn.Has(name) {
			return Function{}, fmt.Errorf("function %q: no %s function %q (have: %s)", ref, rt, name, strings.Join(pyfn.Names(), ", "))
		}
		if !pyfn.RunsIn(name, rt) {
			own := pyfn.RuntimeOf(name)
			return Function{}, fmt.Errorf("function %q: %s runs in the %s runtime: %s%s%s", ref, name, own, own, sep, name)
		}
		return Function{Name: name, Runtime: rt}, nil
	}
	if _, err := functions.Lookup(ref); err == nil {
		return Function{Name: ref}, nil
	}
	if pyfn.Has(ref) {
		return Function{Name: ref, Runtime: pyfn.RuntimeOf(ref)}, nil
	}
	return Function{}, fmt.Errorf("unknown function %q (Go functions: %s; %s functions: %s, named %s%sNAME where a Go function has the name)",
		ref, strings.Join(functions.Names(), ", "), pyfn.Runtime, strings.Join(pyfn.Names(), ", "), pyfn.Runtime, sep)
}

// Go lists the agent's Go functions, sorted by name.
func Go() []Function {
	var out []Function
	for _, n := range functions.Names() {
		out = append(out, Function{Name: n})
	}
	return out
}

// Python lists the Python runtimes' functions, sorted by name, each in
// the least runtime it runs in (python; python-torch for the torch
// functions, whose image is optional).
func Python() []Function {
	var out []Function
	for _, n := range pyfn.Names() {
		out = append(out, Function{Name: n, Runtime: pyfn.RuntimeOf(n)})
	}
	return out
}

// Refs are the references of fns.
func Refs(fns []Function) []string {
	out := make([]string, len(fns))
	for i, f := range fns {
		out[i] = f.Ref()
	}
	return out
}

// DataMiB is the data size f runs with when dataMiB is 0 (a Go function's
// default; runtime functions take their input with the request and have
// none).
func (f Function) DataMiB(dataMiB int) int {
	if f.Runtime != "" {
		return 0
	}
	if dataMiB > 0 {
		return dataMiB
	}
	s, err := functions.Lookup(f.Name)
	if err != nil {
		return 0
	}
	return s.DefaultDataMiB
}

// GuestMiB is the guest RAM a snapshot of f gets by default, with dataMiB
// of data (0: the function's default).
func (f Function) GuestMiB(dataMiB int) int {
	if f.Runtime != "" {
		return pyfn.GuestMiB(f.Name)
	}
	return functions.MinGuestMiB(f.Name, functions.Options{DataMiB: dataMiB})
}

// Create fills in what a snapshot of f needs in o: the function, its
// runtime, the warm-up input a runtime function is called with before the
// snapshot (its input shape 1), the guest RAM when o has none, and no
// data size for a runtime function.
func (f Function) Create(o funcvm.CreateOptions) (funcvm.CreateOptions, error) {
	o.Function, o.Runtime = f.Name, f.Runtime
	if o.MemMiB == 0 {
		o.MemMiB = f.GuestMiB(o.DataMiB)
	}
	if f.Runtime == "" {
		return o, nil
	}
	if o.DataMiB != 0 {
		return o, fmt.Errorf("function %s: a data size (%d MiB) applies to Go functions only; %s functions take their input with each request", f.Ref(), o.DataMiB, f.Runtime)
	}
	p, err := pyfn.Input(f.Name, 1)
	if err != nil {
		return o, err
	}
	o.Payload = p
	return o, nil
}

// FileName is f's reference as a file name ("python-json"): where the
// bench and the demo keep f's snapshot.
func (f Function) FileName() string { return strings.ReplaceAll(f.Ref(), sep, "-") }
