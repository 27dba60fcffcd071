package uffd

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func needUFFD(t *testing.T) *FD {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: vm.unprivileged_userfaultfd is 0 on these hosts")
	}
	u, err := New()
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func anon(t *testing.T, n int) []byte {
	t.Helper()
	m, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(m) })
	return m
}

func addr(b []byte) uintptr { return uintptr(unsafe.Pointer(&b[0])) }

// TestServeAndStop serves faults from a source buffer, checks every page
// holds the source's bytes, and checks that stopping leaves no goroutine
// or descriptor behind.
func TestServeAndStop(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	fds, goroutines := openFDs(t), runtime.NumGoroutine()
	u := needUFFD(t)
	const pages = 256
	src, dst := anon(t, pages*pageSize), anon(t, pages*pageSize)
	if _, err := rand.Read(src); err != nil {
		t.Fatal(err)
	}
	if err := u.Register(addr(dst), uintptr(len(dst))); err != nil {
		t.Fatal(err)
	}
	// Half the pages are installed up front, as REAP installs its working
	// set; the handler serves the rest.
	for p := 0; p < pages; p += 2 {
		if _, err := u.Copy(addr(dst)+uintptr(p*pageSize), addr(src)+uintptr(p*pageSize), pageSize, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := u.Wake(addr(dst), uintptr(len(dst))); err != nil {
		t.Fatal(err)
	}
	base := addr(dst)
	// The kernel may report a fault on a page more than once (a thread
	// that retries before the page's copy woke it): the handler answers
	// the repeat with ErrExist and a wake, so the test counts pages.
	var mu sync.Mutex
	served := make(map[uintptr]bool)
	h, err := Serve(u, func(a uintptr, _ bool) error {
		mu.Lock()
		served[a] = true
		mu.Unlock()
		off := a - base
		_, err := u.Copy(a, addr(src)+off, pageSize, false)
		if errors.Is(err, ErrExist) {
			return u.Wake(a, pageSize)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan bool)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		done <- bytes.Equal(dst, src)
	}()
	select {
	case ok := <-done:
		if !ok {
			t.Error("pages differ from the source")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("touching registered memory hung")
	}
	mu.Lock()
	for a := range served {
		if p := (a - base) / pageSize; p%2 == 0 {
			t.Errorf("handler took a fault on page %d, installed up front", p)
		}
	}
	if len(served) != pages/2 {
		t.Errorf("handler served %d pages, want %d", len(served), pages/2)
	}
	mu.Unlock()
	if got := h.Faults(); got < pages/2 {
		t.Errorf("handler counted %d faults, want at least %d", got, pages/2)
	}
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := h.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if err := u.Unregister(addr(dst), uintptr(len(dst))); err != nil {
		t.Fatal(err)
	}
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	if got := openFDs(t); got != fds {
		t.Errorf("%d descriptors open after close, %d before", got, fds)
	}
	// The handler's goroutine is gone once Stop returns.
	for i := 0; runtime.NumGoroutine() > goroutines && i < 100; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if got := runtime.NumGoroutine(); got > goroutines {
		t.Errorf("%d goroutines after stop, %d before", got, goroutines)
	}
}

// TestStopIdle stops a handler that never served anything, and closing
// the descriptor releases a thread waiting on a fault nobody serves.
func TestStopIdle(t *testing.T) {
	u := needUFFD(t)
	dst := anon(t, 4*pageSize)
	if err := u.Register(addr(dst), uintptr(len(dst))); err != nil {
		t.Fatal(err)
	}
	h, err := Serve(u, func(uintptr, bool) error { return errors.New("must not be called") })
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	done := make(chan byte)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		done <- dst[0]
	}()
	time.Sleep(50 * time.Millisecond)
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-done:
		if b != 0 {
			t.Errorf("unserved page reads %d, want a zero page", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a thread waiting on a fault stayed blocked after close")
	}
}

func TestCopyExisting(t *testing.T) {
	u := needUFFD(t)
	defer u.Close()
	src, dst := anon(t, 2*pageSize), anon(t, 2*pageSize)
	src[0], src[pageSize] = 7, 9
	if err := u.Register(addr(dst), uintptr(len(dst))); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Copy(addr(dst), addr(src), pageSize, true); err != nil {
		t.Fatal(err)
	}
	n, err := u.Copy(addr(dst), addr(src), 2*pageSize, true)
	if !errors.Is(err, ErrExist) || n != 0 {
		t.Fatalf("copy over an installed page: %d bytes, %v; want 0, EEXIST", n, err)
	}
}
