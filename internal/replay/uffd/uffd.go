// Package uffd is a small userfaultfd(2) binding: create a descriptor,
// register anonymous memory for missing-page faults, install pages with
// UFFDIO_COPY, wake waiting threads, and serve faults from a goroutine.
//
// It is what REAP's memory manager does with a VMM's guest memory; the
// replay harness uses it on memory of its own process.
package uffd

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctl numbers and constants from linux/userfaultfd.h (x86-64 and arm64
// share them).
const (
	uffdAPI          = 0xAA
	ioctlAPI         = 0xC018AA3F // _IOWR(0xAA, 0x3F, struct uffdio_api)
	ioctlRegister    = 0xC020AA00 // _IOWR(0xAA, 0x00, struct uffdio_register)
	ioctlUnregister  = 0x8010AA01 // _IOR(0xAA, 0x01, struct uffdio_range)
	ioctlWake        = 0x8010AA02 // _IOR(0xAA, 0x02, struct uffdio_range)
	ioctlCopy        = 0xC028AA03 // _IOWR(0xAA, 0x03, struct uffdio_copy)
	ioctlNewFromDev  = 0xAA00     // USERFAULTFD_IOC_NEW on /dev/userfaultfd
	registerMissing  = 1          // UFFDIO_REGISTER_MODE_MISSING
	copyModeDontWake = 1          // UFFDIO_COPY_MODE_DONTWAKE

	// EventPagefault is uffd_msg.event for a page fault.
	EventPagefault = 0x12
	// MsgSize is sizeof(struct uffd_msg).
	MsgSize = 32
	// FlagWrite is set in a page fault message's flags for a write.
	FlagWrite = 1 << 0
)

type apiArg struct {
	API, Features, Ioctls uint64
}

type rangeArg struct {
	Start, Len uint64
}

type registerArg struct {
	Range  rangeArg
	Mode   uint64
	Ioctls uint64
}

type copyArg struct {
	Dst, Src, Len, Mode uint64
	Copy                int64
}

// FD is a userfaultfd descriptor.
type FD struct {
	fd int
}

// New creates a userfaultfd, non-blocking and close-on-exec, and does the
// API handshake. It tries the system call first and /dev/userfaultfd after
// (some systems allow only one of them).
func New() (*FD, error) {
	fd, _, errno := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK, 0, 0)
	if errno != 0 {
		var err error
		fd, err = fromDevice()
		if err != nil {
			return nil, fmt.Errorf("userfaultfd: %w (system call: %w)", err, errno)
		}
	}
	u := &FD{fd: int(fd)}
	a := apiArg{API: uffdAPI}
	if err := u.ioctl(ioctlAPI, unsafe.Pointer(&a)); err != nil {
		u.Close()
		return nil, fmt.Errorf("userfaultfd: UFFDIO_API: %w", err)
	}
	return u, nil
}

func fromDevice() (uintptr, error) {
	dev, err := os.OpenFile("/dev/userfaultfd", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer dev.Close()
	fd, _, errno := unix.Syscall(unix.SYS_IOCTL, dev.Fd(), ioctlNewFromDev, uintptr(unix.O_CLOEXEC|unix.O_NONBLOCK))
	if errno != 0 {
		return 0, fmt.Errorf("/dev/userfaultfd: USERFAULTFD_IOC_NEW: %w", errno)
	}
	return fd, nil
}

// Fd is the descriptor number, for polling.
func (u *FD) Fd() int { return u.fd }

func (u *FD) ioctl(req uintptr, arg unsafe.Pointer) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(u.fd), req, uintptr(arg))
	if errno != 0 {
		return errno
	}
	return nil
}

// Register asks for missing-page faults in [addr, addr+length), which must
// be page-aligned anonymous private memory.
func (u *FD) Register(addr, length uintptr) error {
	r := registerArg{Range: rangeArg{Start: uint64(addr), Len: uint64(length)}, Mode: registerMissing}
	if err := u.ioctl(ioctlRegister, unsafe.Pointer(&r)); err != nil {
		return fmt.Errorf("userfaultfd: register %#x+%d: %w", addr, length, err)
	}
	return nil
}

// Unregister ends fault reporting for [addr, addr+length).
func (u *FD) Unregister(addr, length uintptr) error {
	r := rangeArg{Start: uint64(addr), Len: uint64(length)}
	if err := u.ioctl(ioctlUnregister, unsafe.Pointer(&r)); err != nil {
		return fmt.Errorf("userfaultfd: unregister %#x+%d: %w", addr, length, err)
	}
	return nil
}

// ErrExist is returned by Copy when a page of the range is already mapped.
var ErrExist = unix.EEXIST

// Copy installs length bytes from src at dst (both page-aligned, in this
// process), atomically per page. Unless dontWake, threads waiting on the
// range are woken. A copy the kernel cuts short (EAGAIN, the memory map
// changing) is resumed. It returns the bytes installed; with ErrExist some
// page was already there and the rest of the range was not copied.
func (u *FD) Copy(dst, src, length uintptr, dontWake bool) (uintptr, error) {
	var mode uint64
	if dontWake {
		mode = copyModeDontWake
	}
	var done uintptr
	for done < length {
		c := copyArg{Dst: uint64(dst + done), Src: uint64(src + done), Len: uint64(length - done), Mode: mode}
		err := u.ioctl(ioctlCopy, unsafe.Pointer(&c))
		if c.Copy > 0 {
			done += uintptr(c.Copy)
		}
		if err == nil {
			continue
		}
		if errors.Is(err, unix.EAGAIN) {
			continue
		}
		return done, err
	}
	return done, nil
}

// Wake wakes threads waiting on faults in [addr, addr+length).
func (u *FD) Wake(addr, length uintptr) error {
	r := rangeArg{Start: uint64(addr), Len: uint64(length)}
	if err := u.ioctl(ioctlWake, unsafe.Pointer(&r)); err != nil {
		return fmt.Errorf("userfaultfd: wake %#x+%d: %w", addr, length, err)
	}
	return nil
}

// Close closes the descriptor. Ranges still registered stop reporting;
// threads still waiting are woken and retry their fault.
func (u *FD) Close() error {
	if u.fd < 0 {
		return nil
	}
	err := unix.Close(u.fd)
	u.fd = -1
	if err != nil {
		return fmt.Errorf("userfaultfd: close: %w", err)
	}
	return nil
}
