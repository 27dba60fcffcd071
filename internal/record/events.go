package record

import "github.com/snapbpf/snapbpf/internal/trace"

// buildStats are what turning fault records into events counted.
type buildStats struct {
	faults      uint64 // fault records of the process
	guestFaults uint64 // of them, on guest RAM
	late        uint64 // touches after the end, flagged trace.FlagLate
}

// buildEvents turns a process's fault records into first-touch events.
// Times are made relative to resumeNs; touches after endNs (the result)
// are flagged FlagLate. pre are pages mapped before tracing began, at
// attachNs.
func buildEvents(raws []rawFault, g guestRAM, pre []uint64, attachNs, resumeNs, endNs uint64) ([]trace.Event, buildStats) {
	var st buildStats
	var events []trace.Event
	first := make(map[uint64]trace.Op)
	for _, p := range pre {
		first[p] = trace.OpRead
		events = append(events, trace.Event{TimeNs: int64(attachNs) - int64(resumeNs), Page: p, Op: trace.OpRead, Flags: trace.FlagPreexisting})
	}
	for _, r := range raws {
		st.faults++
		page, ok := g.page(r.Addr)
		if !ok {
			continue
		}
		st.guestFaults++
		op, seen := first[page]
		var e trace.Event
		switch {
		case !seen:
			e = trace.Event{Page: page, Op: trace.OpRead}
			if r.Code&pfWrite != 0 {
				e.Op = trace.OpWrite
			}
		case op == trace.OpRead && r.Code&pfWrite != 0:
			e = trace.Event{Page: page, Op: trace.OpUpgrade}
		default:
			continue // a repeated fault: the page was already there
		}
		e.TimeNs = int64(r.TimeNs) - int64(resumeNs)
		if r.Kind == faultKernel {
			e.Flags |= trace.FlagKernel
		}
		if r.TimeNs > endNs {
			e.Flags |= trace.FlagLate
			st.late++
		}
		first[page] = e.Op
		events = append(events, e)
	}
	return events, st
}
