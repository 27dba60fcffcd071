// Package snapstoretest gives tests of the snapshot store and its users a
// node's NATS (the in-process server serve embeds) and snapshots made
// without a VMM.
package snapstoretest

import (
	"context"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/snapbpf/snapbpf/internal/bus"
	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// WorkingSetFile is where Snapshot stores the working set (the name
// policy.WorkingSetFile has; this package does not import the policies).
const WorkingSetFile = "wset/default.ws"

// Embedded opens a node's NATS as serve does by default, an in-process
// server that listens on no port, closed at the test's end.
func Embedded(t testing.TB) jetstream.JetStream {
	t.Helper()
	b, err := bus.Open(context.Background(), bus.Config{Dir: t.TempDir(), Name: "snapstore-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b.JetStream()
}

// Snapshot makes a snapshot directory of memMiB MiB whose memory file has
// random bytes in the pages of data (holes elsewhere), with the working
// set ws at WorkingSetFile. No VMM is involved: it is for what only moves
// or serves files.
func Snapshot(t testing.TB, memMiB int, data, ws []pages.Extent) *snapshot.Dir {
	t.Helper()
	out := filepath.Join(t.TempDir(), "snap")
	b, err := snapshot.Create(out, snapshot.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Abort()
	if err := os.WriteFile(b.StatePath(), Random(t, 70_000), 0o600); err != nil {
		t.Fatal(err)
	}
	mem, err := os.OpenFile(b.MemPath(), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	if err := mem.Truncate(int64(memMiB) << 20); err != nil {
		t.Fatal(err)
	}
	for _, e := range data {
		if _, err := mem.WriteAt(Random(t, int(e.N)*pages.Size), int64(e.Page)*pages.Size); err != nil {
			t.Fatal(err)
		}
	}
	hex64 := strings.Repeat("ab", 32)
	d, err := b.Commit(snapshot.Manifest{
		Function: "json", MemMiB: memMiB, KernelSHA256: hex64, AgentSHA256: hex64,
		VMM: snapshot.VMMInfo{Name: "qemu", Version: "7.2.0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	id, err := wset.IdentifyFile(d.MemPath(), d.Manifest.ID)
	if err != nil {
		t.Fatal(err)
	}
	s := &wset.Set{Mem: id, Extents: ws, Created: time.Now(), Source: "test"}
	if err := d.AddFile(WorkingSetFile, func(w io.Writer) error {
		b, err := s.MarshalBinary()
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return d
}

// Random returns n random bytes.
func Random(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}
