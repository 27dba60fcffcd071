package replay

import (
	"slices"
	"testing"

	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/trace"
	"github.com/snapbpf/snapbpf/internal/wset"
)

func newTestEnv(mem string) (*env, error) {
	id, err := wset.IdentifyFile(mem, "")
	if err != nil {
		return nil, err
	}
	return &env{mem: mem, id: id, size: id.Size}, nil
}

func TestScheduleSubtractsStalls(t *testing.T) {
	tr := &trace.Trace{
		Meta: trace.Meta{ResumeToResultNs: 10_000},
		Events: []trace.Event{
			{TimeNs: -500, Page: 9, Op: trace.OpRead, StallNs: 100}, // before resume
			{TimeNs: 1000, Page: 1, Op: trace.OpRead, StallNs: 300},
			{TimeNs: 2000, Page: 2, Op: trace.OpWrite, StallNs: 300},
			{TimeNs: 2100, Page: 1, Op: trace.OpUpgrade, StallNs: 50}, // overlaps the stall before it
			{TimeNs: 5000, Page: 3, Op: trace.OpRead, StallNs: 1000},
		},
	}
	s := newSchedule(tr, 0.5)
	var gaps []int64
	var writes []bool
	for _, st := range s.steps {
		gaps = append(gaps, st.gapNs)
		writes = append(writes, st.write)
	}
	// Gaps: 1000-100 (after the pre-resume touch, served by 100), then
	// 2000-1300, 0, 5000-2150; all halved. Tail 10000-6000, halved.
	if want := []int64{450, 350, 0, 1425}; !slices.Equal(gaps[1:], want) || gaps[0] != 0 {
		t.Errorf("gaps %v, want [0 %v]", gaps, want)
	}
	if want := []bool{false, false, true, true, false}; !slices.Equal(writes, want) {
		t.Errorf("writes %v, want %v", writes, want)
	}
	if s.tailNs != 2000 || s.computeNs != 450+350+1425+2000 {
		t.Errorf("tail %d, compute %d", s.tailNs, s.computeNs)
	}
}

func TestScatter(t *testing.T) {
	nz := newBitmap(1000)
	for p := uint64(0); p < 1000; p++ {
		if p%10 != 0 { // every tenth page zero
			nz.set(p)
		}
	}
	tr := &trace.Trace{Meta: trace.Meta{Mem: wset.Identity{Size: 1000 * pages.Size}}}
	for i, p := range []uint64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12} {
		tr.Events = append(tr.Events, trace.Event{TimeNs: int64(i), Page: p, Op: trace.OpRead})
	}
	tr.Events = append(tr.Events, trace.Event{TimeNs: 20, Page: 3, Op: trace.OpUpgrade})
	same, moved, err := scatter(tr, 0, 1, nz)
	if err != nil || moved != 0 || !slices.Equal(pagesOf(same), pagesOf(tr)) {
		t.Fatalf("fraction 0: moved %d, %v", moved, err)
	}
	all, moved, err := scatter(tr, 1, 1, nz)
	if err != nil {
		t.Fatal(err)
	}
	if moved != 11 { // 13 pages, 0 and 10 are zero
		t.Errorf("fraction 1 moved %d pages, want 11", moved)
	}
	for i, e := range all.Events {
		orig := tr.Events[i].Page
		switch {
		case orig%10 == 0 && e.Page != orig:
			t.Errorf("zero page %d moved to %d", orig, e.Page)
		case orig%10 != 0 && (e.Page <= 12 || !nz.has(e.Page)):
			t.Errorf("page %d moved to %d", orig, e.Page)
		}
	}
	if all.Events[13].Page != all.Events[3].Page {
		t.Error("an upgrade did not follow its page")
	}
	again, _, _ := scatter(tr, 1, 1, nz)
	if !slices.Equal(pagesOf(again), pagesOf(all)) {
		t.Error("same seed, different placement")
	}
	half, moved, _ := scatter(tr, 0.5, 1, nz)
	if moved != 6 || half.Validate() != nil {
		t.Errorf("fraction 0.5 moved %d pages, want 6", moved)
	}
	if _, _, err := scatter(tr, 1.5, 1, nz); err == nil {
		t.Error("fraction 1.5 accepted")
	}
}

func TestFaaSnapRegions(t *testing.T) {
	nz := newBitmap(200)
	for p := uint64(0); p < 200; p++ {
		if p != 12 {
			nz.set(p)
		}
	}
	layers := make([]uint32, 200)
	for _, p := range []uint64{10, 11, 12, 13} {
		layers[p] = 2
	}
	layers[20] = 1 // 7 pages after 13: merged, takes the later layer
	layers[100] = 1
	layers[101] = 3
	runs, ls := faasnapRegions(layers, nz)
	want := []pageRun{{Start: 10, N: 11}, {Start: 100, N: 2}}
	// Region 100-101 has layer min(1,3)=1; 10-20 merged: min(2)=2 then
	// max(2,1)=2. Ordered by layer.
	if !slices.Equal(runs, []pageRun{want[1], want[0]}) || !slices.Equal(ls, []int{1, 2}) {
		t.Errorf("regions %v layers %v", runs, ls)
	}
}

func TestMergeRuns(t *testing.T) {
	b := newBitmap(100)
	for _, p := range []uint64{1, 2, 3, 40, 41, 80} {
		b.set(p)
	}
	got := mergeRuns(b, 37)
	want := []pageRun{{Start: 1, N: 41}, {Start: 80, N: 1}}
	if !slices.Equal(got, want) {
		t.Errorf("mergeRuns = %v, want %v", got, want)
	}
}
