// Package serve is the node service a serverless platform puts in front of
// traffic (snapbpf serve): an HTTP/JSON API over a unix socket (and,
// with a bearer token, TCP) to register functions, whose snapshot and
// working set are made in the background, and to invoke them on warm
// instances or cold restores under the snapbpf policy, within a per-function
// instance limit and a host memory budget that is measured, not estimated.
// The registry is persisted under its home directory, so a killed service
// loses nothing and the next one ends the VMMs it left.
package serve

import (
	"fmt"
	"regexp"
	"time"

	"github.com/snapbpf/snapbpf/internal/functions"
)

// Function states.
const (
	StateCreating  = "creating"
	StateRecording = "recording"
	StateReady     = "ready"
	StateFailed    = "failed"
)

// RuntimeGo is the runtime of the functions built into the agent.
const RuntimeGo = "go"

// CreateRequest is the body of POST /v1/functions.
type CreateRequest struct {
	Name     string `json:"name"`
	Function string `json:"function"`
	Runtime  string `json:"runtime"`
	MemMiB   int    `json:"memory_mib"`
	DataMiB  int    `json:"data_mib"`
}

// Function is a registered function as the API shows it and the registry
// stores it.
type Function struct {
	Name       string     `json:"name"`
	Function   string     `json:"function"`
	Runtime    string     `json:"runtime"`
	MemMiB     int        `json:"memory_mib"`
	DataMiB    int        `json:"data_mib"`
	State      string     `json:"state"`
	Progress   Progress   `json:"progress"`
	Error      string     `json:"error,omitempty"`
	SnapshotID string     `json:"snapshot_id,omitempty"`
	WSetPages  int64      `json:"wset_pages"`
	RecordedAt *time.Time `json:"recorded_at,omitempty"`
	// MissRate is the share of recent cold restores whose memory-file
	// faults outside the working set were above the re-record threshold.
	MissRate  float64    `json:"miss_rate"`
	Rerecords []Rerecord `json:"rerecords,omitempty"`
	Instances Instances  `json:"instances"`
}

// Progress is where a function's background creation is.
type Progress struct {
	Step  string `json:"step,omitempty"`
	Done  int    `json:"done"`
	Total int    `json:"total"`
}

// Rerecord is one re-recording of a function's working set.
type Rerecord struct {
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
}

// Instances counts a function's running instances.
type Instances struct {
	Warm int `json:"warm"`
	Busy int `json:"busy"`
}

// nameRE is what a function name may be: it names a directory, so no path
// characters.
var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// MaxMemMiB bounds a function's guest RAM.
const MaxMemMiB = 64 << 10

// validate checks r and fills its defaults (runtime go, memory sized for
// the function); minMiB is the least guest RAM the function needs.
func (r *CreateRequest) validate(minMiB func(fn string, dataMiB int) int) error {
	if !nameRE.MatchString(r.Name) {
		return fmt.Errorf("name %q: want 1 to 63 of a-z, 0-9 and '-', starting with a letter or digit", r.Name)
	}
	if r.Runtime == "" {
		r.Runtime = RuntimeGo
	}
	if r.Runtime != RuntimeGo {
		return fmt.Errorf("runtime %q: want %q (the functions built into the agent)", r.Runtime, RuntimeGo)
	}
	if _, err := functions.Lookup(r.Function); err != nil {
		return fmt.Errorf("function: %w", err)
	}
	if r.DataMiB < 0 || r.DataMiB > MaxMemMiB {
		return fmt.Errorf("data_mib %d: want 0 (the function's default) to %d", r.DataMiB, MaxMemMiB)
	}
	least := minMiB(r.Function, r.DataMiB)
	switch {
	case r.MemMiB == 0:
		r.MemMiB = least
	case r.MemMiB < least || r.MemMiB > MaxMemMiB:
		return fmt.Errorf("memory_mib %d: function %s with data_mib %d needs %d to %d (0 sizes it)", r.MemMiB, r.Function, r.DataMiB, least, MaxMemMiB)
	}
	return nil
}
