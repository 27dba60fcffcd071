package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/snapbpf/snapbpf/internal/functions"
	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/pyfn"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// TestBadArguments runs the CLI with wrong flags and files: each must be
// refused before any work starts, with an error that names what is wrong.
func TestBadArguments(t *testing.T) {
	if os.Geteuid() != 0 {
		// Flag values are checked before the root check (see
		// TestArgumentErrorsBeforeRootCheck); the files are not.
		t.Skip("not root: restore and trace refuse to start without root before they look at their files")
	}
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	if err := os.WriteFile(small, make([]byte, 8192), 0o644); err != nil {
		t.Fatal(err)
	}
	// A set recorded on another file, of another size, with a snapshot ID.
	other := filepath.Join(dir, "other")
	if err := os.WriteFile(other, make([]byte, 16384), 0o644); err != nil {
		t.Fatal(err)
	}
	id, err := wset.IdentifyFile(other, "0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	set := &wset.Set{Mem: id, Extents: []pages.Extent{{Page: 0, N: 1}}}
	wsPath := filepath.Join(dir, "other.ws")
	if err := wset.Write(wsPath, set); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		args []string
		want []string // substrings of the error
	}{
		{"restore count 0", []string{"restore", "--snapshot", dir, "--count", "0"}, []string{"--concurrency 0"}},
		{"restore not a snapshot", []string{"restore", "--snapshot", dir}, []string{dir}},
		{"record missing memory file", []string{"record", "--mem", filepath.Join(dir, "nope"), "--out", filepath.Join(dir, "x.ws"), "--", "true"},
			[]string{"memory file", filepath.Join(dir, "nope"), "give --mem"}},
		{"record directory as memory file", []string{"record", "--mem", dir, "--out", filepath.Join(dir, "x.ws"), "--", "true"},
			[]string{"memory file " + dir, "not a regular file"}},
		{"record into a missing directory", []string{"record", "--mem", small, "--out", filepath.Join(dir, "no", "x.ws"), "--", "true"},
			[]string{"--out " + filepath.Join(dir, "no", "x.ws"), "create the directory first"}},
		{"trace into a missing directory", []string{"trace", "--snapshot", dir, "--out", filepath.Join(dir, "no", "t")},
			[]string{"--out " + filepath.Join(dir, "no", "t"), "create the directory first"}},
		// The file has no snapshot ID: the error must not claim the set's.
		{"prefetch on another file", []string{"prefetch", "--mem", small, "--ws", wsPath},
			[]string{small, "sizes differ", "this file has 8192 bytes, fingerprint"}},
		{"record input 0", []string{"record", "--snapshot", dir, "--input", "1,0"}, []string{"--input 1,0", "input 0 is not a valid seed", "seeds are 1 to 9007199254740991"}},
		{"record input too large", []string{"record", "--snapshot", dir, "--input", "9007199254740992"}, []string{"--input", "seeds are 1 to 9007199254740991"}},
		{"record input not a number", []string{"record", "--snapshot", dir, "--input", "2,x"}, []string{"--input", `"x" is not a number`}},
		{"record input twice", []string{"record", "--snapshot", dir, "--input", "2,3,2"}, []string{"--input 2,3,2", "input 2 is listed twice"}},
		{"record no random inputs", []string{"record", "--snapshot", dir, "--inputs", "0"}, []string{"--inputs 0"}},
		{"record both input flags", []string{"record", "--snapshot", dir, "--inputs", "2", "--input", "3"}, []string{"[input inputs]", "none of the others"}},
		{"replay unknown policy", []string{"replay", "--snapshot", dir, "--trace", small, "--policies", "lazy,bogus"}, []string{`unknown policy "bogus"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := newRootCmd()
			var out bytes.Buffer
			cmd.SetOut(&out)
			cmd.SetErr(&out)
			cmd.SetArgs(tc.args)
			err := cmd.Execute()
			if err == nil {
				t.Fatalf("%v: no error; output %q", tc.args, out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%v: error %q does not say %q", tc.args, err, w)
				}
			}
		})
	}
}

// TestDrawInputs: record --inputs N draws N distinct seeds of a Go
// function, and input shapes of a python function, which has only
// pyfn.Shapes of them.
func TestDrawInputs(t *testing.T) {
	gofn := snapshot.Manifest{Function: "json"}
	seeds, err := drawInputs(gofn, 5)
	if err != nil || len(seeds) != 5 {
		t.Fatalf("5 go inputs: %v, %v", seeds, err)
	}
	for _, s := range seeds {
		if err := functions.CheckInput(s); err != nil {
			t.Errorf("drew %d: %v", s, err)
		}
	}
	py := snapshot.Manifest{Function: "pyaes", Runtime: pyfn.Runtime}
	shapes, err := drawInputs(py, pyfn.Shapes)
	if err != nil || len(shapes) != pyfn.Shapes {
		t.Fatalf("%d python inputs: %v, %v", pyfn.Shapes, shapes, err)
	}
	for _, s := range shapes {
		if s < 1 || s > pyfn.Shapes {
			t.Errorf("drew shape %d, want 1 to %d", s, pyfn.Shapes)
		}
	}
	if _, err := drawInputs(py, pyfn.Shapes+1); err == nil || !strings.Contains(err.Error(), "--input 1,2") {
		t.Errorf("%d python inputs: %v, want an error that says to record all shapes with --input", pyfn.Shapes+1, err)
	}
}
