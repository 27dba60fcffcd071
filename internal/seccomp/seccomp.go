// Package seccomp runs a program under a seccomp filter that refuses
// fallocate(2).
//
// QEMU 7.2 turns a discard of private file-backed guest RAM (balloon, free
// page reporting) into a hole punched in the file itself, even though the
// mapping is copy-on-write. A restored VM must never change the snapshot's
// memory file that every other clone maps, so VMMs run with fallocate
// answered by EPERM; QEMU then falls back to dropping only its private copy.
//
// Go cannot run code between fork and exec, so Command re-executes the
// current binary with a marker in its environment; this package's init
// installs the filter and execs the real program. Any binary that links
// this package therefore supports it, test binaries included.
package seccomp

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// envMarker carries the program to exec through the re-executed binary.
const envMarker = "SNAPBPF_SECCOMP_EXEC"

func init() {
	prog := os.Getenv(envMarker)
	if prog == "" {
		return
	}
	os.Unsetenv(envMarker)
	runtime.LockOSThread()
	if err := denyFallocate(); err != nil {
		fmt.Fprintf(os.Stderr, "snapbpf: seccomp: %v\n", err)
		os.Exit(127)
	}
	// os.Args[0] is the program's own argv[0].
	err := syscall.Exec(prog, os.Args, os.Environ())
	fmt.Fprintf(os.Stderr, "snapbpf: exec %s: %v\n", prog, err)
	os.Exit(127)
}

// Command returns a command that runs path with args under the filter.
// The caller sets Stdout, Stderr and SysProcAttr as for any exec.Cmd.
func Command(ctx context.Context, path string, args ...string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable to start %s under seccomp: %w", path, err)
	}
	cmd := exec.CommandContext(ctx, self)
	cmd.Args = append([]string{path}, args...)
	cmd.Env = append(os.Environ(), envMarker+"="+path)
	return cmd, nil
}

// denyFallocate installs, for this thread and what it execs, a filter that
// answers fallocate with EPERM and allows everything else.
func denyFallocate() error {
	const (
		offArch = 4 // offsetof(struct seccomp_data, arch)
		offNr   = 0 // offsetof(struct seccomp_data, nr)
	)
	filter := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: offArch},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 1, Jf: 0, K: unix.AUDIT_ARCH_X86_64},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_KILL_PROCESS},
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: offNr},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: unix.SYS_FALLOCATE},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&prog))); errno != 0 {
		return fmt.Errorf("install filter: %w", errno)
	}
	return nil
}
