package snapshot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestCreateCommitRoundTrip(t *testing.T) {
	parent := t.TempDir()
	out := filepath.Join(parent, "snap")
	b, err := Create(out, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(b.Dir()) != parent || !isTempFor(filepath.Base(b.Dir()), "snap") {
		t.Fatalf("temp dir %s is not a sibling OUT.tmp-<hex>", b.Dir())
	}
	writeVMMFiles(t, [2]string{b.StatePath(), b.MemPath()})
	want, err := FileSHA256(b.StatePath())
	if err != nil {
		t.Fatal(err)
	}
	committed, err := b.Commit(testManifest())
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if err := b.Abort(); err != nil {
		t.Errorf("Abort after Commit: %v", err)
	}
	if _, err := b.Commit(testManifest()); err == nil {
		t.Error("second Commit succeeded")
	}
	if got := listDir(t, parent); !slices.Equal(got, []string{"snap"}) {
		t.Errorf("parent holds %v, want only snap", got)
	}
	if got := listDir(t, out); !slices.Equal(got, []string{ManifestName, MemName, StateName}) {
		t.Errorf("snapshot holds %v", got)
	}

	d, err := Open(out)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	m := d.Manifest
	if m.Kind != Kind || m.FormatVersion != FormatVersion || !isHex(m.ID, 32) || m.Created.IsZero() {
		t.Errorf("header not filled: %+v", m)
	}
	if m.ID != committed.Manifest.ID || !m.Created.Equal(committed.Manifest.Created) {
		t.Errorf("Open read ID %s created %v, Commit returned %s %v", m.ID, m.Created, committed.Manifest.ID, committed.Manifest.Created)
	}
	if m.StateSHA256 != want || m.StateSize != 1300 {
		t.Errorf("state %d %s, want 1300 %s", m.StateSize, m.StateSHA256, want)
	}
	if m.MemSize != testMemMiB<<20 || m.MemDataBytes+m.MemHoleBytes != m.MemSize || m.MemDataBytes < 8192 {
		t.Errorf("mem size %d data %d holes %d", m.MemSize, m.MemDataBytes, m.MemHoleBytes)
	}
	tm := testManifest()
	if m.Function != tm.Function || m.FunctionOptions["data_mib"] != 16 || m.VMM.Name != "qemu" || m.FreePages != FreePagesReport || m.Agent.ProtocolVersion != 1 {
		t.Errorf("caller fields lost: %+v", m)
	}
	if d.StatePath() != filepath.Join(out, StateName) || d.MemPath() != filepath.Join(out, MemName) {
		t.Errorf("paths %s %s", d.StatePath(), d.MemPath())
	}
	// Two snapshots never share an ID.
	other := makeSnapshot(t, filepath.Join(parent, "snap2"), CreateOptions{})
	if other.Manifest.ID == m.ID {
		t.Error("two snapshots got the same ID")
	}
}

func TestCreateExistingOut(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, out string)
		replace bool
		wantErr bool
	}{
		{"absent", func(*testing.T, string) {}, false, false},
		{"empty dir", func(t *testing.T, out string) { mustMkdir(t, out) }, false, false},
		{"snapshot", func(t *testing.T, out string) { makeSnapshot(t, out, CreateOptions{}) }, false, true},
		{"snapshot, replace", func(t *testing.T, out string) { makeSnapshot(t, out, CreateOptions{}) }, true, false},
		{"damaged snapshot, replace", func(t *testing.T, out string) {
			makeSnapshot(t, out, CreateOptions{})
			os.Remove(filepath.Join(out, MemName))
		}, true, false},
		{"regular file", func(t *testing.T, out string) { mustWrite(t, out, "data") }, false, true},
		{"regular file, replace", func(t *testing.T, out string) { mustWrite(t, out, "data") }, true, true},
		{"other data, replace", func(t *testing.T, out string) {
			mustMkdir(t, out)
			mustWrite(t, filepath.Join(out, "thesis.tex"), "precious")
		}, true, true},
		{"foreign manifest, replace", func(t *testing.T, out string) {
			mustMkdir(t, out)
			mustWrite(t, filepath.Join(out, ManifestName), `{"kind":"someone-else"}`)
		}, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "snap")
			tt.setup(t, out)
			before, _ := os.ReadDir(out)
			b, err := Create(out, CreateOptions{Replace: tt.replace})
			if tt.wantErr {
				wantSnapshotError(t, err, ErrExists, out)
				if after, _ := os.ReadDir(out); len(after) != len(before) {
					t.Errorf("refused Create changed %s", out)
				}
				if got := listDir(t, filepath.Dir(out)); len(got) != 1 {
					t.Errorf("refused Create left %v", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			defer b.Abort()
			writeVMMFiles(t, [2]string{b.StatePath(), b.MemPath()})
			if _, err := b.Commit(testManifest()); err != nil {
				t.Fatalf("Commit: %v", err)
			}
			if _, err := Open(out); err != nil {
				t.Fatalf("Open after Commit: %v", err)
			}
			if got := listDir(t, filepath.Dir(out)); !slices.Equal(got, []string{"snap"}) {
				t.Errorf("parent holds %v after replace, want only snap", got)
			}
		})
	}
}

