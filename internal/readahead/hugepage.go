package readahead

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A file mapping with VM_HUGEPAGE (madvise(MADV_HUGEPAGE)) takes another
// path on each fault in kernel 6.18 (do_sync_mmap_readahead): it reads two
// 2 MiB folios around the fault "even if readahead is disabled", whatever
// the struct file's window, MADV_RANDOM (one folio then), PR_SET_THP_DISABLE
// or transparent_hugepage=never say (all measured). QEMU madvises all guest
// RAM MADV_HUGEPAGE, file-backed too (smaps VmFlags "hg"), so a QEMU with
// readahead off still reads 4 MiB per fault. The only cure from outside is
// to keep the advice from reaching the kernel: a seccomp filter that makes
// madvise(..., MADV_HUGEPAGE) succeed without doing anything. QEMU ignores
// the result anyway; the cost is no THP for the process's anonymous memory.

// execEnv carries the real program through the re-exec trampoline.
const execEnv = "SNAPBPF_NOHUGEPAGE_EXEC"

func init() {
	if path := os.Getenv(execEnv); path != "" {
		trampoline(path)
	}
}

// IgnoreHugepageAdvice makes cmd start through this binary, which installs
// the filter described above on itself and then execs cmd's program with
// cmd's arguments and environment. The filter stays with the program and
// every process it starts. Call it before cmd.Start.
func IgnoreHugepageAdvice(cmd *exec.Cmd) error {
	if cmd.Err != nil {
		return cmd.Err
	}
	if _, err := hugepageFilter(); err != nil {
		return err
	}
	env := cmd.Env
	if env == nil {
		env = os.Environ()
	}
	cmd.Env = append(env, execEnv+"="+cmd.Path)
	// In the child, before exec, /proc/self/exe is still this binary.
	cmd.Path = "/proc/self/exe"
	return nil
}

// trampoline runs before main in the re-executed binary: filter, then exec.
func trampoline(path string) {
	// Seccomp filters and exec belong to one thread; init runs on the
	// main thread, keep it there.
	runtime.LockOSThread()
	os.Unsetenv(execEnv)
	if err := InstallHugepageFilter(); err != nil {
		fmt.Fprintf(os.Stderr, "snapbpf: %v\n", err)
		os.Exit(127)
	}
	err := syscall.Exec(path, os.Args, os.Environ())
	fmt.Fprintf(os.Stderr, "snapbpf: exec %s: %v\n", path, err)
	os.Exit(127)
}

// InstallHugepageFilter installs, on the calling thread, a seccomp filter
// that answers madvise(..., MADV_HUGEPAGE) with success and does nothing.
// Filters stack, so a VMM launcher can install it next to its own.
func InstallHugepageFilter() error {
	prog, err := hugepageFilter()
	if err != nil {
		return err
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	err = seccomp(&fprog)
	if errors.Is(err, unix.EACCES) {
		// Without CAP_SYS_ADMIN the kernel wants no_new_privs first.
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("prctl no_new_privs: %w", err)
		}
		err = seccomp(&fprog)
	}
	if err != nil {
		return fmt.Errorf("install seccomp filter: %w", err)
	}
	return nil
}

func seccomp(fprog *unix.SockFprog) error {
	_, _, e := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(fprog)))
	if e != 0 {
		return e
	}
	return nil
}

// hugepageFilter returns the classic BPF program over struct seccomp_data
// (nr at 0, arch at 4, args at 16: little-endian, so the low half of
// args[2] is at 32).
func hugepageFilter() ([]unix.SockFilter, error) {
	var arch uint32
	switch runtime.GOARCH {
	case "amd64":
		arch = unix.AUDIT_ARCH_X86_64
	case "arm64":
		arch = unix.AUDIT_ARCH_AARCH64
	default:
		return nil, fmt.Errorf("hugepage filter: no seccomp arch for %s", runtime.GOARCH)
	}
	const (
		ld  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		ret = unix.BPF_RET | unix.BPF_K
	)
	return []unix.SockFilter{
		{Code: ld, K: 4},
		{Code: jeq, K: arch, Jf: 5}, // another ABI: allow
		{Code: ld, K: 0},
		{Code: jeq, K: unix.SYS_MADVISE, Jf: 3},
		{Code: ld, K: 32},
		{Code: jeq, K: unix.MADV_HUGEPAGE, Jf: 1},
		{Code: ret, K: unix.SECCOMP_RET_ERRNO | 0}, // skip the call, return 0
		{Code: ret, K: unix.SECCOMP_RET_ALLOW},
	}, nil
}
