package capture

import "golang.org/x/sys/unix"

func openSyscalls() syscallNumbers {
	return syscallNumbers{open: unix.SYS_OPEN, openat: unix.SYS_OPENAT, openat2: unix.SYS_OPENAT2}
}