func TestReplaceKeepsOldUntilCommit(t *testing.T) {
	out := filepath.Join(t.TempDir(), "snap")
	old := makeSnapshot(t, out, CreateOptions{})
	b, err := Create(out, CreateOptions{Replace: true})
	if err != nil {
		t.Fatal(err)
	}
	writeVMMFiles(t, [2]string{b.StatePath(), b.MemPath()})
	if d, err := Open(out); err != nil || d.Manifest.ID != old.Manifest.ID {
		t.Fatalf("old snapshot not intact before Commit: %v", err)
	}
	if _, err := b.Commit(testManifest()); err != nil {
		t.Fatal(err)
	}
	d, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	if d.Manifest.ID == old.Manifest.ID {
		t.Error("snapshot not replaced")
	}
}

func TestCreateBadOut(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "no", "such")
	_, err := Create(filepath.Join(missing, "snap"), CreateOptions{})
	wantSnapshotError(t, err, ErrMissing, missing, "mkdir -p")
	_, err = Create("/", CreateOptions{})
	wantSnapshotError(t, err, ErrForeign, "/")
}

func TestAbortLeavesNothing(t *testing.T) {
	parent := t.TempDir()
	b, err := Create(filepath.Join(parent, "snap"), CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	writeVMMFiles(t, [2]string{b.StatePath(), b.MemPath()})
	if err := b.Abort(); err != nil {
		t.Fatal(err)
	}
	if err := b.Abort(); err != nil {
		t.Errorf("second Abort: %v", err)
	}
	if got := listDir(t, parent); len(got) != 0 {
		t.Errorf("Abort left %v", got)
	}
	if _, err := b.Commit(testManifest()); err == nil {
		t.Error("Commit after Abort succeeded")
	}
}

func TestCrashLeavesNoSnapshotAndNextCreateCleans(t *testing.T) {
	parent := t.TempDir()
	out := filepath.Join(parent, "snap")
	crashed, err := Create(out, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("snap.tmp-%d-", os.Getpid()); !strings.HasPrefix(filepath.Base(crashed.Dir()), want) {
		t.Errorf("temporary directory %s is not named for its owner (%s...)", crashed.Dir(), want)
	}
	writeVMMFiles(t, [2]string{crashed.StatePath(), crashed.MemPath()})
	crashed.lock.Close() // the process dies: the kernel drops its flock

	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("uncommitted snapshot visible at OUT: %v", err)
	}
	_, err = Open(crashed.Dir())
	wantSnapshotError(t, err, ErrMissing, filepath.Join(crashed.Dir(), ManifestName), "interrupted creation")

	// Unrelated neighbours that merely look similar must survive cleanup.
	keep := []string{"snap.tmp-mine", "snap.tmp-0123456789abcdeg", "other.tmp-1-0123456789abcdeg", "other.tmp-x-0123456789abcdef"}
	for _, k := range keep {
		mustMkdir(t, filepath.Join(parent, k))
		mustWrite(t, filepath.Join(parent, k, lockName), "")
	}
	// A crashed creation of another --out in the same parent goes too,
	// whether its name is of this version or an older one; a live one of
	// another --out stays.
	otherCrashed, err := Create(filepath.Join(parent, "other"), CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	otherCrashed.lock.Close()
	oldName := filepath.Join(parent, "old.tmp-0123456789abcdef")
	mustMkdir(t, oldName)
	mustWrite(t, filepath.Join(oldName, lockName), "")
	otherLive, err := Create(filepath.Join(parent, "live"), CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer otherLive.Abort()
	keep = append(keep, filepath.Base(otherLive.Dir()))

	b, err := Create(out, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Abort()
	for _, p := range []string{crashed.Dir(), otherCrashed.Dir(), oldName} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stale temp dir %s not cleaned: %v", p, err)
		}
	}
	for _, k := range keep {
		if _, err := os.Stat(filepath.Join(parent, k)); err != nil {
			t.Errorf("cleanup removed unrelated %s: %v", k, err)
		}
	}
	writeVMMFiles(t, [2]string{b.StatePath(), b.MemPath()})
	if _, err := b.Commit(testManifest()); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentCreateKeepsLiveTemp(t *testing.T) {
	out := filepath.Join(t.TempDir(), "snap")
	first, err := Create(out, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Abort()
	second, err := Create(out, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Abort()
	if _, err := os.Stat(first.Dir()); err != nil {
		t.Fatalf("second Create removed the live temp dir of the first: %v", err)
	}
	writeVMMFiles(t, [2]string{first.StatePath(), first.MemPath()})
	writeVMMFiles(t, [2]string{second.StatePath(), second.MemPath()})
	if _, err := first.Commit(testManifest()); err != nil {
		t.Fatal(err)
	}
	_, err = second.Commit(testManifest())
	wantSnapshotError(t, err, ErrExists, out)
	if err := second.Abort(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(out); err != nil {
		t.Errorf("first snapshot damaged by the losing creator: %v", err)
	}
}

func TestStaleDisplacedSnapshotCleaned(t *testing.T) {
	// A replacing Commit that crashed after the exchange leaves the old
	// snapshot under the temporary name without a lock file.
	parent := t.TempDir()
	out := filepath.Join(parent, "snap")
	makeSnapshot(t, out, CreateOptions{})
	displaced := filepath.Join(parent, "snap.tmp-00112233445566ff")
	makeSnapshot(t, displaced, CreateOptions{})
	b, err := Create(out, CreateOptions{Replace: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Abort()
	if _, err := os.Stat(displaced); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("displaced snapshot not cleaned: %v", err)
	}
}

func TestCommitRefusesBadVMMOutput(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, b *Builder)
		kind  error
		file  func(b *Builder) string
	}{
		{"no state", func(t *testing.T, b *Builder) {
			writeVMMFiles(t, [2]string{b.StatePath(), b.MemPath()})
			os.Remove(b.StatePath())
		}, ErrMissing, (*Builder).StatePath},
		{"empty state", func(t *testing.T, b *Builder) {
			writeVMMFiles(t, [2]string{b.StatePath(), b.MemPath()})
			os.Truncate(b.StatePath(), 0)
		}, ErrTruncated, (*Builder).StatePath},
		{"no mem", func(t *testing.T, b *Builder) {
			writeVMMFiles(t, [2]string{b.StatePath(), b.MemPath()})
			os.Remove(b.MemPath())
		}, ErrMissing, (*Builder).MemPath},
		{"empty mem", func(t *testing.T, b *Builder) {
			writeVMMFiles(t, [2]string{b.StatePath(), b.MemPath()})
			os.Truncate(b.MemPath(), 0)
		}, ErrTruncated, (*Builder).MemPath},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "snap")
			b, err := Create(out, CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Abort()
			tt.setup(t, b)
			_, err = b.Commit(testManifest())
			wantSnapshotError(t, err, tt.kind, tt.file(b), "VMM")
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("failed Commit published %s", out)
			}
		})
	}
}

func TestCommitRefusesIncompleteManifest(t *testing.T) {
	tests := []struct {
		name string
		edit func(m *Manifest)
		want string
	}{
		{"no function", func(m *Manifest) { m.Function = "" }, "function"},
		{"no mem_mib", func(m *Manifest) { m.MemMiB = 0 }, "mem_mib"},
		{"no kernel digest", func(m *Manifest) { m.KernelSHA256 = "" }, "kernel_sha256"},
		{"bad agent digest", func(m *Manifest) { m.AgentSHA256 = "XYZ" }, "agent_sha256"},
		{"bad free pages", func(m *Manifest) { m.FreePages = "sometimes" }, "free_pages"},
		{"no vmm", func(m *Manifest) { m.VMM = VMMInfo{} }, "vmm"},
		{"bad id", func(m *Manifest) { m.ID = "short" }, "id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "snap")
			b, err := Create(out, CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Abort()
			writeVMMFiles(t, [2]string{b.StatePath(), b.MemPath()})
			m := testManifest()
			tt.edit(&m)
			_, err = b.Commit(m)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Commit error %v, want one mentioning %q", err, tt.want)
			}
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("failed Commit published %s", out)
			}
		})
	}
}

func mustMkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

func mustWrite(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
