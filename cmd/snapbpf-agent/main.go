// Command snapbpf-agent is PID 1 of every function microVM. It sets up the
// guest, then answers the host's requests on the first serial port:
// initialise a function before the snapshot, mix in fresh entropy after a
// restore, invoke the function, report memory statistics. The request loop
// is package agent; this command is the guest's side of it.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/agent"
	"github.com/snapbpf/snapbpf/internal/rootfs/layout"
)

const serialPath = "/dev/ttyS0"

func main() {
	code := 0
	switch err := run(); {
	case errors.Is(err, agent.ErrPoweroff):
		// The reply is written to the tty, not yet out of the UART:
		// let it out before the VM goes.
		time.Sleep(10 * time.Millisecond)
	case err != nil:
		fmt.Fprintf(os.Stderr, "snapbpf-agent: %v\n", err)
		code = 1
	}
	// PID 1 must not return: that panics the kernel. Power off instead, so
	// the host sees the VMM exit.
	if os.Getpid() == 1 {
		unix.Sync()
		unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	}
	os.Exit(code)
}

func run() error {
	start := time.Now()
	info := map[string]string{}
	if os.Getpid() == 1 {
		if err := mountAll(); err != nil {
			return err
		}
		if n, err := loadModules(); err != nil {
			// Not fatal: the function still runs without the balloon; the
			// host sees why in the ready message.
			info["modules_error"] = err.Error()
		} else {
			info["modules"] = fmt.Sprint(n)
		}
		switch ok, err := mountRootfs(); {
		case err != nil:
			info["rootfs_error"] = err.Error()
		case ok:
			info["rootfs"] = layout.GuestMount
		}
	}
	var (
		out io.Writer
		in  io.Reader
	)
	if port := findAgentPort(); port != "" {
		f, err := os.OpenFile(port, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("open agent port %s: %w", port, err)
		}
		defer f.Close()
		out, in = f, portReader{f}
		info["channel"] = port
	} else {
		tty, err := openSerial(serialPath)
		if err != nil {
			return err
		}
		defer tty.Close()
		out, in = tty, tty
		info["channel"] = serialPath
	}
	a := agent.New(out, linuxSystem{})
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		info["kernel"] = unix.ByteSliceToString(u.Release[:])
	}
	info["uptime_ms"] = fmt.Sprint(uptimeMs())
	info["setup_ms"] = fmt.Sprint(time.Since(start).Milliseconds())
	if err := a.Ready(info); err != nil {
		return err
	}
	return a.Serve(in)
}

// mountAll mounts the filesystems a bare initramfs lacks.
func mountAll() error {
	for _, m := range []struct{ src, dir, fstype string }{
		{"devtmpfs", "/dev", "devtmpfs"},
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"tmpfs", "/tmp", "tmpfs"},
	} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.src, m.dir, m.fstype, 0, ""); err != nil && err != unix.EBUSY {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.dir, err)
		}
	}
	return nil
}

// openSerial opens the port in raw mode: no echo, no line editing, no
// CR/NL translation, no 4 KiB canonical line limit.
func openSerial(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	fd := int(f.Fd())
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("get termios of %s: %w", path, err)
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN] = 1
	t.Cc[unix.VTIME] = 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, t); err != nil {
		f.Close()
		return nil, fmt.Errorf("set %s raw: %w", path, err)
	}
	return f, nil
}

func uptimeMs() int64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) != nil {
		return 0
	}
	return ts.Nano() / 1e6
}
