package replay

import (
	"github.com/snapbpf/snapbpf/internal/trace"
)

// step is one touch of a replay.
type step struct {
	page  uint64
	write bool
	// gapNs is the guest's compute before this touch, scaled: the time
	// from the end of the previous touch to this one.
	gapNs int64
}

// schedule is a trace turned into what a replay does.
type schedule struct {
	steps []step
	// tailNs is the compute after the last touch until the result.
	tailNs int64
	// computeNs is the sum of all gaps and the tail.
	computeNs int64
}

// newSchedule derives the compute gaps of a trace and scales them. The
// recorded time between two touches is the service of the first (a fault
// served one page at a time from a cold file: the trace's modelled stall)
// plus the guest computing; only the computing is kept. Touches before
// the resume (the VMM loading state) happen at once when the replay starts.
func newSchedule(t *trace.Trace, scale float64) schedule {
	var s schedule
	var prevEnd int64 // recorded time the previous touch was served
	for _, e := range t.Events {
		gap := int64(0)
		if e.TimeNs > prevEnd {
			gap = int64(float64(e.TimeNs-prevEnd) * scale)
		}
		s.steps = append(s.steps, step{page: e.Page, write: e.Op != trace.OpRead, gapNs: gap})
		s.computeNs += gap
		prevEnd = max(e.TimeNs, 0) + int64(e.StallNs)
	}
	if end := t.Meta.ResumeToResultNs; end > prevEnd {
		s.tailNs = int64(float64(end-prevEnd) * scale)
	}
	s.computeNs += s.tailNs
	return s
}

// pagesOf returns the distinct pages a trace touches, in first-touch order.
func pagesOf(t *trace.Trace) []uint64 {
	var out []uint64
	for _, e := range t.Events {
		if e.Op != trace.OpUpgrade {
			out = append(out, e.Page)
		}
	}
	return out
}
