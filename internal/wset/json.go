package wset

import (
	"encoding/json"
	"time"

	"github.com/snapbpf/snapbpf/internal/pages"
)

// Summary is what `snapbpf ws show --json` prints.
type Summary struct {
	Version     int       `json:"version"`
	PageSize    int       `json:"page_size"`
	Mem         Identity  `json:"mem"`
	Created     time.Time `json:"created,omitzero"`
	Source      string    `json:"source,omitempty"`
	Pages       int64     `json:"pages"`
	Bytes       int64     `json:"bytes"`
	ExtentCount int       `json:"extent_count"`
	// Extents are [first_page, n_pages] in first-touch order.
	Extents []pages.Extent `json:"extents"`
	// ZeroPages and ZeroExtents are the touched holes (Set.Zero).
	ZeroPages   int64          `json:"zero_pages"`
	ZeroExtents []pages.Extent `json:"zero_extents"`
	// Recordings is how many recordings (inputs) the set unites, and
	// Counts how many pages each number of them touched, the most shared
	// first; a set without counts is one recording.
	Recordings int          `json:"recordings"`
	Counts     []CountPages `json:"counts"`
}

// Summary describes the set for people and scripts.
func (s *Set) Summary() Summary {
	// [] rather than null for scripts.
	ext, zero := s.Extents, s.Zero
	if ext == nil {
		ext = []pages.Extent{}
	}
	if zero == nil {
		zero = []pages.Extent{}
	}
	return Summary{
		Version:     s.Version,
		PageSize:    pages.Size,
		Mem:         s.Mem,
		Created:     s.Created,
		Source:      s.Source,
		Pages:       s.Pages(),
		Bytes:       s.Bytes(),
		ExtentCount: len(s.Extents),
		Extents:     ext,
		ZeroPages:   s.ZeroPages(),
		ZeroExtents: zero,
		Recordings:  s.Recordings(),
		Counts:      s.CountSummary(),
	}
}

// MarshalJSON writes the set's Summary.
func (s *Set) MarshalJSON() ([]byte, error) {
	return json.Marshal(s.Summary())
}
