// Command guestinit is the /init of the guest boot test: it reports that it
// runs, loads the image's modules with kmod, checks that virtio came up and
// powers the VM off. It prints only marker lines the test looks for.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/kmod"
)

func main() {
	// Stdout is /dev/console (the initramfs carries the node), i.e. ttyS0.
	fmt.Printf("SNAPBPF-INIT-START pid=%d\n", os.Getpid())
	// The kernel passes unknown name=value words of its command line to
	// init's environment; this one makes init exit, which panics the kernel.
	if os.Getenv("snapbpf_test") == "exit" {
		fmt.Println("SNAPBPF-INIT-EXITING")
		os.Exit(0)
	}
	if err := run(); err != nil {
		fmt.Printf("SNAPBPF-INIT-FAIL %v\n", err)
	}
	unix.Sync()
	// Power off; if that is not wired up, a reboot makes QEMU (-no-reboot) exit.
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		fmt.Printf("SNAPBPF-INIT-POWEROFF-FAILED %v\n", err)
	}
	unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	select {}
}

func run() error {
	if err := unix.Mount("proc", "/proc", "proc", 0, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	if err := unix.Mount("sysfs", "/sys", "sysfs", 0, ""); err != nil {
		return fmt.Errorf("mount /sys: %w", err)
	}
	cmdline, _ := os.ReadFile("/proc/cmdline")
	fmt.Printf("SNAPBPF-INIT-CMDLINE %s\n", strings.TrimSpace(string(cmdline)))
	up, _ := os.ReadFile("/proc/uptime")
	fmt.Printf("SNAPBPF-INIT-UPTIME %s\n", strings.Fields(string(up))[0])

	t0 := time.Now()
	names, err := kmod.LoadImageModules()
	if err != nil {
		return err
	}
	loadTime := time.Since(t0)
	// Loading twice must be harmless (EEXIST is success).
	if err := kmod.LoadAll(kmod.Dir, names); err != nil {
		return fmt.Errorf("second load: %w", err)
	}
	if _, err := os.Stat("/sys/bus/virtio"); err != nil {
		return fmt.Errorf("virtio bus missing after loading %v: %w", names, err)
	}
	// Devices bind asynchronously to their drivers; give them a moment.
	var bound []string
	for i := 0; i < 50; i++ {
		bound = bound[:0]
		devs, _ := filepath.Glob("/sys/bus/virtio/devices/*/driver")
		for _, d := range devs {
			target, err := os.Readlink(d)
			if err == nil {
				bound = append(bound, filepath.Base(target))
			}
		}
		if len(bound) > 0 && len(bound) == len(devs) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Printf("SNAPBPF-MODULES-OK modules=%s load=%s drivers=%s\n",
		strings.Join(names, ","), loadTime.Round(time.Millisecond), strings.Join(bound, ","))
	return nil
}
