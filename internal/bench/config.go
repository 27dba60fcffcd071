package bench

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/snapbpf/snapbpf/internal/catalog"
	"github.com/snapbpf/snapbpf/internal/guest"
	"github.com/snapbpf/snapbpf/internal/progress"
	"github.com/snapbpf/snapbpf/internal/pyfn"
	"github.com/snapbpf/snapbpf/internal/vmm/qemu"
)

// Config describes a bench.
type Config struct {
	// Functions are catalog references: the agent's Go functions by
	// name (json), a runtime's as python:json.
	Functions   []string `json:"functions"`
	Policies    []string `json:"policies"`    // of Policies()
	Concurrency []int    `json:"concurrency"` // VMs restored at once
	// ReplayConcurrency, if set, are ExpReplay's numbers of VMs instead
	// of Concurrency: many replayed VMs cost little, many real ones under
	// TCG minutes.
	ReplayConcurrency []int    `json:"replay_concurrency,omitempty"`
	Runs              int      `json:"runs"`
	Experiments       []string `json:"experiments"`
	// Input is the input every measured invocation gets, and the one the
	// working set of policy snapbpf is recorded on. OtherInput (0: Input+1)
	// is the one the working set of PolicySnapBPFOther is recorded on.
	Input      uint64 `json:"input"`
	OtherInput uint64 `json:"other_input,omitempty"`
	// DataMiB overrides every function's data size; 0 keeps each
	// function's default.
	DataMiB int `json:"data_mib,omitempty"`
	// ScatterFractions are ExpScatter's fractions of the trace's non-zero
	// pages scattered across the memory file.
	ScatterFractions []float64 `json:"scatter_fractions,omitempty"`
	// Notes are printed in the report (e.g. what else ran on the machine).
	Notes []string `json:"notes,omitempty"`

	// Out receives results.json, report.md and the plots.
	Out string `json:"-"`
	// SnapshotDir holds the bench's snapshots, reused across runs while
	// they match the image and settings.
	SnapshotDir string `json:"-"`
	// Image is the guest image the Go functions' snapshots are created
	// from, and Images by runtime those of a runtime's functions.
	Image  *guest.Image            `json:"-"`
	Images map[string]*guest.Image `json:"-"`
	// Driver starts the VMs; nil is a qemu.Driver with its defaults.
	Driver *qemu.Driver `json:"-"`
	// Log receives diagnostics; nil discards them.
	Log *slog.Logger `json:"-"`
	// Progress shows the cells as they are measured; nil shows nothing.
	Progress progress.Meter `json:"-"`
}

// Reduced is the set `make bench` runs: four functions of different
// shapes (a document parser, a model, an allocator, and python's pyaes:
// an interpreter with its libraries and heap), three runs, N up to 4.
func Reduced() Config {
	return Config{
		Functions:   []string{"json", "bert", "alloc", "python:pyaes"},
		Policies:    Policies(),
		Concurrency: []int{1, 2, 4},
		Runs:        3,
		Experiments: Experiments(),
		Input:       1,
		OtherInput:  2,
		// Fraction 0 is the unfragmented baseline, 1 every page moved.
		ScatterFractions: []float64{0, 0.5, 1},
	}
}

// Full is every function, Go and python, five runs, N up to 8. The torch
// functions stay out: their image is optional (an 18-minute build here)
// and each guest takes 1 GiB; --functions python-torch:rnn adds them.
func Full() Config {
	c := Reduced()
	fns := catalog.Go()
	for _, f := range catalog.Python() {
		if f.Runtime == pyfn.Runtime {
			fns = append(fns, f)
		}
	}
	c.Functions = catalog.Refs(fns)
	c.Concurrency = []int{1, 2, 4, 8}
	c.Runs = 5
	c.ScatterFractions = []float64{0, 0.25, 0.5, 1}
	return c
}

// Validate checks the settings before anything starts.
func (c Config) Validate() error {
	var errs []error
	if len(c.Functions) == 0 {
		errs = append(errs, errors.New("no functions"))
	}
	for _, fn := range c.Functions {
		if _, err := catalog.Parse(fn); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range c.Policies {
		if !slices.Contains(Policies(), p) {
			errs = append(errs, fmt.Errorf("unknown policy %q: want some of %v", p, Policies()))
		}
	}
	for _, e := range c.Experiments {
		if !slices.Contains(Experiments(), e) {
			errs = append(errs, fmt.Errorf("unknown experiment %q: want some of %v", e, Experiments()))
		}
	}
	for _, n := range append(slices.Clone(c.Concurrency), c.ReplayConcurrency...) {
		if n < 1 {
			errs = append(errs, fmt.Errorf("concurrency %d: must be at least 1", n))
		}
	}
	for _, f := range c.ScatterFractions {
		if f < 0 || f > 1 {
			errs = append(errs, fmt.Errorf("scatter fraction %g: must be within 0..1", f))
		}
	}
	if c.Runs < 1 {
		errs = append(errs, fmt.Errorf("runs %d: must be at least 1", c.Runs))
	}
	if c.DataMiB < 0 {
		errs = append(errs, fmt.Errorf("data size %d MiB: must not be negative", c.DataMiB))
	}
	if c.Out == "" {
		errs = append(errs, errors.New("no output directory"))
	}
	return errors.Join(errs...)
}

// dataMiB is the data size function fn runs with under c (0 for a
// runtime's functions, whose input comes with the request).
func (c Config) dataMiB(fn string) int {
	f, err := catalog.Parse(fn)
	if err != nil {
		return 0
	}
	return f.DataMiB(c.DataMiB)
}

// Runtimes are the language runtimes c's functions run in: the images
// besides Image a bench of c needs.
func (c Config) Runtimes() []string {
	var out []string
	for _, fn := range c.Functions {
		if f, err := catalog.Parse(fn); err == nil && f.Runtime != "" && !slices.Contains(out, f.Runtime) {
			out = append(out, f.Runtime)
		}
	}
	return out
}

// image is the guest image function f's snapshots are created from.
func (c Config) image(f catalog.Function) (*guest.Image, error) {
	if f.Runtime == "" {
		return c.Image, nil
	}
	if img := c.Images[f.Runtime]; img != nil {
		return img, nil
	}
	return nil, fmt.Errorf("function %s: no %s guest image given (snapbpf image build --runtime %s)", f.Ref(), f.Runtime, f.Runtime)
}

// replayConcurrency are ExpReplay's numbers of VMs.
func (c Config) replayConcurrency() []int {
	if len(c.ReplayConcurrency) > 0 {
		return c.ReplayConcurrency
	}
	return c.Concurrency
}

func (c Config) otherInput() uint64 {
	if c.OtherInput == 0 {
		return c.Input + 1
	}
	return c.OtherInput
}
