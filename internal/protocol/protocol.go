// Package protocol is the line protocol between the host and the agent that
// runs as PID 1 in every guest.
//
// Each message is one JSON object on one line, prefixed with Marker. The
// guest's serial port is also its kernel console, so anything else on the
// line (boot messages, a panic) is not a message; the host keeps it as the
// guest's log. The agent speaks first (Ready), then answers each request with
// exactly one Result or Error carrying the request's ID.
package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Version is the protocol version. Both sides refuse a peer with another one.
const Version = 1

// Marker starts every protocol line. It is unlikely in kernel output and
// lets the host find a message even when a console line was written in
// front of it.
const Marker = "@snapbpf "

// MaxLine bounds one line, so a runaway guest cannot make the host buffer
// without limit. It leaves room for payloads of a few MiB (base64).
const MaxLine = 8 << 20

// Message types.
const (
	TypeReady     = "ready"     // agent: booted and listening
	TypeInit      = "init"      // host: initialise a function (before the snapshot)
	TypePrepare   = "prepare"   // host: get ready for a snapshot (free page reporting)
	TypeReporting = "reporting" // host: set the free page reporting order (ReportOrder; negative: stop reporting)
	TypeEntropy   = "entropy"   // host: fresh entropy for a restored clone
	TypeRandom    = "random"    // host: ask for random bytes (tests clone uniqueness)
	TypeInvoke    = "invoke"    // host: run the function once on an input
	TypeStats     = "stats"     // host: guest memory statistics
	TypePoweroff  = "poweroff"  // host: power the guest off
	TypeResult    = "result"    // agent: a request succeeded
	TypeError     = "error"     // agent: a request failed
)

// Message is every message of the protocol; fields a type does not use are
// left empty.
type Message struct {
	V    int    `json:"v"`
	Type string `json:"type"`
	ID   uint64 `json:"id,omitempty"`

	// Requests.
	Function string `json:"function,omitempty"`
	DataMiB  int    `json:"data_mib,omitempty"`
	Input    uint64 `json:"input,omitempty"`
	// Runtime names the language runtime of a function that is not built
	// into the agent (init: "python"); empty for the agent's Go functions.
	Runtime string `json:"runtime,omitempty"`
	// Payload is a runtime function's input, arriving with the request
	// (invoke; and init, where it is the warm-up call's input). Go
	// functions take Input, a seed, instead.
	Payload       []byte `json:"payload,omitempty"`
	Entropy       []byte `json:"entropy,omitempty"`
	N             int    `json:"n,omitempty"`
	ReportOrder   int    `json:"report_order,omitempty"`
	SettleTimeout int64  `json:"settle_timeout_ms,omitempty"`

	// Replies.
	Error          string `json:"error,omitempty"`
	Checksum       string `json:"checksum,omitempty"`
	FnNs           int64  `json:"fn_ns,omitempty"`
	OutputBytes    int64  `json:"output_bytes,omitempty"`
	TouchedBytes   int64  `json:"touched_bytes,omitempty"`
	AllocatedBytes int64  `json:"allocated_bytes,omitempty"`
	Random         []byte `json:"random,omitempty"`
	AgentRandom    []byte `json:"agent_random,omitempty"`
	// Output is a runtime function's result payload; Checksum is then
	// its SHA256.
	Output []byte `json:"output,omitempty"`
	// RuntimeRandom is drawn from the runtime's own generators (Python's
	// random, then numpy's), to test that clones differ.
	RuntimeRandom []byte            `json:"runtime_random,omitempty"`
	Info          map[string]string `json:"info,omitempty"`
	Mem           map[string]int64  `json:"mem,omitempty"`
}

// ErrNotMessage reports a line that carries no protocol message.
var ErrNotMessage = errors.New("not a protocol line")

// Encode renders m as one protocol line, newline included.
func Encode(m Message) ([]byte, error) {
	m.V = Version
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %s message: %w", m.Type, err)
	}
	if len(b)+len(Marker)+1 > MaxLine {
		return nil, fmt.Errorf("encode %s message: %d bytes exceeds the %d byte line limit", m.Type, len(b), MaxLine)
	}
	line := make([]byte, 0, len(Marker)+len(b)+1)
	line = append(line, Marker...)
	line = append(line, b...)
	return append(line, '\n'), nil
}

// Decode parses one line (without its newline). A line without the marker
// returns ErrNotMessage; a line with the marker but a bad body, a missing
// type or another version is an error that quotes it.
func Decode(line []byte) (Message, error) {
	i := bytes.Index(line, []byte(Marker))
	if i < 0 {
		return Message{}, ErrNotMessage
	}
	body := bytes.TrimRight(line[i+len(Marker):], "\r")
	var m Message
	if err := json.Unmarshal(body, &m); err != nil {
		return Message{}, fmt.Errorf("malformed message %q: %w", truncate(body), err)
	}
	if m.V != Version {
		return Message{}, fmt.Errorf("message %q has protocol version %d, want %d: rebuild the guest image with this snapbpf", truncate(body), m.V, Version)
	}
	if m.Type == "" {
		return Message{}, fmt.Errorf("message %q has no type", truncate(body))
	}
	return m, nil
}

func truncate(b []byte) string {
	const n = 200
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}
