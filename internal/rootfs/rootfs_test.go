package rootfs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRecipe(t *testing.T) {
	r, err := Lookup("python")
	if err != nil {
		t.Fatal(err)
	}
	a, err := r.Recipe()
	if err != nil {
		t.Fatal(err)
	}
	r2 := r
	r2.Packages = append(append([]string(nil), r.Packages...), "python3-six")
	b, err := r2.Recipe()
	if err != nil {
		t.Fatal(err)
	}
	if a == b || len(a) != 64 {
		t.Fatalf("recipe digests %q and %q: want two different sha256s", a, b)
	}
	if _, err := Lookup("cobol"); err == nil || !strings.Contains(err.Error(), "python") {
		t.Fatalf("Lookup(cobol) = %v, want an error naming the runtimes", err)
	}
}

func TestRunnerFilesEmbedded(t *testing.T) {
	r, _ := Lookup("python")
	dir := t.TempDir()
	if err := addFiles(dir, r); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"runner.py", "functions/__init__.py", "functions/pyaes.py", "functions/linpack.py", "functions/chameleon.py"} {
		if _, err := os.Stat(filepath.Join(dir, RunnerDir, f)); err != nil {
			t.Error(err)
		}
	}
}

func TestInstalledPackages(t *testing.T) {
	tree := t.TempDir()
	os.MkdirAll(filepath.Join(tree, "var/lib/dpkg"), 0o755)
	status := "Package: a\nStatus: install ok installed\nVersion: 1\n\nPackage: b\nStatus: deinstall ok config-files\nVersion: 2\n\nPackage: c\nVersion: 3\nStatus: install ok installed\n"
	os.WriteFile(filepath.Join(tree, "var/lib/dpkg/status"), []byte(status), 0o644)
	got, err := installedPackages(tree)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, " ") != "a=1 c=3" {
		t.Fatalf("installed = %q, want a=1 c=3", got)
	}
}

func TestDigestStamp(t *testing.T) {
	old := StampDir
	StampDir = t.TempDir()
	defer func() { StampDir = old }()
	p := filepath.Join(t.TempDir(), "img")
	os.WriteFile(p, []byte("one"), 0o644)
	a, err := Digest(p)
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(filepath.Join(StampDir, "*.json")); len(m) != 1 {
		t.Fatalf("stamps %v, want one", m)
	}
	if b, _ := Digest(p); b != a {
		t.Fatalf("stamped digest %s != %s", b, a)
	}
	// Same size, new content: the stamp must not be trusted.
	time.Sleep(10 * time.Millisecond)
	os.WriteFile(p, []byte("two"), 0o644)
	if err := Verify(p, a); !errors.Is(err, ErrChanged) {
		t.Fatalf("Verify after a change = %v, want a mismatch", err)
	}
}
