package record

import (
	"testing"

	"github.com/snapbpf/snapbpf/internal/policy"
)

// TestPoliciesConformance: every policy restores concurrent clones that
// compute correct results, and none changes the memory file every clone
// maps. Input 2 differs from the recorded input 1: snapbpf must stay
// correct when its working set is not exactly what the invoke touches.
func TestPoliciesConformance(t *testing.T) {
	f := recordedSnapshot(t)
	before := fileSHA(t, f.dir.MemPath())
	for _, name := range policy.Names() {
		t.Run(name, func(t *testing.T) {
			vms, st := restoreWith(t, f, name, 2, 2)
			for _, r := range vms {
				t.Logf("vm %d: e2e %.0f ms, major faults %d, read %d bytes, prefetch %d bytes", r.Index, r.E2EMs, r.MajorFaults, r.MemFileReadBytes, st.Bytes)
			}
			if l := leftovers(); len(l) > 0 {
				t.Errorf("VMM processes left running: %v", l)
			}
		})
	}
	if after := fileSHA(t, f.dir.MemPath()); after != before {
		t.Fatalf("memory file changed by restores: sha256 %s -> %s", before, after)
	}
}
