package snapshot

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestDescribe(t *testing.T) {
	d := makeSnapshot(t, filepath.Join(t.TempDir(), "snap"), CreateOptions{})
	if err := d.AddFile("wset/hello.ws", writeString("working set")); err != nil {
		t.Fatal(err)
	}
	desc := d.Describe()
	var names []string
	for _, f := range desc.Files {
		names = append(names, f.Role+":"+f.Name)
	}
	want := []string{"manifest:" + ManifestName, "state:" + StateName, "mem:" + MemName, "aux:wset/hello.ws"}
	if !slices.Equal(names, want) {
		t.Errorf("files %v, want %v", names, want)
	}
	if len(desc.Warnings) != 0 {
		t.Errorf("warnings %v", desc.Warnings)
	}

	data, err := json.Marshal(desc)
	if err != nil {
		t.Fatal(err)
	}
	var back Description
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if back.Manifest.ID != d.Manifest.ID || back.Manifest.StateSHA256 != d.Manifest.StateSHA256 || len(back.Files) != 4 {
		t.Errorf("JSON round trip lost data: %s", data)
	}
	for _, key := range []string{`"state_sha256"`, `"mem_data_bytes"`, `"free_pages":"report"`, `"role":"aux"`} {
		if !strings.Contains(string(data), key) {
			t.Errorf("JSON lacks %s: %s", key, data)
		}
	}

	s := desc.String()
	for _, part := range []string{d.Path, d.Manifest.ID, "hello (data_mib=16)", "4 MiB guest", "free pages:   report",
		"qemu 9.2.0 (tcg, microvm)", "6.1.0-test", "wset/hello.ws", "protocol 1"} {
		if !strings.Contains(s, part) {
			t.Errorf("String() lacks %q:\n%s", part, s)
		}
	}
	t.Logf("\n%s", s)
}

func TestBytesHuman(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 4 << 20: "4.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := bytesHuman(n); got != want {
			t.Errorf("bytesHuman(%d) = %q, want %q", n, got, want)
		}
	}
}
