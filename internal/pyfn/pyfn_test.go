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

func TestRuntimes(t *testing.T) {
	if got := RuntimeOf("pyaes"); got != Runtime {
		t.Errorf("RuntimeOf(pyaes) = %q, want %q", got, Runtime)
	}
	if got := RuntimeOf("rnn"); got != RuntimeTorch {
		t.Errorf("RuntimeOf(rnn) = %q, want %q", got, RuntimeTorch)
	}
	if got := RuntimeOf("cobol"); got != "" {
		t.Errorf("RuntimeOf(cobol) = %q, want none", got)
	}
	for _, c := range []struct {
		fn, rt string
		want   bool
	}{
		{"pyaes", Runtime, true},
		{"pyaes", RuntimeTorch, true}, // the torch image has every package
		{"rnn", RuntimeTorch, true},
		{"rnn", Runtime, false},
		{"cobol", RuntimeTorch, false},
	} {
		if got := RunsIn(c.fn, c.rt); got != c.want {
			t.Errorf("RunsIn(%s, %s) = %v, want %v", c.fn, c.rt, got, c.want)
		}
	}
	all := len(NamesOf(Runtime)) + len(NamesOf(RuntimeTorch))
	if all != len(Names()) || len(NamesOf(RuntimeTorch)) == 0 {
		t.Errorf("NamesOf: %v and %v, Names %v: want every function in one runtime, one of them torch's", NamesOf(Runtime), NamesOf(RuntimeTorch), Names())
	}
	if !IsRuntime(RuntimeTorch) || IsRuntime("python3") {
		t.Error("IsRuntime: wrong answer for python-torch or python3")
	}
	if GuestMiB("rnn") <= GuestMiB("pyaes") {
		t.Errorf("GuestMiB: rnn %d MiB, pyaes %d: torch needs more", GuestMiB("rnn"), GuestMiB("pyaes"))
	}
}
