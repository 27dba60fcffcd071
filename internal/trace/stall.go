package trace

// StallModel is what serving a fault costs on the recording host, by kind
// of fault, measured right after the recording on the same memory file.
// A trace's gaps between touches include the recording's stalls; replay
// subtracts them to get the guest's compute between touches.
type StallModel struct {
	// MajorNs reads a data page from storage (cold file, no readahead).
	MajorNs int64 `json:"major_ns"`
	// HoleNs reads a hole page (a zeroed page-cache page, no I/O).
	HoleNs int64 `json:"hole_ns"`
	// CopyNs makes a private copy of a mapped page on the first write.
	CopyNs int64 `json:"copy_ns"`
	// Samples is how many touches of each kind were timed.
	Samples int `json:"samples"`
}

// Estimate is the modelled service time of e in the recording.
func (m StallModel) Estimate(e Event) int64 {
	if e.Flags&FlagPreexisting != 0 {
		return 0
	}
	if e.Op == OpUpgrade {
		return m.CopyNs
	}
	ns := m.MajorNs
	if e.Flags&FlagHole != 0 {
		ns = m.HoleNs
	}
	if e.Op == OpWrite {
		ns += m.CopyNs
	}
	return ns
}
