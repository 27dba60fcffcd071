package snapshot

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func writeString(s string) func(io.Writer) error {
	return func(w io.Writer) error {
		_, err := io.WriteString(w, s)
		return err
	}
}

func readString(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAddFile(t *testing.T) {
	d := makeSnapshot(t, filepath.Join(t.TempDir(), "snap"), CreateOptions{})
	for _, content := range []string{"first", "second, longer content"} {
		if err := AddFile(d.Path, "wset/hello.ws", writeString(content)); err != nil {
			t.Fatal(err)
		}
		if got := readString(t, d.File("wset/hello.ws")); got != content {
			t.Errorf("content %q, want %q", got, content)
		}
	}
	if err := d.AddFile("notes", writeString("top level")); err != nil {
		t.Fatal(err)
	}
	if got := listDir(t, filepath.Join(d.Path, "wset")); !slices.Equal(got, []string{"hello.ws"}) {
		t.Errorf("wset holds %v, want only hello.ws", got)
	}
	if _, err := Open(d.Path); err != nil {
		t.Errorf("snapshot no longer opens: %v", err)
	}
}

func TestAddFileFailureKeepsOld(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name  string
		write func(io.Writer) error
		panic bool
	}{
		{"write error", func(w io.Writer) error { return boom }, false},
		{"partial write then error", func(w io.Writer) error {
			io.WriteString(w, "half of the new cont")
			return boom
		}, false},
		{"panic", func(w io.Writer) error { panic(boom) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := makeSnapshot(t, filepath.Join(t.TempDir(), "snap"), CreateOptions{})
			if err := d.AddFile("wset/f.ws", writeString("old")); err != nil {
				t.Fatal(err)
			}
			func() {
				defer func() {
					if r := recover(); (r != nil) != tt.panic {
						t.Errorf("recover() = %v", r)
					}
				}()
				err := d.AddFile("wset/f.ws", tt.write)
				if !errors.Is(err, boom) {
					t.Errorf("AddFile error %v, want boom", err)
				}
			}()
			if got := readString(t, d.File("wset/f.ws")); got != "old" {
				t.Errorf("content %q after failed write, want old", got)
			}
			if got := listDir(t, filepath.Join(d.Path, "wset")); !slices.Equal(got, []string{"f.ws"}) {
				t.Errorf("failed write left %v", got)
			}
		})
	}
}

func TestAddFileCleansStaleTemp(t *testing.T) {
	d := makeSnapshot(t, filepath.Join(t.TempDir(), "snap"), CreateOptions{})
	if err := d.AddFile("wset/f.ws", writeString("old")); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(d.Path, "wset", ".f.ws.tmp-0123456789abcdef")
	other := filepath.Join(d.Path, "wset", ".g.ws.tmp-0123456789abcdef")
	mustWrite(t, stale, "crashed writer")
	mustWrite(t, other, "another file's temp")
	desc := d.Describe()
	if len(desc.Warnings) != 2 {
		t.Errorf("Describe warnings %q, want the 2 leftover temps", desc.Warnings)
	}
	if err := d.AddFile("wset/f.ws", writeString("new")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temp not removed: %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("temp of another file removed: %v", err)
	}
}

func TestAddFileRefuses(t *testing.T) {
	d := makeSnapshot(t, filepath.Join(t.TempDir(), "snap"), CreateOptions{})
	for _, name := range []string{
		"", ".", "..", "../escape", "/abs", "wset/../mem", "wset//x", "wset/",
		ManifestName, StateName, MemName, "mem/x", ".hidden", "wset/.x.tmp-0123456789abcdef", `a\b`,
	} {
		t.Run(name, func(t *testing.T) {
			if err := d.AddFile(name, writeString("x")); err == nil {
				t.Errorf("AddFile(%q) succeeded", name)
			}
		})
	}
	if _, err := Open(d.Path); err != nil {
		t.Errorf("refused AddFile damaged the snapshot: %v", err)
	}

	notSnap := t.TempDir()
	err := AddFile(notSnap, "x", writeString("x"))
	wantSnapshotError(t, err, ErrMissing, filepath.Join(notSnap, ManifestName))
	if got := listDir(t, notSnap); len(got) != 0 {
		t.Errorf("AddFile wrote into a non-snapshot dir: %v", got)
	}
}

// TestErrorsNameThePathOnce: an error from the file system already names
// its path; wrapping it must not repeat it ("mkdir X: mkdir X: ...").
func TestErrorsNameThePathOnce(t *testing.T) {
	d := makeSnapshot(t, filepath.Join(t.TempDir(), "snap"), CreateOptions{})
	long := strings.Repeat("x", 300) // longer than NAME_MAX
	err := d.AddFile(long+"/f.ws", writeString("ws"))
	if err == nil {
		t.Fatal("AddFile with a 300-byte directory name succeeded")
	}
	p := filepath.Join(d.Path, long)
	if n := strings.Count(err.Error(), p); n != 1 {
		t.Errorf("error %q names %s %d times, want once", err, p, n)
	}
}
