package record

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// TestWorkingSetRefused: snapbpf applies a working set only to the
// memory file it was recorded on, and refuses damaged or missing sets
// with an error naming the file.
func TestWorkingSetRefused(t *testing.T) {
	a := recordedSnapshot(t)
	b := otherSnapshot(t)
	wsA := a.dir.File(policy.WorkingSetFile)
	good, err := os.ReadFile(wsA)
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)/2] ^= 0x40

	// A copy of snapshot a whose memory differs at the first page (always
	// one of the fingerprint's samples) but keeps a's snapshot ID.
	edited := copySnapshot(t, a, filepath.Join(tmp, "edited"))
	mf, err := os.OpenFile(edited.dir.MemPath(), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mf.WriteAt([]byte("not the snapshot's memory"), 0); err != nil {
		t.Fatal(err)
	}
	if err := mf.Close(); err != nil {
		t.Fatal(err)
	}
	// A copy of a without its recording.
	unrecorded := copySnapshot(t, a, filepath.Join(tmp, "unrecorded"))
	if err := os.Remove(unrecorded.dir.File(policy.WorkingSetFile)); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name     string
		fx       fixture
		ws       string
		is       error    // the error must wrap it (nil: not checked)
		contains []string // and mention these
	}{
		{"other snapshot", b, wsA, wset.ErrMismatch, []string{wsA, "snapshot IDs differ"}},
		{"same ID, other contents", edited, wsA, wset.ErrMismatch, []string{wsA, "contents differ"}},
		{"truncated", a, write("truncated.ws", good[:len(good)/2]), wset.ErrCorrupt, []string{"truncated.ws", "truncated"}},
		{"header only", a, write("header.ws", good[:20]), wset.ErrCorrupt, []string{"header.ws"}},
		{"flipped bit", a, write("flipped.ws", flipped), wset.ErrCorrupt, []string{"flipped.ws", "checksum"}},
		{"empty", a, write("empty.ws", nil), wset.ErrCorrupt, []string{"empty.ws"}},
		{"not a working set", a, write("manifest.ws", []byte(`{"function":"json"}`)), wset.ErrCorrupt, []string{"manifest.ws"}},
		{"missing", a, filepath.Join(tmp, "missing.ws"), policy.ErrNoWorkingSet, []string{"missing.ws"}},
		{"no recording", unrecorded, "", policy.ErrNoWorkingSet, []string{unrecorded.dir.Path}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := policy.New(policy.SnapBPF, tc.fx.dir, tc.ws, policy.Options{})
			if err == nil {
				t.Fatalf("accepted (%d pages); want an error", p.WorkingSet().Pages())
			}
			t.Log(err)
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error does not wrap %v: %v", tc.is, err)
			}
			for _, s := range tc.contains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error does not mention %q: %v", s, err)
				}
			}
		})
	}

	// The control: a's set on a, and on a byte-identical copy of a (same
	// snapshot ID and contents, another path), is accepted.
	same := copySnapshot(t, a, filepath.Join(tmp, "copy"))
	for _, fx := range []fixture{a, same} {
		p, err := policy.New(policy.SnapBPF, fx.dir, wsA, policy.Options{})
		if err != nil {
			t.Errorf("%s: its own working set refused: %v", fx.dir.Path, err)
			continue
		}
		if p.WorkingSet().Pages() == 0 {
			t.Errorf("%s: empty working set", fx.dir.Path)
		}
	}
}
