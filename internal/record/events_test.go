package record

import (
	"testing"

	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/procfs"
	"github.com/snapbpf/snapbpf/internal/trace"
)

func TestBuildEvents(t *testing.T) {
	g := guestRAM{base: 0x10000000, lo: 0x10000000, hi: 0x10000000 + 100*pages.Size}
	addr := func(p uint64) uint64 { return g.base + p*pages.Size + 123 }
	raws := []rawFault{
		{TimeNs: 1000, Addr: addr(5), Kind: faultUser},                         // read
		{TimeNs: 1100, Addr: 0x500000, Kind: faultUser},                        // not guest RAM
		{TimeNs: 1200, Addr: addr(6), Code: pfWrite, Kind: faultUser},          // write
		{TimeNs: 1300, Addr: addr(5), Kind: faultUser},                         // repeat: ignored
		{TimeNs: 1400, Addr: addr(5), Code: pfWrite | pfProt, Kind: faultUser}, // upgrade
		{TimeNs: 1500, Addr: addr(5), Code: pfWrite, Kind: faultUser},          // after the upgrade: ignored
		{TimeNs: 1600, Addr: addr(7), Kind: faultKernel},                       // a syscall's read
		{TimeNs: 9000, Addr: addr(8), Kind: faultUser},                         // after the end
	}
	ev, st := buildEvents(raws, g, []uint64{2}, 500, 1000, 5000)
	want := []trace.Event{
		{TimeNs: -500, Page: 2, Op: trace.OpRead, Flags: trace.FlagPreexisting},
		{TimeNs: 0, Page: 5, Op: trace.OpRead},
		{TimeNs: 200, Page: 6, Op: trace.OpWrite},
		{TimeNs: 400, Page: 5, Op: trace.OpUpgrade},
		{TimeNs: 600, Page: 7, Op: trace.OpRead, Flags: trace.FlagKernel},
		{TimeNs: 8000, Page: 8, Op: trace.OpRead, Flags: trace.FlagLate},
	}
	if len(ev) != len(want) {
		t.Fatalf("events %+v, want %+v", ev, want)
	}
	for i := range want {
		if ev[i] != want[i] {
			t.Errorf("event %d = %+v, want %+v", i, ev[i], want[i])
		}
	}
	if st.faults != 8 || st.guestFaults != 7 || st.late != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestGuestRAMOf(t *testing.T) {
	mem := procfs.File{Dev: 0xfe01, Ino: 4242}
	ms := []procfs.Mapping{
		{Lo: 0x7f0000200000, Hi: 0x7f0004200000, File: mem},
		{Lo: 0x7f0004200000, Hi: 0x7f0008200000, Offset: 0x4000000, File: mem},
	}
	g, err := guestRAMOf(ms, "/snap/mem", 1)
	if err != nil {
		t.Fatal(err)
	}
	if g.base != 0x7f0000200000 || g.lo != 0x7f0000200000 || g.hi != 0x7f0008200000 {
		t.Errorf("guest RAM %+v", g)
	}
	if p, ok := g.page(0x7f0004200000 + 3*pages.Size); !ok || p != 0x4000+3 {
		t.Errorf("page %d %v", p, ok)
	}
	bad := append(ms, procfs.Mapping{Lo: 0x7f0010000000, Hi: 0x7f0010001000, File: mem})
	if _, err := guestRAMOf(bad, "/snap/mem", 1); err == nil {
		t.Error("accepted two unrelated mappings of the file")
	}
	if _, err := guestRAMOf(nil, "/x", 1); err == nil {
		t.Error("found a file that is not mapped")
	}
}
