// Package trace is the page-access trace of a restored microVM and its file
// format: every first touch of a guest page after a restore, with its time
// since the guest resumed, whether it was a read or a write, and how long
// the host took to serve it; reading, writing, validating and summarising
// a trace.
//
// Traces are recorded by record.Trace from a real VM restored with the
// memory file cold and readahead off (policy nora): an eBPF program on the
// x86 page fault tracepoints, filtered on the VMM's process, sees every
// fault on guest RAM (holes of the memory file included, which a page-cache
// capture cannot report). This package depends on none of that: the replay
// harness (package replay) reads a trace and touches the same pages with
// the same compute gaps under each restore policy.
package trace

import (
	"fmt"
	"time"

	"github.com/snapbpf/snapbpf/internal/wset"
)

// Op is what a touch did.
type Op uint8

// Operations.
const (
	// OpRead is a first touch that read the page.
	OpRead Op = 1
	// OpWrite is a first touch that wrote the page.
	OpWrite Op = 2
	// OpUpgrade is a later write to a page whose first touch was an OpRead: in
	// a private file mapping, the moment the guest's private copy is made.
	OpUpgrade Op = 3
)

func (o Op) String() string {
	switch o {
	case OpRead:
		return "read"
	case OpWrite:
		return "write"
	case OpUpgrade:
		return "upgrade"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Event flags.
const (
	// FlagHole: the page was a hole of the memory file when recorded.
	FlagHole = 1 << 0
	// FlagMajor: serving the recorded fault read the page from storage
	// (a data page that was not cached).
	FlagMajor = 1 << 1
	// FlagPreexisting: the page was already mapped when tracing began
	// (the VMM touched it while starting); its time is the start of tracing.
	FlagPreexisting = 1 << 2
	// FlagKernel: the fault came from the kernel on the VMM's behalf (a
	// system call reading or writing guest memory).
	FlagKernel = 1 << 3
	// FlagLate: the touch came after the invocation's result reached the
	// host (the guest answering, the VMM being measured and stopped); not
	// part of the invocation, kept because the VMM's fault counters see it.
	FlagLate = 1 << 4

	knownFlags = FlagHole | FlagMajor | FlagPreexisting | FlagKernel | FlagLate
)

// Event is one touch.
type Event struct {
	// TimeNs is when the fault began, in nanoseconds since the guest was
	// resumed; negative for touches before (while the state loaded).
	TimeNs int64
	// Page is the page index in the memory file (= guest physical page).
	Page  uint64
	Op    Op
	Flags uint8
	// StallNs is how long the recording host took to serve the fault, as
	// modelled by Meta.Stall: the part of the gap to the next touch that
	// was waiting, not computing.
	StallNs uint32
}

// Meta describes how and from what a trace was recorded.
type Meta struct {
	// Mem identifies the memory file (snapshot ID, size, fingerprint).
	Mem      wset.Identity `json:"mem"`
	Function string        `json:"function"`
	Input    uint64        `json:"input"`
	Created  time.Time     `json:"created"`
	Source   string        `json:"source,omitempty"`
	Accel    string        `json:"accel,omitempty"`

	// Times of the recorded run, host clock unless said otherwise.
	VMMStartNs       int64 `json:"vmm_start_ns"`
	StateLoadNs      int64 `json:"state_load_ns"`
	ResumeToResultNs int64 `json:"resume_to_result_ns"`
	// GuestFnNs is the function's own time on the guest clock.
	GuestFnNs int64 `json:"guest_fn_ns"`
	// HostFnNs is the same invocation run natively on the host (median of
	// a few): against GuestFnNs less the stalls, the VM's compute slowdown.
	HostFnNs int64 `json:"host_fn_ns"`

	// Recording facts, to judge a trace by.
	Faults      uint64 `json:"faults"`           // fault records of the VMM, all addresses
	GuestFaults uint64 `json:"guest_faults"`     // of them, on guest RAM
	LateFaults  uint64 `json:"late_faults"`      // first touches after the result, dropped
	LostRecords uint64 `json:"lost_records"`     // the ring buffer was full
	MajorFaults int64  `json:"vmm_major_faults"` // of the VMM, from the kernel's counters
	// Stall is the fault service time model behind the events' StallNs.
	Stall           StallModel `json:"stall_model"`
	CapturedPages   int64      `json:"captured_pages"`    // page-cache insertions seen by capture (-1: not run)
	CapturedHoles   int64      `json:"captured_holes"`    // of them, holes
	ReadaheadWindow bool       `json:"readahead_windows"` // capture saw readahead on the memory file
}

// Trace is a recorded page-access trace.
type Trace struct {
	// Version is the format version the trace was read with.
	Version int
	Meta    Meta
	// Events are in time order. Each page has at most one OpRead or OpWrite
	// event and, after an OpRead, at most one OpUpgrade.
	Events []Event
}

// Pages is the number of distinct pages touched.
func (t *Trace) Pages() int {
	n := 0
	for _, e := range t.Events {
		if e.Op != OpUpgrade {
			n++
		}
	}
	return n
}

// Summary is a trace in numbers.
type Summary struct {
	Function     string  `json:"function"`
	Input        uint64  `json:"input"`
	Events       int     `json:"events"`
	Pages        int     `json:"pages"`
	ReadPages    int     `json:"read_pages"`
	WritePages   int     `json:"write_pages"`
	Upgrades     int     `json:"upgrades"`
	HolePages    int     `json:"hole_pages"`
	MajorPages   int     `json:"major_pages"`
	Preexisting  int     `json:"preexisting_pages"`
	LatePages    int     `json:"late_pages"`
	DurationMs   float64 `json:"duration_ms"`
	StallMs      float64 `json:"stall_ms"`
	GuestFnMs    float64 `json:"guest_fn_ms"`
	HostFnMs     float64 `json:"host_fn_ms"`
	Slowdown     float64 `json:"slowdown"`
	LostRecords  uint64  `json:"lost_records"`
	CapturedData int64   `json:"captured_pages"`
}

// Summary counts the trace.
func (t *Trace) Summary() Summary {
	s := Summary{
		Function: t.Meta.Function, Input: t.Meta.Input, Events: len(t.Events),
		GuestFnMs: ms(t.Meta.GuestFnNs), HostFnMs: ms(t.Meta.HostFnNs), Slowdown: t.Slowdown(),
		LostRecords: t.Meta.LostRecords, CapturedData: t.Meta.CapturedPages,
	}
	var stall int64
	for _, e := range t.Events {
		switch e.Op {
		case OpRead:
			s.ReadPages++
		case OpWrite:
			s.WritePages++
		case OpUpgrade:
			s.Upgrades++
		}
		if e.Op != OpUpgrade {
			if e.Flags&FlagHole != 0 {
				s.HolePages++
			}
			if e.Flags&FlagMajor != 0 {
				s.MajorPages++
			}
			if e.Flags&FlagPreexisting != 0 {
				s.Preexisting++
			}
			if e.Flags&FlagLate != 0 {
				s.LatePages++
			}
		}
		stall += int64(e.StallNs)
	}
	s.Pages = s.ReadPages + s.WritePages
	if n := len(t.Events); n > 0 {
		s.DurationMs = ms(t.Events[n-1].TimeNs - min(t.Events[0].TimeNs, 0))
	}
	s.StallMs = ms(stall)
	return s
}

// WithoutLate returns the trace without its touches after the result.
func (t *Trace) WithoutLate() *Trace {
	out := &Trace{Version: t.Version, Meta: t.Meta}
	for _, e := range t.Events {
		if e.Flags&FlagLate == 0 {
			out.Events = append(out.Events, e)
		}
	}
	return out
}

// StallNs is the recorded service time of the invocation's touches.
func (t *Trace) StallNs() int64 {
	var n int64
	for _, e := range t.Events {
		if e.TimeNs >= 0 && e.Flags&FlagLate == 0 {
			n += int64(e.StallNs)
		}
	}
	return n
}

// Slowdown is how much slower the recording VM computed than the host:
// the function's guest time less the time its faults waited, over the
// host's time for the same invocation (20 to 40 under TCG). 0 when the
// trace does not know.
func (t *Trace) Slowdown() float64 {
	if t.Meta.HostFnNs <= 0 || t.Meta.GuestFnNs <= 0 {
		return 0
	}
	compute := t.Meta.GuestFnNs - t.StallNs()
	if compute < t.Meta.GuestFnNs/10 {
		// Stalls cannot be nearly all of the function's time unless the
		// trace's stall times are wrong; do not trust the difference.
		compute = t.Meta.GuestFnNs
	}
	return max(1, float64(compute)/float64(t.Meta.HostFnNs))
}

func ms(ns int64) float64 { return float64(ns) / 1e6 }
