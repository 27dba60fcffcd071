package runner

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/snapbpf/snapbpf/internal/rootfs"
)

// startHost starts the python runtime's runner with the host's python3:
// enough for hello, which needs nothing from the image.
func startHost(t *testing.T) *Runner {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("needs python3 on the host")
	}
	rt, err := rootfs.Lookup("python")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := rt.WriteRunner(dir); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, filepath.Join(dir, "runner.py"))
	cmd.Env = []string{"PYTHONDONTWRITEBYTECODE=1"}
	r, err := Start("python", cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestHello(t *testing.T) {
	r := startHost(t)
	if _, err := r.Init("hello", []byte("warm-up")); err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{"world", strings.Repeat("x", 300<<10)} {
		out, _, err := r.Invoke([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		if want := "hello, " + in; !bytes.Equal(out, []byte(want)) {
			t.Fatalf("hello(%.20q) = %.40q, want %.40q", in, out, want)
		}
	}
	if _, err := r.Init("hello", nil); err == nil || !strings.Contains(err.Error(), "already") {
		t.Fatalf("second init: %v, want already initialised", err)
	}
}

func TestErrorsAndReseed(t *testing.T) {
	r := startHost(t)
	if _, _, err := r.Invoke([]byte("x")); err == nil || !strings.Contains(err.Error(), "no function") {
		t.Fatalf("invoke before init: %v", err)
	}
	if _, err := r.Init("no_such_function", nil); err == nil || !strings.Contains(err.Error(), "ModuleNotFoundError") {
		t.Fatalf("init of a missing function: %v", err)
	}
	if err := r.Reseed([]byte("short")); err == nil {
		t.Fatal("reseed with 5 bytes succeeded")
	}
	draw := func(seed string) []byte {
		if err := r.Reseed([]byte(seed)); err != nil {
			t.Fatal(err)
		}
		b, err := r.Random(16)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a, a2, b := draw("0123456789abcdef-1"), draw("0123456789abcdef-1"), draw("0123456789abcdef-2")
	if !bytes.Equal(a, a2) || bytes.Equal(a, b) {
		t.Fatalf("random after reseed: same seed %x/%x, other seed %x", a, a2, b)
	}
}
