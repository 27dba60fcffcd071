package catalog

import (
	"strings"
	"testing"

	"github.com/snapbpf/snapbpf/internal/funcvm"
	"github.com/snapbpf/snapbpf/internal/pyfn"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		ref           string
		name, runtime string
	}{
		{"json", "json", ""},
		{"python:json", "json", pyfn.Runtime},
		{"pyaes", "pyaes", pyfn.Runtime}, // no Go function has the name
		{"python:pyaes", "pyaes", pyfn.Runtime},
		{"bert", "bert", ""},
		{"rnn", "rnn", ""}, // the Go rnn
		{"python-torch:rnn", "rnn", pyfn.RuntimeTorch},
		{"python-torch:pyaes", "pyaes", pyfn.RuntimeTorch}, // the torch image has every package
	} {
		f, err := Parse(c.ref)
		if err != nil {
			t.Errorf("%s: %v", c.ref, err)
			continue
		}
		if f.Name != c.name || f.Runtime != c.runtime {
			t.Errorf("%s: %+v, want name %s runtime %q", c.ref, f, c.name, c.runtime)
		}
		if g, err := Parse(f.Ref()); err != nil || g != f {
			t.Errorf("%s: its Ref %s parses to %+v, %v", c.ref, f.Ref(), g, err)
		}
	}
	for _, bad := range []string{"cobol", "python:bert", "ruby:json", "", "python:rnn"} {
		if f, err := Parse(bad); err == nil {
			t.Errorf("%q: parsed to %+v, want an error", bad, f)
		}
	}
}

func TestLists(t *testing.T) {
	for _, f := range append(Go(), Python()...) {
		g, err := Parse(f.Ref())
		if err != nil || g != f {
			t.Errorf("%s: parses to %+v, %v", f.Ref(), g, err)
		}
		if f.GuestMiB(0) <= 0 {
			t.Errorf("%s: guest RAM %d MiB", f.Ref(), f.GuestMiB(0))
		}
	}
	if len(Python()) != len(pyfn.Names()) {
		t.Errorf("%d python functions, pyfn has %d", len(Python()), len(pyfn.Names()))
	}
}

func TestCreate(t *testing.T) {
	py, _ := Parse("python:gzip")
	o, err := py.Create(funcvm.CreateOptions{Out: "x"})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := pyfn.Input("gzip", 1)
	if o.Function != "gzip" || o.Runtime != pyfn.Runtime || string(o.Payload) != string(want) || o.MemMiB != pyfn.GuestMiB("gzip") || o.Out != "x" {
		t.Errorf("python:gzip: %+v", o)
	}
	if _, err := py.Create(funcvm.CreateOptions{DataMiB: 8}); err == nil || !strings.Contains(err.Error(), "Go functions only") {
		t.Errorf("python function with a data size: %v", err)
	}
	g, _ := Parse("gzip")
	o, err = g.Create(funcvm.CreateOptions{MemMiB: 300})
	if err != nil || o.Function != "gzip" || o.Runtime != "" || o.Payload != nil || o.MemMiB != 300 {
		t.Errorf("gzip: %+v, %v", o, err)
	}
}
