package wset

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/snapbpf/snapbpf/internal/pages"
)

// MarshalJSON writes an extent as [first_page, n_pages].
func (e Extent) MarshalJSON() ([]byte, error) {
	return fmt.Appendf(nil, "[%d,%d]", e.Page, e.N), nil
}

// UnmarshalJSON reads an extent written by MarshalJSON.
func (e *Extent) UnmarshalJSON(b []byte) error {
	var pair []uint64
	if err := json.Unmarshal(b, &pair); err != nil {
		return fmt.Errorf("extent: %w", err)
	}
	if len(pair) != 2 {
		return fmt.Errorf("extent: want [first_page, n_pages], got %d numbers", len(pair))
	}
	e.Page, e.N = pair[0], pair[1]
	return nil
}

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
	Extents []Extent `json:"extents"`
	// ZeroPages and ZeroExtents are the touched holes (Set.Zero).
	ZeroPages   int64    `json:"zero_pages"`
	ZeroExtents []Extent `json:"zero_extents"`
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
		ext = []Extent{}
	}
	if zero == nil {
		zero = []Extent{}
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
