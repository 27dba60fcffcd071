package snapshot

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// FormatVersion is the manifest format this build writes and the newest it
// reads. Bump it only for changes an older snapbpf cannot safely ignore;
// optional new fields do not need a bump because unknown fields are ignored.
const FormatVersion = 1

// Kind marks a manifest as a snapbpf snapshot manifest, so that a foreign
// manifest.json (from another tool) is told apart from a damaged one.
const Kind = "snapbpf-snapshot"

// Names of the core files inside a snapshot directory.
const (
	ManifestName = "manifest.json"
	StateName    = "state"
	MemName      = "mem"
)

// Free-page modes: whether the guest reported free pages to the host before
// the snapshot (so they are holes in the memory file) or not.
const (
	FreePagesReport = "report"
	FreePagesNone   = "none"
)

// maxManifestSize bounds how much of a manifest.json is read: a real one is a
// few KiB, anything far bigger is a foreign file and must not be slurped.
const maxManifestSize = 1 << 20

// Manifest describes a snapshot. It is written once by Builder.Commit and
// never modified afterwards.
type Manifest struct {
	Kind          string    `json:"kind"`
	FormatVersion int       `json:"format_version"`
	ID            string    `json:"id"` // random 128-bit hex, unique per snapshot
	Created       time.Time `json:"created"`

	// Function is the name of the function the snapshot was taken with, and
	// FunctionOptions its numeric parameters (e.g. "data_mib").
	Function        string         `json:"function"`
	FunctionOptions map[string]int `json:"function_options,omitempty"`

	// MemMiB is the guest RAM size; MemSize the memory file size in bytes,
	// of which MemDataBytes are allocated and MemHoleBytes are holes.
	MemMiB       int    `json:"mem_mib"`
	MemSize      int64  `json:"mem_size"`
	MemDataBytes int64  `json:"mem_data_bytes"`
	MemHoleBytes int64  `json:"mem_hole_bytes"`
	FreePages    string `json:"free_pages,omitempty"` // FreePagesReport, FreePagesNone or "" (not recorded)
	// ZeroPagesPunched is how many all-zero pages left after free page
	// reporting were turned into holes (FreePagesReport only).
	ZeroPagesPunched int64 `json:"zero_pages_punched,omitempty"`

	StateSize   int64  `json:"state_size"`
	StateSHA256 string `json:"state_sha256"`

	KernelVersion   string `json:"kernel_version,omitempty"`
	KernelSHA256    string `json:"kernel_sha256"`
	InitramfsSHA256 string `json:"initramfs_sha256,omitempty"`
	AgentSHA256     string `json:"agent_sha256"`

	// Runtime is the language runtime the function runs in ("python"),
	// empty for the agent's Go functions. RootfsPath is the runtime's
	// read-only root filesystem image, attached at every restore, and
	// RootfsSHA256 its digest: a restore refuses any other image.
	Runtime      string `json:"runtime,omitempty"`
	RootfsPath   string `json:"rootfs_path,omitempty"`
	RootfsSHA256 string `json:"rootfs_sha256,omitempty"`

	VMM   VMMInfo   `json:"vmm"`
	Agent AgentInfo `json:"agent"`
}

// VMMInfo records which VMM took the snapshot: restoring with a different
// VMM or version is not guaranteed to understand the device state.
type VMMInfo struct {
	Name    string   `json:"name"`
	Version string   `json:"version"`
	Accel   string   `json:"accel,omitempty"`   // e.g. "kvm" or "tcg"
	Machine string   `json:"machine,omitempty"` // e.g. "microvm"
	Args    []string `json:"args,omitempty"`    // the VMM command line, for diagnosis
}

// AgentInfo records the guest agent the snapshot was taken with.
type AgentInfo struct {
	ProtocolVersion int `json:"protocol_version"`
}

