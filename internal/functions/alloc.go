package functions

import "encoding/binary"

func init() {
	register(Spec{
		Name:           "alloc",
		Summary:        "allocate DataMiB (default 64) of fresh memory in 4 KiB to 1 MiB objects, fill it from a small table and checksum it",
		DefaultDataMiB: 64,
		memory:         func(d int) (int, int) { return allocTableBytes / MiB, d },
		newImpl:        func() impl { return &allocFunc{} },
	})
}

const allocTableBytes = 1 * MiB

// allocFunc stands for functions dominated by fresh allocations rather than
// by init data: after a restore its cost is page faults on memory the
// snapshot never held. DataMiB sets the allocation per invoke; the init
// data is a fixed 1 MiB table.
type allocFunc struct {
	total int
	table []uint64
}

func (f *allocFunc) init(dataMiB int) error {
	f.total = dataMiB * MiB
	f.table = make([]uint64, allocTableBytes/8)
	r := newRNG(seedFor("alloc/init", 0))
	for i := range f.table {
		f.table[i] = r.uint64()
	}
	return nil
}

func (f *allocFunc) invoke(input uint64) (Result, error) {
	r := newRNG(seedFor("alloc", input))
	mask := len(f.table) - 1
	var chunks [][]byte
	for n := 0; n < f.total; {
		size := min(4096<<r.intn(9), f.total-n)
		c := make([]byte, size)
		base, salt := r.intn(len(f.table)), r.uint64()
		for j := 0; j+8 <= len(c); j += 8 {
			w := j / 8
			binary.LittleEndian.PutUint64(c[j:], f.table[(base+w)&mask]^(uint64(w)*prime1+salt))
		}
		chunks = append(chunks, c)
		n += size
	}
	// Hash only after everything is allocated, so all of it is live at once
	// (the point is peak fresh memory, not a reused buffer).
	d := newDigest()
	for _, c := range chunks {
		d.Write(c)
	}
	return Result{
		Checksum:     d.sum(),
		OutputBytes:  int64(f.total),
		TouchedBytes: int64(min(f.total, allocTableBytes)),
	}, nil
}
