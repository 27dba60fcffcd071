package pyfn

import (
	"bytes"
	"testing"
)

func TestInputs(t *testing.T) {
	for _, name := range Names() {
		a, err := Input(name, 1)
		if err != nil {
			t.Fatal(err)
		}
		a0, _ := Input(name, 0)
		a2, _ := Input(name, 1)
		b, err := Input(name, 2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, a0) || !bytes.Equal(a, a2) {
			t.Errorf("%s: shape 1 is not deterministic, or shape 0 is not shape 1", name)
		}
		if bytes.Equal(a, b) {
			t.Errorf("%s: shapes 1 and 2 are the same input", name)
		}
		if len(a) > 1<<20 || len(b) > 1<<20 {
			t.Errorf("%s: inputs of %d and %d bytes, want at most 1 MiB", name, len(a), len(b))
		}
		t.Logf("%s: %d and %d bytes", name, len(a), len(b))
	}
	if _, err := Input("pyaes", 3); err == nil {
		t.Error("shape 3 accepted")
	}
	if _, err := Input("cobol", 1); err == nil {
		t.Error("unknown function accepted")
	}
}