// validate checks the manifest's own consistency; it does not look at the
// other files. Problems are returned as plain text for the caller to wrap.
func (m *Manifest) validate() error {
	switch {
	case m.Kind != Kind:
		return fmt.Errorf("kind is %q, want %q", m.Kind, Kind)
	case m.FormatVersion < 1:
		return fmt.Errorf("format_version %d is invalid", m.FormatVersion)
	case m.FormatVersion > FormatVersion:
		return fmt.Errorf("format_version %d is newer than this snapbpf reads (%d)", m.FormatVersion, FormatVersion)
	case !isHex(m.ID, 32):
		return fmt.Errorf("id %q is not 32 hex digits", m.ID)
	case m.Created.IsZero():
		return errors.New("created time is missing")
	case m.Function == "":
		return errors.New("function is missing")
	case m.MemMiB <= 0:
		return fmt.Errorf("mem_mib %d is not positive", m.MemMiB)
	case m.MemSize <= 0:
		return fmt.Errorf("mem_size %d is not positive", m.MemSize)
	case int64(m.MemMiB)<<20 != m.MemSize:
		// The VMM is started with mem_mib of RAM over a file of mem_size.
		return fmt.Errorf("mem_mib %d (%d bytes) does not match mem_size %d", m.MemMiB, int64(m.MemMiB)<<20, m.MemSize)
	case m.MemDataBytes < 0 || m.MemHoleBytes < 0 || m.MemDataBytes+m.MemHoleBytes != m.MemSize:
		return fmt.Errorf("mem_data_bytes %d + mem_hole_bytes %d != mem_size %d", m.MemDataBytes, m.MemHoleBytes, m.MemSize)
	case m.FreePages != "" && m.FreePages != FreePagesReport && m.FreePages != FreePagesNone:
		return fmt.Errorf("free_pages %q is not %q or %q", m.FreePages, FreePagesReport, FreePagesNone)
	case m.StateSize <= 0:
		return fmt.Errorf("state_size %d is not positive", m.StateSize)
	case !isHex(m.StateSHA256, 64):
		return fmt.Errorf("state_sha256 %q is not a sha256", m.StateSHA256)
	case !isHex(m.KernelSHA256, 64):
		return fmt.Errorf("kernel_sha256 %q is not a sha256", m.KernelSHA256)
	case m.InitramfsSHA256 != "" && !isHex(m.InitramfsSHA256, 64):
		return fmt.Errorf("initramfs_sha256 %q is not a sha256", m.InitramfsSHA256)
	case !isHex(m.AgentSHA256, 64):
		return fmt.Errorf("agent_sha256 %q is not a sha256", m.AgentSHA256)
	case m.VMM.Name == "" || m.VMM.Version == "":
		return errors.New("vmm name or version is missing")
	}
	return nil
}

// isHex reports whether s is exactly n lowercase hex digits.
func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// encode renders the manifest as indented JSON, so that it stays readable
// with cat.
func (m *Manifest) encode() ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	return append(b, '\n'), nil
}

// readManifest reads and validates a manifest.json opened as f. fix is the
// advice appended to every error.
func readManifest(f *os.File, fix string) (*Manifest, error) {
	path := f.Name()
	data, err := io.ReadAll(io.LimitReader(f, maxManifestSize+1))
	if err != nil {
		return nil, &Error{Path: path, Kind: ErrCorrupt, Problem: "cannot read manifest", Fix: fix, Err: err}
	}
	if len(data) > maxManifestSize {
		return nil, &Error{Path: path, Kind: ErrForeign, Problem: fmt.Sprintf("file is larger than %d bytes, not a snapbpf manifest", maxManifestSize), Fix: fix}
	}
	return parseManifest(path, data, fix)
}

func parseManifest(path string, data []byte, fix string) (*Manifest, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &Error{Path: path, Kind: ErrTruncated, Problem: "manifest is empty", Fix: fix}
	}
	// Read only kind and version first: a newer format may have changed
	// the meaning or type of any other field, and must be reported as
	// newer rather than as corrupt.
	var head struct {
		Kind          string `json:"kind"`
		FormatVersion int    `json:"format_version"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&head); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, &Error{Path: path, Kind: ErrCorrupt, Problem: "manifest is not valid JSON", Fix: fix, Err: err}
		}
		return nil, &Error{Path: path, Kind: ErrForeign, Problem: "not a snapbpf snapshot manifest", Fix: fix, Err: err}
	}
	if dec.More() {
		return nil, &Error{Path: path, Kind: ErrCorrupt, Problem: "manifest has data after the JSON object", Fix: fix}
	}
	if head.Kind != Kind {
		return nil, &Error{Path: path, Kind: ErrForeign, Problem: fmt.Sprintf("kind is %q, not %q: not a snapbpf snapshot manifest", head.Kind, Kind), Fix: fix}
	}
	if head.FormatVersion > FormatVersion {
		return nil, &Error{Path: path, Kind: ErrNewerFormat,
			Problem: fmt.Sprintf("snapshot format %d was written by a newer snapbpf (this one reads up to %d)", head.FormatVersion, FormatVersion),
			Fix:     "upgrade snapbpf, or recreate the snapshot with this version"}
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, &Error{Path: path, Kind: ErrCorrupt, Problem: "manifest fields are malformed", Fix: fix, Err: err}
	}
	if err := m.validate(); err != nil {
		return nil, &Error{Path: path, Kind: ErrCorrupt, Problem: "invalid manifest", Fix: fix, Err: err}
	}
	return &m, nil
}
