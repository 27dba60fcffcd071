package serveclient

import "time"

// Function states (api/openapi.yaml, Function.state).
const (
	StateCreating  = "creating"
	StateRecording = "recording"
	StateReady     = "ready"
	StateFailed    = "failed"
)

// CreateRequest registers a function (POST /v1/functions).
type CreateRequest struct {
	Name      string `json:"name"`
	Function  string `json:"function"`
	Runtime   string `json:"runtime,omitempty"`
	MemoryMiB int    `json:"memory_mib,omitempty"`
	DataMiB   int    `json:"data_mib,omitempty"`
}

// Function is a registered function and its state.
type Function struct {
	Name       string     `json:"name"`
	Function   string     `json:"function"`
	Runtime    string     `json:"runtime"`
	MemoryMiB  int        `json:"memory_mib"`
	DataMiB    int        `json:"data_mib"`
	State      string     `json:"state"`
	Progress   Progress   `json:"progress"`
	Error      string     `json:"error,omitempty"`
	SnapshotID string     `json:"snapshot_id,omitempty"`
	WSetPages  int64      `json:"wset_pages"`
	RecordedAt *time.Time `json:"recorded_at,omitempty"`
	MissRate   float64    `json:"miss_rate"`
	Rerecords  []Rerecord `json:"rerecords,omitempty"`
	Instances  Instances  `json:"instances"`
}

// Done reports whether creation has finished, well or not.
func (f Function) Done() bool { return f.State == StateReady || f.State == StateFailed }

// Progress is how far the background creation has come.
type Progress struct {
	Step  string `json:"step,omitempty"`
	Done  int64  `json:"done"`
	Total int64  `json:"total"`
}

// Rerecord says when and why a working set was recorded again.
type Rerecord struct {
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
}

// Instances counts a function's instances.
type Instances struct {
	Warm int `json:"warm"`
	Busy int `json:"busy"`
}

// Start values of the X-Snapbpf-Start header.
const (
	StartCold = "cold"
	StartWarm = "warm"
)

// Invocation is an invocation's result and where its time went, from the
// response's X-Snapbpf-* headers.
type Invocation struct {
	// Result is the response body: the function's result.
	Result        []byte
	Start         string  // cold or warm
	RestoreMs     float64 // the cold restore (0 when warm)
	PrefetchBytes int64
	QueueMs       float64 // waiting for an instance
	TotalMs       float64 // the service's own time
}
