package snapshot

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// addSet stores a working set recorded on the file identified by id.
func addSet(t *testing.T, d *Dir, name string, id wset.Identity) {
	t.Helper()
	set := &wset.Set{Mem: id, Extents: []pages.Extent{{Page: 0, N: 1}}}
	data, err := set.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.AddFile(name, func(w io.Writer) error { _, err := w.Write(data); return err }); err != nil {
		t.Fatal(err)
	}
}

// TestInspectFindsWhatRestoreRefuses: inspect names each working set a
// restore would refuse (damaged, recorded for another snapshot, a symbolic
// link) and passes a good one.
func TestInspectFindsWhatRestoreRefuses(t *testing.T) {
	d := makeSnapshot(t, filepath.Join(t.TempDir(), "snap"), CreateOptions{})
	good, err := wset.IdentifyFile(d.MemPath(), d.Manifest.ID)
	if err != nil {
		t.Fatal(err)
	}
	addSet(t, d, "wset/good.ws", good)
	other := good
	other.SnapshotID = strings.Repeat("cd", 16)
	addSet(t, d, "wset/other.ws", other)
	addSet(t, d, "wset/damaged.ws", good)
	damaged := d.File("wset/damaged.ws")
	data, err := os.ReadFile(damaged)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-1] ^= 0xff
	if err := os.WriteFile(damaged, data, 0o600); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "x.ws")
	if err := os.Rename(d.File("wset/good.ws"), outside); err != nil {
		t.Fatal(err)
	}
	addSet(t, d, "wset/good.ws", good)
	if err := os.Symlink(outside, d.File("wset/link.ws")); err != nil {
		t.Fatal(err)
	}
	// The replay harness's REAP file, another format, is not a working set.
	if err := d.AddFile("replay/reap.ws", func(w io.Writer) error { _, err := w.Write([]byte("REAP pages")); return err }); err != nil {
		t.Fatal(err)
	}

	desc := d.Inspect()
	want := map[string]string{
		"wset/other.ws":   "snapshot IDs differ",
		"wset/damaged.ws": "record it again",
		"wset/link.ws":    "symbolic link",
	}
	if len(desc.Problems) != len(want) {
		t.Errorf("problems %q, want one for each of %v", desc.Problems, want)
	}
	for name, why := range want {
		found := false
		for _, p := range desc.Problems {
			found = found || strings.Contains(p, d.File(name)) && strings.Contains(p, why)
		}
		if !found {
			t.Errorf("no problem names %s (%s) in %q", name, why, desc.Problems)
		}
	}
	if !strings.Contains(desc.String(), "NOT valid") {
		t.Errorf("description does not say the snapshot is not valid:\n%s", desc)
	}
}

// TestLeftoversAndFix: temporary files and directories of dead processes,
// inside and next to a snapshot, are listed as warnings and removed by
// RemoveLeftovers; those of live processes stay.
func TestLeftoversAndFix(t *testing.T) {
	parent := t.TempDir()
	d := makeSnapshot(t, filepath.Join(parent, "snap"), CreateOptions{})
	live, err := Create(filepath.Join(parent, "live"), CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Abort()
	crashed, err := Create(filepath.Join(parent, "other"), CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	crashed.lock.Close() // its process died
	tmpFile := filepath.Join(d.Path, ".default.ws.tmp-0123456789abcdef")
	mustWrite(t, tmpFile, "half a working set")

	desc := d.Inspect()
	if !slices.ContainsFunc(desc.Warnings, func(w string) bool { return strings.Contains(w, crashed.Dir()) && strings.Contains(w, "--fix") }) {
		t.Errorf("warnings %q do not name %s", desc.Warnings, crashed.Dir())
	}
	if !slices.ContainsFunc(desc.Warnings, func(w string) bool { return strings.Contains(w, tmpFile) }) {
		t.Errorf("warnings %q do not name %s", desc.Warnings, tmpFile)
	}
	removed, err := RemoveLeftovers(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(removed)
	want := []string{crashed.Dir(), tmpFile}
	slices.Sort(want)
	if !slices.Equal(removed, want) {
		t.Errorf("removed %v, want %v", removed, want)
	}
	if _, err := os.Stat(live.Dir()); err != nil {
		t.Errorf("live creation's directory: %v", err)
	}
	if _, err := Open(d.Path); err != nil {
		t.Errorf("snapshot after the fix: %v", err)
	}
}
