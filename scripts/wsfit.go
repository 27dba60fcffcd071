//go:build ignore

// wsfit says where the pages of a working set recorded on a python
// function's input 2 lie that an invocation on input 1 does not touch (the
// bench's "prefetched, not touched" on the other input shape): per 8 MiB
// of the memory file, so that the guest's page structures (the top of
// guest RAM) stand out from the function's own pages. It reads a bench
// snapshot directory: wset/bench-input-2.ws, bench-input-1.trace, mem.
//
//	go run scripts/wsfit.go /var/tmp/issue16-final/snapshots/python-chameleon
package main

import (
	"fmt"
	"os"

	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/trace"
	"github.com/snapbpf/snapbpf/internal/wset"
)

func main() {
	dir := os.Args[1]
	t, err := trace.Read(dir + "/bench-input-1.trace")
	if err != nil {
		panic(err)
	}
	set, err := wset.Read(dir + "/wset/bench-input-2.ws")
	if err != nil {
		panic(err)
	}
	data, err := pages.Data(dir + "/mem")
	if err != nil {
		panic(err)
	}
	seenData, seenAny := map[uint64]bool{}, map[uint64]bool{}
	for _, e := range t.Events {
		if e.Op == trace.OpUpgrade {
			continue
		}
		seenAny[e.Page] = true
		if e.Flags&trace.FlagHole == 0 {
			seenData[e.Page] = true
		}
	}
	isData := func(p uint64) bool { _, ok := pages.Search(data, p); return ok }
	var n, un, unHoleTouched, unHole, unData int
	hist := map[uint64]int{}
	for _, e := range set.Extents {
		for p := e.Page; p < e.End(); p++ {
			n++
			if seenData[p] {
				continue
			}
			un++
			switch {
			case seenAny[p]:
				unHoleTouched++
			case !isData(p):
				unHole++
			default:
				unData++
				hist[p/2048]++ // 8 MiB buckets
			}
		}
	}
	fmt.Printf("%s ws=%d untouched=%d (%.1f%%) holeTouched=%d holeUntouched=%d dataUntouched=%d (%.1f%%)\n", dir, n, un, 100*float64(un)/float64(n), unHoleTouched, unHole, unData, 100*float64(unData)/float64(n))
	fmt.Println("  data untouched per 8MiB bucket:", hist)
}
