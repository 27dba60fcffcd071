// Package seccomp starts programs under small seccomp filters that keep a
// VMM (or any recorded program) from doing two things to a snapshot's
// memory file that it would otherwise do:
//
//   - fallocate(2). QEMU 7.2 turns a discard of private file-backed guest
//     RAM (balloon, free page reporting) into a hole punched in the file
//     itself, even though the mapping is copy-on-write. A restored VM must
//     never change the memory file every other clone maps; refused, QEMU
//     falls back to dropping only its private copy.
//   - madvise(MADV_HUGEPAGE). On a file mapping with that advice, kernel
//     6.18 reads two 2 MiB folios around every fault whatever the file's
//     readahead setting (do_sync_mmap_readahead), and QEMU gives the advice
//     for all guest RAM. Answered with success and not done, faults read
//     what readahead allows; the cost is no THP for that process.
//
// Go cannot run code between fork and exec, so Wrap makes the command
// re-execute the current binary with the policy in its environment; this
// package's init installs the filter and execs the real program. Any binary
// that links this package supports it, test binaries included.
package seccomp

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Policy says which calls to filter.
type Policy struct {
	// DenyFallocate answers fallocate(2) with EPERM.
	DenyFallocate bool
	// IgnoreHugepageAdvice answers madvise(MADV_HUGEPAGE) with success
	// without doing it.
	IgnoreHugepageAdvice bool
}

func (p Policy) String() string {
	var s []string
	if p.DenyFallocate {
		s = append(s, "nofallocate")
	}
	if p.IgnoreHugepageAdvice {
		s = append(s, "nohugepage")
	}
	return strings.Join(s, ",")
}

func parsePolicy(s string) Policy {
	var p Policy
	for _, f := range strings.Split(s, ",") {
		switch f {
		case "nofallocate":
			p.DenyFallocate = true
		case "nohugepage":
			p.IgnoreHugepageAdvice = true
		}
	}
	return p
}

// Environment variables of the re-executed binary.
const (
	envProg   = "SNAPBPF_SECCOMP_EXEC"
	envPolicy = "SNAPBPF_SECCOMP_POLICY"
)

func init() {
	prog := os.Getenv(envProg)
	if prog == "" {
		return
	}
	p := parsePolicy(os.Getenv(envPolicy))
	os.Unsetenv(envProg)
	os.Unsetenv(envPolicy)
	// The filter belongs to this thread and passes to what it execs.
	runtime.LockOSThread()
	if err := Install(p); err != nil {
		fmt.Fprintf(os.Stderr, "snapbpf: %v\n", err)
		os.Exit(127)
	}
	// os.Args[0] is the program's own argv[0].
	err := syscall.Exec(prog, os.Args, os.Environ())
	fmt.Fprintf(os.Stderr, "snapbpf: exec %s: %v\n", prog, err)
	os.Exit(127)
}

// Wrap makes cmd start under p: through this binary, which installs the
// filter and then execs cmd's program with cmd's arguments and
// environment. The filter stays with the program and everything it starts.
// Call it before cmd.Start; a zero Policy leaves cmd alone.
func Wrap(cmd *exec.Cmd, p Policy) error {
	if p == (Policy{}) {
		return nil
	}
	if cmd.Err != nil {
		return cmd.Err
	}
	if runtime.GOARCH != "amd64" {
		return fmt.Errorf("seccomp filter for %s: only amd64 is supported", runtime.GOARCH)
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable to start %s under seccomp: %w", cmd.Path, err)
	}
	env := cmd.Env
	if env == nil {
		env = os.Environ()
	}
	cmd.Env = append(env, envProg+"="+cmd.Path, envPolicy+"="+p.String())
	cmd.Path = self
	return nil
}

// Install installs p's filter on the calling thread (and what it execs).
func Install(p Policy) error {
	prog := filter(p)
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("seccomp: set no_new_privs: %w", err)
	}
	if _, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&fprog))); errno != 0 {
		return fmt.Errorf("seccomp: install filter: %w", errno)
	}
	return nil
}

// filter builds the classic BPF program over struct seccomp_data: nr at
// offset 0, arch at 4, args at 16 (little-endian, so the low half of
// args[2] is at 32).
func filter(p Policy) []unix.SockFilter {
	const (
		ld    = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq   = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		ret   = unix.BPF_RET | unix.BPF_K
		allow = unix.SECCOMP_RET_ALLOW
	)
	f := []unix.SockFilter{
		{Code: ld, K: 4},
		{Code: jeq, K: unix.AUDIT_ARCH_X86_64, Jt: 1},
		{Code: ret, K: unix.SECCOMP_RET_KILL_PROCESS}, // another ABI could bypass the checks
		{Code: ld, K: 0},
	}
	if p.DenyFallocate {
		f = append(f,
			unix.SockFilter{Code: jeq, K: unix.SYS_FALLOCATE, Jf: 1},
			unix.SockFilter{Code: ret, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		)
	}
	if p.IgnoreHugepageAdvice {
		f = append(f,
			unix.SockFilter{Code: jeq, K: unix.SYS_MADVISE, Jf: 3},
			unix.SockFilter{Code: ld, K: 32},
			unix.SockFilter{Code: jeq, K: unix.MADV_HUGEPAGE, Jf: 1},
			unix.SockFilter{Code: ret, K: unix.SECCOMP_RET_ERRNO}, // errno 0: skipped, returns 0
		)
	}
	return append(f, unix.SockFilter{Code: ret, K: allow})
}
