//go:build ignore

// Run: go run scripts/faultcost.go FILE (a file of at least 24 MiB, cached);
// the table in docs/measurements/issue16.md, session "replayfit".

// faultcost times, per page, what a replayed guest's first touch costs on
// this host: a touch of a page already mapped, a read fault on a cached
// file page (no fault-around), a private write (copy-on-write) fault on a
// cached file page, and a write fault on anonymous memory.
package main

import (
	"fmt"
	"os"
	"sort"
	"syscall"
	"time"
	"unsafe"
)

const P = 4096
const N = 3000

func madvise(b []byte, advice int) {
	if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(advice)); e != 0 {
		panic(e)
	}
}

const madvPopulateRead = 22
const madvPopulateWrite = 23

var sink byte

func touchRead(b []byte) time.Duration {
	t := time.Now()
	for i := 0; i < N; i++ {
		sink += b[i*P*2]
	}
	return time.Since(t)
}

func touchWrite(b []byte) time.Duration {
	t := time.Now()
	for i := 0; i < N; i++ {
		b[i*P*2]++
	}
	return time.Since(t)
}

func main() {
	path := os.Args[1] // a file of at least 2*N pages, kept cached
	f, err := os.Open(path)
	if err != nil {
		panic(err)
	}
	size := 2 * N * P
	buf := make([]byte, size)
	if _, err := f.ReadAt(buf, 0); err != nil {
		panic(err)
	}
	res := map[string][]float64{}
	for rep := 0; rep < 7; rep++ {
		m := func() []byte {
			b, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE)
			if err != nil {
				panic(err)
			}
			madvise(b, syscall.MADV_RANDOM) // no fault-around
			return b
		}
		// record touches b's pages one way, records the cost per page
		// under name and unmaps b.
		record := func(name string, b []byte, touch func([]byte) time.Duration) {
			res[name] = append(res[name], float64(touch(b).Nanoseconds())/N)
			syscall.Munmap(b)
		}
		b := m()
		madvise(b, madvPopulateRead)
		record("touch, already mapped", b, touchRead)
		record("read fault, cached file page", m(), touchRead)
		record("write fault (CoW), cached file page", m(), touchWrite)
		held, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
		if err != nil {
			panic(err)
		}
		madvise(held, madvPopulateRead)
		record("read fault, page also held mapped", m(), touchRead)
		record("write fault (CoW), page also held mapped", m(), touchWrite)
		syscall.Munmap(held)
		a, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS)
		if err != nil {
			panic(err)
		}
		record("write fault, anonymous", a, touchWrite)
	}
	keys := []string{"touch, already mapped", "read fault, cached file page", "read fault, page also held mapped", "write fault (CoW), cached file page", "write fault (CoW), page also held mapped", "write fault, anonymous"}
	for _, k := range keys {
		v := res[k]
		sort.Float64s(v)
		fmt.Printf("%-38s median %6.2f us per page (min %.2f, max %.2f, %d pages x %d)\n", k, v[len(v)/2]/1000, v[0]/1000, v[len(v)-1]/1000, N, len(v))
	}
}
