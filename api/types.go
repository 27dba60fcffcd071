package api

import "time"

// The JSON bodies of api/openapi.yaml, one Go type a schema. The service
// (internal/serve) answers with them and stores its registry in them, and
// the client (internal/serveclient) reads them: one definition, so the two
// cannot drift apart (TestTypesMatchOpenAPI holds them to the description).

// Function states (Function.state).
const (
	StateCreating  = "creating"
	StateRecording = "recording"
	StateReady     = "ready"
	StateFailed    = "failed"
)

// Runtimes (CreateFunction.runtime): RuntimeGo, the functions built into
// the agent (the default), and RuntimePython, the python runtime's.
const (
	RuntimeGo     = "go"
	RuntimePython = "python"
)

// Values of the invoke response's X-Snapbpf-Start header.
const (
	StartCold = "cold"
	StartWarm = "warm"
)

// CreateRequest is the body of POST /v1/functions (schema CreateFunction).
// Zero runtime, memory_mib and data_mib mean the defaults, so a client
// leaves them out.
type CreateRequest struct {
	Name     string `json:"name"`
	Function string `json:"function"`
	Runtime  string `json:"runtime,omitempty"`
	MemMiB   int    `json:"memory_mib,omitempty"`
	DataMiB  int    `json:"data_mib,omitempty"`
}

// Function is a registered function and its state, as the API shows it and
// the service's registry stores it.
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
	// WSetVersion counts the recordings of the working set in use: 1
	// for the first, one more for each re-recording.
	WSetVersion int `json:"wset_version,omitempty"`
	// Publication is where the snapshot stands in the snapshot store,
	// from which the nodes without a copy fetch it; set once the
	// function is ready.
	Publication *Publication `json:"publication,omitempty"`
	// MissRate is the share of recent cold restores whose memory-file
	// faults outside the working set were above the re-record threshold.
	MissRate  float64    `json:"miss_rate"`
	Rerecords []Rerecord `json:"rerecords,omitempty"`
	// Instances are this node's instances of the function.
	Instances Instances `json:"instances"`
	// Node is the node that made the function's snapshot (its home), the
	// one whose state the record shows.
	Node string `json:"node,omitempty"`
	// ReadyOn are the nodes that serve the function now (their last
	// heartbeat says so), by name.
	ReadyOn []string `json:"ready_on,omitempty"`
}

// Done reports whether creation has finished, well or not.
func (f Function) Done() bool { return f.State == StateReady || f.State == StateFailed }

// Publication is where a function's snapshot stands in the snapshot store.
// Its home publishes it in the background once the function is ready
// there, and again after each re-recording (the new working set only).
type Publication struct {
	// WSetVersion is the working set version the store holds; 0 until the
	// snapshot is published. Other nodes fetch the snapshot once it is
	// positive, and forward to the nodes that serve it until then. Below
	// the function's wset_version, a publication is under way or waits
	// for its retry.
	WSetVersion int `json:"wset_version"`
	// At is when the store took that version.
	At *time.Time `json:"at,omitempty"`
	// Attempts counts the failed attempts to publish the current version,
	// Error says why the last one failed, and RetryAt is when the next
	// begins; all empty once it is published.
	Attempts int        `json:"attempts,omitempty"`
	Error    string     `json:"error,omitempty"`
	RetryAt  *time.Time `json:"retry_at,omitempty"`
}

// Published reports whether the store holds the working set version f
// uses.
func (f Function) Published() bool {
	return f.Publication != nil && f.Publication.WSetVersion >= f.WSetVersion
}

// Progress is how far a function's background creation has come.
type Progress struct {
	Step  string `json:"step,omitempty"`
	Done  int    `json:"done"`
	Total int    `json:"total"`
}

// Rerecord says when and why a function's working set was recorded again.
type Rerecord struct {
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
}

// Instances counts a function's running instances.
type Instances struct {
	Warm int `json:"warm"`
	Busy int `json:"busy"`
}

// FunctionList is the body of GET /v1/functions.
type FunctionList struct {
	Functions []Function `json:"functions"`
}

// ErrorBody is the body of every error answer (schema Error).
type ErrorBody struct {
	Error string `json:"error"`
}

// Health is the body of GET /healthz.
type Health struct {
	OK bool `json:"ok"`
}

// Node is one node of the cluster as its last heartbeat describes it
// (GET /v1/nodes).
type Node struct {
	Node string `json:"node"`
	// Address is where the node's API listens on TCP, if it does.
	Address string `json:"address,omitempty"`
	// Functions are the functions the node serves now (ready there).
	Functions []string  `json:"functions"`
	Instances Instances `json:"instances"`
	// MemoryUsedBytes is the memory its functions use, measured as the
	// budget measures it; MemoryBudgetBytes its budget (0: none).
	MemoryUsedBytes   int64 `json:"memory_used_bytes"`
	MemoryBudgetBytes int64 `json:"memory_budget_bytes"`
	// Draining is set once the node refuses new invocations.
	Draining bool `json:"draining,omitempty"`
	// At is when the node sent the heartbeat.
	At time.Time `json:"at"`
}

// NodeList is the body of GET /v1/nodes: the nodes whose heartbeat is
// current, by name.
type NodeList struct {
	Nodes []Node `json:"nodes"`
}
