package trace

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/wset"
)

func sample() *Trace {
	return &Trace{
		Meta: Meta{
			Mem:      wset.Identity{Size: 64 << 20, SnapshotID: "ab12", Fingerprint: "s64:00ff"},
			Function: "json", Input: 3, Created: time.Unix(1700000000, 5).UTC(),
			GuestFnNs: 600e6, HostFnNs: 30e6, ResumeToResultNs: 900e6,
			Stall: StallModel{MajorNs: 70000, HoleNs: 2000, CopyNs: 1500, Samples: 10},
		},
		Events: []Event{
			{TimeNs: -2000, Page: 7, Op: OpRead, Flags: FlagPreexisting},
			{TimeNs: 100, Page: 16383, Op: OpWrite, Flags: FlagHole, StallNs: 2000},
			{TimeNs: 100, Page: 0, Op: OpRead, Flags: FlagMajor, StallNs: 70000},
			{TimeNs: 5000000, Page: 0, Op: OpUpgrade, Flags: FlagKernel, StallNs: 1500},
		},
	}
}

func TestRoundTrip(t *testing.T) {
	in := sample()
	b, err := in.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var out Trace
	if err := out.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	in.Version = Version
	if !reflect.DeepEqual(in, &out) {
		t.Errorf("round trip:\n got %+v\nwant %+v", out, *in)
	}
	path := filepath.Join(t.TempDir(), "t.trace")
	if err := Write(path, in); err != nil {
		t.Fatal(err)
	}
	got, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, got) {
		t.Error("Write then Read changed the trace")
	}
}

// TestRefusesDamage flips every byte and truncates at every length: each
// must be refused as corrupt, never accepted or panicking.
func TestRefusesDamage(t *testing.T) {
	b, err := sample().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		bad := append([]byte(nil), b...)
		bad[i] ^= 0x5a
		var tr Trace
		if err := tr.UnmarshalBinary(bad); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("byte %d flipped: %v, want ErrCorrupt", i, err)
		}
	}
	for n := range len(b) {
		var tr Trace
		if err := tr.UnmarshalBinary(b[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d bytes: %v, want ErrCorrupt", n, err)
		}
	}
	var tr Trace
	if err := tr.UnmarshalBinary(append(b, 0)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a byte appended: %v", err)
	}
	path := filepath.Join(t.TempDir(), "t.trace")
	if err := os.WriteFile(path, b[:len(b)-1], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(path); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Read of a truncated file: %v", err)
	}
}

func TestValidate(t *testing.T) {
	for name, mod := range map[string]func(*Trace){
		"back in time":      func(t *Trace) { t.Events[2].TimeNs = 50 },
		"page out of file":  func(t *Trace) { t.Events[1].Page = 1 << 20 },
		"touched twice":     func(t *Trace) { t.Events[2].Page = 7 },
		"upgrade of write":  func(t *Trace) { t.Events[3].Page = 16383 },
		"upgrade untouched": func(t *Trace) { t.Events[3].Page = 5 },
		"unknown op":        func(t *Trace) { t.Events[0].Op = 9 },
		"unknown flag":      func(t *Trace) { t.Events[0].Flags = 0x80 },
		"no memory size":    func(t *Trace) { t.Meta.Mem.Size = 0 },
	} {
		tr := sample()
		mod(tr)
		if err := tr.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if _, err := tr.MarshalBinary(); err == nil {
			t.Errorf("%s: encoded", name)
		}
	}
}

func TestSlowdownAndSummary(t *testing.T) {
	tr := sample()
	// (600 ms guest - 71.5 µs of stalls after resume) / 30 ms.
	if got, want := tr.Slowdown(), (600e6-73500.0)/30e6; got < want-1e-9 || got > want+1e-9 {
		t.Errorf("slowdown %g, want %g", got, want)
	}
	s := tr.Summary()
	if s.Pages != 3 || s.ReadPages != 2 || s.WritePages != 1 || s.Upgrades != 1 || s.HolePages != 1 || s.MajorPages != 1 || s.Preexisting != 1 {
		t.Errorf("summary %+v", s)
	}
	tr.Meta.HostFnNs = 0
	if tr.Slowdown() != 0 {
		t.Error("slowdown without a host time")
	}
}

func FuzzUnmarshal(f *testing.F) {
	b, err := sample().MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(b[:30])
	f.Fuzz(func(t *testing.T, data []byte) {
		var tr Trace
		if err := tr.UnmarshalBinary(data); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not marked corrupt: %v", err)
			}
			return
		}
		// Whatever parses must encode back to the same bytes.
		out, err := tr.MarshalBinary()
		if err != nil {
			t.Fatalf("parsed but does not encode: %v", err)
		}
		var again Trace
		if err := again.UnmarshalBinary(out); err != nil || !reflect.DeepEqual(tr.Events, again.Events) {
			t.Fatalf("re-encoded trace differs: %v", err)
		}
	})
}

// FuzzPayload fuzzes what lies behind a valid header and checksum, where
// the decoder's own checks must hold.
func FuzzPayload(f *testing.F) {
	b, err := sample().MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b[headerSize : len(b)-trailerSize])
	f.Fuzz(func(t *testing.T, payload []byte) {
		data := make([]byte, headerSize, headerSize+len(payload)+trailerSize)
		copy(data, magic)
		binary.LittleEndian.PutUint32(data[8:], Version)
		binary.LittleEndian.PutUint64(data[16:], uint64(len(payload)))
		data = append(data, payload...)
		data = binary.LittleEndian.AppendUint32(data, crc32.Checksum(data, crcTable))
		var tr Trace
		if err := tr.UnmarshalBinary(data); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not marked corrupt: %v", err)
			}
			return
		}
		if err := tr.Validate(); err != nil {
			t.Fatalf("accepted an invalid trace: %v", err)
		}
	})
}

func TestLate(t *testing.T) {
	tr := sample()
	tr.Events = append(tr.Events, Event{TimeNs: 1e9, Page: 9, Op: OpRead, Flags: FlagLate})
	if err := tr.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := tr.WithoutLate(); len(got.Events) != len(tr.Events)-1 || got.Summary().LatePages != 0 {
		t.Errorf("WithoutLate kept %d of %d events", len(got.Events), len(tr.Events))
	}
	if s := tr.Summary(); s.LatePages != 1 {
		t.Errorf("summary counts %d late pages", s.LatePages)
	}
	tr.Events = append(tr.Events, Event{TimeNs: 2e9, Page: 10, Op: OpRead})
	if err := tr.Validate(); err == nil {
		t.Error("accepted an invocation touch after a late one")
	}
}
