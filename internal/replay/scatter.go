package replay

import (
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/snapbpf/snapbpf/internal/trace"
)

// scatter returns a copy of t in which a fraction frac (0 to 1) of the
// non-zero data pages it touches are moved to other non-zero data pages of
// the memory file, chosen at random (seeded): a working set as scattered
// across the file as frac says. Holes and zero pages stay where they are,
// so what is zero (FaaSnap maps it anonymous) or a hole (never read) does
// not change; the moved pages keep their touch times and order. nonZero
// says which pages of the file hold non-zero data.
func scatter(t *trace.Trace, frac float64, seed uint64, nonZero *bitmap) (*trace.Trace, int, error) {
	if frac < 0 || frac > 1 {
		return nil, 0, fmt.Errorf("scatter fraction %g: want 0 to 1", frac)
	}
	out := &trace.Trace{Version: t.Version, Meta: t.Meta, Events: slices.Clone(t.Events)}
	if frac == 0 {
		return out, 0, nil
	}
	var movable []uint64
	used := make(map[uint64]bool)
	for _, p := range pagesOf(t) {
		used[p] = true
		if nonZero.has(p) {
			movable = append(movable, p)
		}
	}
	rng := rand.New(rand.NewPCG(seed, 0x5ca77e7))
	rng.Shuffle(len(movable), func(i, j int) { movable[i], movable[j] = movable[j], movable[i] })
	k := int(frac*float64(len(movable)) + 0.5)
	// Targets: non-zero pages the trace does not touch, drawn without
	// repeats.
	var free []uint64
	for p := range nonZero.n {
		if nonZero.has(p) && !used[p] {
			free = append(free, p)
		}
	}
	k = min(k, len(free))
	to := make(map[uint64]uint64, k)
	for i := range k {
		j := i + rng.IntN(len(free)-i)
		free[i], free[j] = free[j], free[i]
		to[movable[i]] = free[i]
	}
	for i, e := range out.Events {
		if np, ok := to[e.Page]; ok {
			out.Events[i].Page = np
		}
	}
	out.Meta.Source += fmt.Sprintf("; scattered %d of %d non-zero pages (fraction %g, seed %d)", k, len(movable), frac, seed)
	if err := out.Validate(); err != nil {
		return nil, 0, fmt.Errorf("scatter: %w", err)
	}
	return out, k, nil
}
