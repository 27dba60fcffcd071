package snapshot

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestOpenRefusesDamage(t *testing.T) {
	tests := []struct {
		name    string
		damage  func(t *testing.T, dir string)
		kind    error
		file    string // relative to the snapshot dir; "" is the dir itself
		msgPart []string
	}{
		{"missing manifest", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, ManifestName))
		}, ErrMissing, ManifestName, []string{"snapbpf snapshot create"}},
		{"empty manifest", func(t *testing.T, dir string) {
			mustWrite(t, filepath.Join(dir, ManifestName), "")
		}, ErrTruncated, ManifestName, nil},
		{"corrupt manifest JSON", func(t *testing.T, dir string) {
			data, _ := os.ReadFile(filepath.Join(dir, ManifestName))
			mustWrite(t, filepath.Join(dir, ManifestName), string(data[:len(data)/2]))
		}, ErrCorrupt, ManifestName, []string{"not valid JSON"}},
		{"trailing garbage", func(t *testing.T, dir string) {
			data, _ := os.ReadFile(filepath.Join(dir, ManifestName))
			mustWrite(t, filepath.Join(dir, ManifestName), string(data)+"{}")
		}, ErrCorrupt, ManifestName, nil},
		{"foreign manifest", func(t *testing.T, dir string) {
			mustWrite(t, filepath.Join(dir, ManifestName), `{"schemaVersion": 2, "layers": []}`)
		}, ErrForeign, ManifestName, nil},
		{"future format version", func(t *testing.T, dir string) {
			editManifest(t, dir, func(m map[string]any) { m["format_version"] = FormatVersion + 1; m["mem_size"] = "new meaning" })
		}, ErrNewerFormat, ManifestName, []string{"upgrade snapbpf"}},
		{"zero format version", func(t *testing.T, dir string) {
			editManifest(t, dir, func(m map[string]any) { delete(m, "format_version") })
		}, ErrCorrupt, ManifestName, []string{"format_version"}},
		{"bad field type", func(t *testing.T, dir string) {
			editManifest(t, dir, func(m map[string]any) { m["mem_size"] = "big" })
		}, ErrCorrupt, ManifestName, nil},
		{"inconsistent mem layout", func(t *testing.T, dir string) {
			editManifest(t, dir, func(m map[string]any) { m["mem_hole_bytes"] = 1 })
		}, ErrCorrupt, ManifestName, []string{"mem_hole_bytes"}},
		{"missing state", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, StateName))
		}, ErrMissing, StateName, []string{"recreate", "--function hello", "--mem-mib 4"}},
		{"truncated state", func(t *testing.T, dir string) {
			os.Truncate(filepath.Join(dir, StateName), 100)
		}, ErrTruncated, StateName, []string{"truncated", "100 bytes"}},
		{"grown state", func(t *testing.T, dir string) {
			f, _ := os.OpenFile(filepath.Join(dir, StateName), os.O_APPEND|os.O_WRONLY, 0)
			f.WriteString("x")
			f.Close()
		}, ErrTruncated, StateName, []string{"larger"}},
		{"state sha mismatch", func(t *testing.T, dir string) {
			f, _ := os.OpenFile(filepath.Join(dir, StateName), os.O_WRONLY, 0)
			f.WriteAt([]byte("X"), 10)
			f.Close()
		}, ErrCorrupt, StateName, []string{"sha256"}},
		{"state is a directory", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, StateName))
			mustMkdir(t, filepath.Join(dir, StateName))
		}, ErrForeign, StateName, []string{"not a regular file"}},
		{"missing mem", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, MemName))
		}, ErrMissing, MemName, []string{"memory file is missing"}},
		{"truncated mem", func(t *testing.T, dir string) {
			os.Truncate(filepath.Join(dir, MemName), 1<<20)
		}, ErrTruncated, MemName, []string{"truncated"}},
		{"grown mem", func(t *testing.T, dir string) {
			os.Truncate(filepath.Join(dir, MemName), 8<<20)
		}, ErrTruncated, MemName, []string{"larger"}},
		{"not a directory", func(t *testing.T, dir string) {
			os.RemoveAll(dir)
			mustWrite(t, dir, "x")
		}, ErrForeign, "", nil},
		{"no such directory", func(t *testing.T, dir string) {
			os.RemoveAll(dir)
		}, ErrMissing, "", []string{"does not exist"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := makeSnapshot(t, filepath.Join(t.TempDir(), "snap"), CreateOptions{}).Path
			tt.damage(t, dir)
			_, err := Open(dir)
			wantSnapshotError(t, err, tt.kind, filepath.Join(dir, tt.file), tt.msgPart...)
		})
	}
}

// TestOpenDoesNotReadMemory checks that Open only stats the memory file: a
// 1 TiB sparse memory file, which would take minutes to read even as holes,
// opens at once.
func TestOpenDoesNotReadMemory(t *testing.T) {
	d := makeSnapshot(t, filepath.Join(t.TempDir(), "snap"), CreateOptions{})
	const huge = int64(1) << 40
	if err := os.Truncate(d.MemPath(), huge); err != nil {
		t.Skipf("needs a filesystem with 1 TiB sparse files: %v", err)
	}
	editManifest(t, d.Path, func(m map[string]any) {
		m["mem_size"] = huge
		m["mem_hole_bytes"] = huge - d.Manifest.MemDataBytes
	})
	start := time.Now()
	if _, err := Open(d.Path); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("Open took %v: it reads the memory file", el)
	}
}

func TestOpenIgnoresAuxFiles(t *testing.T) {
	d := makeSnapshot(t, filepath.Join(t.TempDir(), "snap"), CreateOptions{})
	mustWrite(t, filepath.Join(d.Path, lockName), "")
	if err := d.AddFile("wset/hello.ws", writeString("ws")); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(d.Path + "/"); err != nil {
		t.Fatal(err)
	}
}
