package snapshot

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
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
		{"mem_mib disagrees with mem_size", func(t *testing.T, dir string) {
			editManifest(t, dir, func(m map[string]any) { m["mem_mib"] = testMemMiB * 2 })
		}, ErrCorrupt, ManifestName, []string{"mem_mib 8", "mem_size 4194304"}},
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
		m["mem_mib"] = huge >> 20
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

// TestOpenRefusesUntrusted prepares snapshot directories as another user
// would: a symbolic link planted for a core file, files and directories
// owned by someone else or writable by others. Open, which inspect and
// restore go through, must refuse each, name the file and give the fix.
func TestOpenRefusesUntrusted(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files to another user")
	}
	const nobody = 65534
	tests := []struct {
		name    string
		prepare func(t *testing.T, dir string)
		file    string
		msgPart []string
	}{
		{"mem symlinked to a same-size file", func(t *testing.T, dir string) {
			mem := filepath.Join(dir, MemName)
			outside := filepath.Join(t.TempDir(), "other-mem")
			if err := os.Rename(mem, outside); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, mem); err != nil {
				t.Fatal(err)
			}
		}, MemName, []string{"symbolic link"}},
		{"state symlinked", func(t *testing.T, dir string) {
			st := filepath.Join(dir, StateName)
			outside := filepath.Join(t.TempDir(), "other-state")
			if err := os.Rename(st, outside); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, st); err != nil {
				t.Fatal(err)
			}
		}, StateName, []string{"symbolic link"}},
		{"directory owned by another user", func(t *testing.T, dir string) {
			mustChown(t, dir, nobody)
		}, "", []string{"owned by uid 65534", "chown root: " + "DIR", "chmod go-w"}},
		{"directory writable by others", func(t *testing.T, dir string) {
			mustChmod(t, dir, 0o777)
		}, "", []string{"writable by group or others", "chmod go-w DIR"}},
		{"state owned by another user", func(t *testing.T, dir string) {
			mustChown(t, filepath.Join(dir, StateName), nobody)
		}, StateName, []string{"owned by uid 65534", "chown root: "}},
		{"mem group-writable", func(t *testing.T, dir string) {
			mustChmod(t, filepath.Join(dir, MemName), 0o664)
		}, MemName, []string{"writable by group or others", "chmod go-w"}},
		{"manifest owned by another user", func(t *testing.T, dir string) {
			mustChown(t, filepath.Join(dir, ManifestName), nobody)
		}, ManifestName, []string{"owned by uid 65534"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := makeSnapshot(t, filepath.Join(t.TempDir(), "snap"), CreateOptions{}).Path
			tt.prepare(t, dir)
			_, err := Open(dir)
			for i, p := range tt.msgPart {
				tt.msgPart[i] = strings.ReplaceAll(p, "DIR", dir)
			}
			wantSnapshotError(t, err, ErrUnsafe, filepath.Join(dir, tt.file), tt.msgPart...)
		})
	}
}

// TestOpenRefusesSymlinkedDir: the snapshot directory itself is not
// followed either.
func TestOpenRefusesSymlinkedDir(t *testing.T) {
	d := makeSnapshot(t, filepath.Join(t.TempDir(), "snap"), CreateOptions{})
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(d.Path, link); err != nil {
		t.Fatal(err)
	}
	_, err := Open(link)
	wantSnapshotError(t, err, ErrUnsafe, link, "symbolic link")
}

// TestOpenStateIsTheCheckedFile: a state file renamed over the checked one
// after Open is not what OpenState returns.
func TestOpenStateIsTheCheckedFile(t *testing.T) {
	d := makeSnapshot(t, filepath.Join(t.TempDir(), "snap"), CreateOptions{})
	want, err := os.ReadFile(d.StatePath())
	if err != nil {
		t.Fatal(err)
	}
	evil := filepath.Join(d.Path, "evil")
	mustWrite(t, evil, "swapped")
	if err := os.Rename(evil, d.StatePath()); err != nil {
		t.Fatal(err)
	}
	for range 2 { // each descriptor starts at offset 0
		f, err := d.OpenState()
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("OpenState read %q..., want the checked state", got[:min(len(got), 16)])
		}
	}
}

func mustChown(t *testing.T, p string, uid int) {
	t.Helper()
	if err := os.Lchown(p, uid, uid); err != nil {
		t.Fatal(err)
	}
}

func mustChmod(t *testing.T, p string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}
