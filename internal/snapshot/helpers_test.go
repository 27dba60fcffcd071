package snapshot

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testMemMiB = 4

var testDigest = strings.Repeat("ab", 32)

// testManifest returns the fields a caller of Commit must fill in.
func testManifest() Manifest {
	return Manifest{
		Function:        "hello",
		FunctionOptions: map[string]int{"data_mib": 16},
		MemMiB:          testMemMiB,
		FreePages:       FreePagesReport,
		KernelVersion:   "6.1.0-test",
		KernelSHA256:    testDigest,
		InitramfsSHA256: testDigest,
		AgentSHA256:     testDigest,
		VMM:             VMMInfo{Name: "qemu", Version: "9.2.0", Accel: "tcg", Machine: "microvm"},
		Agent:           AgentInfo{ProtocolVersion: 1},
	}
}

// writeVMMFiles stands in for the VMM: a small state file and a sparse
// memory file with data at 0 and at 1 MiB.
func writeVMMFiles(t *testing.T, stateMem [2]string) {
	t.Helper()
	if err := os.WriteFile(stateMem[0], bytes.Repeat([]byte("device-state "), 100), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(stateMem[1])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(testMemMiB << 20); err != nil {
		t.Fatal(err)
	}
	page := bytes.Repeat([]byte{0x5a}, 4096)
	for _, off := range []int64{0, 1 << 20} {
		if _, err := f.WriteAt(page, off); err != nil {
			t.Fatal(err)
		}
	}
}

// makeSnapshot creates a committed snapshot at out.
func makeSnapshot(t *testing.T, out string, opts CreateOptions) *Dir {
	t.Helper()
	b, err := Create(out, opts)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	defer b.Abort()
	writeVMMFiles(t, [2]string{b.StatePath(), b.MemPath()})
	d, err := b.Commit(testManifest())
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return d
}

// editManifest rewrites fields of a snapshot's manifest in place.
func editManifest(t *testing.T, dir string, edit func(m map[string]any)) {
	t.Helper()
	p := filepath.Join(dir, ManifestName)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	data, err = json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// listDir returns the names in dir.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// wantSnapshotError checks err is an *Error of kind naming file.
func wantSnapshotError(t *testing.T, err error, kind error, file string, msgParts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v naming %s", kind, file)
	}
	var se *Error
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T) is not an *Error", err, err)
	}
	if kind != nil && !errors.Is(err, kind) {
		t.Errorf("error %q: kind %v, want %v", err, se.Kind, kind)
	}
	if se.Path != file || !strings.Contains(err.Error(), file) {
		t.Errorf("error %q: names %s, want %s", err, se.Path, file)
	}
	for _, p := range msgParts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}
