// Package functions holds the serverless function workloads that run inside
// a microVM guest and, with the same code, on the host to verify results.
//
// A function's Init runs once before the VM is snapshotted and builds its
// data (model weights, documents, images) from a fixed seed; Invoke runs
// after each restore and reads an input-dependent part of that data, so
// different inputs touch overlapping but different pages. Everything is
// deterministic and bit-identical between host and guest for the same
// binary: see mathf.go for the floating-point rules.
package functions

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
)

// MiB is one mebibyte.
const MiB = 1 << 20

// Options tunes a function's size; zero values mean the function's default.
type Options struct {
	// DataMiB is the size of the data or model the function loads at init
	// (weights for rnn/bert, document for gzip, ...; for alloc, the memory
	// each invoke allocates).
	DataMiB int
}

// Function is a serverless function: Init runs once before the VM
// snapshot, Invoke after each restore. Invoke does not modify the init
// data, so any number of invokes, in any order, give the same results. A
// Function is not safe for concurrent use.
type Function interface {
	Name() string
	Init(opts Options) error
	Invoke(input uint64) (Result, error)
}

// Result describes one invocation.
type Result struct {
	// Checksum is a hex digest of the output (SHA-256 over a fast 256-bit
	// streaming hash, see digest.go), identical on host and guest for the
	// same (opts, input).
	Checksum string
	// OutputBytes is the size of the output the checksum covers.
	OutputBytes int64
	// TouchedBytes approximates the bytes of init data the invoke read.
	TouchedBytes int64
	// AllocatedBytes is the heap the invoke allocated, measured by the Go
	// runtime (MemStats.TotalAlloc).
	AllocatedBytes int64
}

// Spec describes a function and its defaults.
type Spec struct {
	Name string
	// Summary says in a line what one invoke does.
	Summary string
	// DefaultDataMiB is the DataMiB used when Options.DataMiB is zero.
	DefaultDataMiB int
	// memory estimates the live init data and the fresh memory of one
	// invoke, in MiB, at dataMiB.
	memory  func(dataMiB int) (initMiB, invokeMiB int)
	newImpl func() impl
}

// impl is what each function implements; the exported wrapper adds
// defaults, the post-Init GC and allocation accounting.
type impl interface {
	init(dataMiB int) error
	invoke(input uint64) (Result, error)
}

// GuestOverheadMiB is what the guest kernel, the agent and the Go runtime
// need besides the function's data.
const GuestOverheadMiB = 100

// Memory estimates, in MiB, the init data that stays live (and so is in
// the snapshot) and the fresh memory one invoke allocates.
func (s Spec) Memory(opts Options) (initMiB, invokeMiB int) {
	return s.memory(s.dataMiB(opts))
}

// GuestMiB suggests guest RAM in MiB for opts: GuestOverheadMiB, the init
// data plus an eighth for runtime metadata and fragmentation, and twice one
// invoke's allocations, because with GOGC=100 the garbage of the previous
// invoke can still be uncollected when the next one allocates. Rounded up
// to 32 MiB.
func (s Spec) GuestMiB(opts Options) int {
	data, inv := s.Memory(opts)
	need := GuestOverheadMiB + data + data/8 + 2*inv
	return (need + 31) / 32 * 32
}

func (s Spec) dataMiB(opts Options) int {
	if opts.DataMiB > 0 {
		return opts.DataMiB
	}
	return s.DefaultDataMiB
}

var registry = map[string]Spec{}

func register(s Spec) {
	if _, dup := registry[s.Name]; dup {
		panic("functions: duplicate " + s.Name)
	}
	registry[s.Name] = s
}

// Names returns the function names, sorted.
func Names() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Specs returns every function's Spec, sorted by name.
func Specs() []Spec {
	var out []Spec
	for _, n := range Names() {
		out = append(out, registry[n])
	}
	return out
}

// Lookup returns the Spec of the named function.
func Lookup(name string) (Spec, error) {
	s, ok := registry[name]
	if !ok {
		return Spec{}, fmt.Errorf("unknown function %q (valid: %s)", name, strings.Join(Names(), ", "))
	}
	return s, nil
}

// MinGuestMiB suggests the guest RAM in MiB for running name with opts, or
// 0 if name is unknown. See Spec.GuestMiB.
func MinGuestMiB(name string, opts Options) int {
	s, err := Lookup(name)
	if err != nil {
		return 0
	}
	return s.GuestMiB(opts)
}

// New returns a fresh, uninitialised instance of the named function.
func New(name string) (Function, error) {
	s, err := Lookup(name)
	if err != nil {
		return nil, err
	}
	return &function{spec: s, impl: s.newImpl()}, nil
}

type function struct {
	spec   Spec
	impl   impl
	inited bool
}

func (f *function) Name() string { return f.spec.Name }

func (f *function) Init(opts Options) error {
	if f.inited {
		return fmt.Errorf("%s: already initialised", f.spec.Name)
	}
	if opts.DataMiB < 0 {
		return fmt.Errorf("%s: negative DataMiB %d", f.spec.Name, opts.DataMiB)
	}
	if err := f.impl.init(f.spec.dataMiB(opts)); err != nil {
		return fmt.Errorf("init %s: %w", f.spec.Name, err)
	}
	f.inited = true
	// Collect Init's garbage and hand freed pages back to the kernel so
	// that the snapshot holds the live data only. FreeOSMemory runs a full
	// GC itself before scavenging.
	debug.FreeOSMemory()
	return nil
}

var errNotInitialised = errors.New("not initialised")

func (f *function) Invoke(input uint64) (Result, error) {
	if !f.inited {
		return Result{}, fmt.Errorf("invoke %s: %w", f.spec.Name, errNotInitialised)
	}
	before := heapAllocs()
	res, err := f.impl.invoke(input)
	if err != nil {
		return Result{}, fmt.Errorf("invoke %s(%d): %w", f.spec.Name, input, err)
	}
	res.AllocatedBytes = int64(heapAllocs() - before)
	return res, nil
}

// heapAllocs reads the runtime's cumulative heap allocation counter.
// runtime/metrics would avoid the brief stop-the-world, but it only counts
// small objects when their span is refilled, so it misses most of a small
// invoke's allocations; ReadMemStats flushes the per-P caches first.
func heapAllocs() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.TotalAlloc
}

// Input seeds a function accepts: MinInput to MaxInput. Inputs travel to
// the guest agent as JSON numbers: 0 is what an omitted input reads as, so
// it cannot be told from none, and above 2^53-1 a number is not exact in
// most JSON readers (scripts reading --json results among them).
const (
	MinInput = 1
	MaxInput = 1<<53 - 1
)

// CheckInput refuses an input seed outside MinInput..MaxInput.
func CheckInput(input uint64) error {
	if input < MinInput || input > MaxInput {
		return fmt.Errorf("input %d is not a valid seed: seeds are %d to %d", input, uint64(MinInput), uint64(MaxInput))
	}
	return nil
}
