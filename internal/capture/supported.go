package capture

import (
	"fmt"
	"os"
)

// Supported reports whether BPF capture can run here: nil if the program
// loads and attaches, else an error that says what is missing (the error
// wraps ErrNoPrivilege when privileges are).
func Supported() error {
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return fmt.Errorf("kernel BTF missing (/sys/kernel/btf/vmlinux), which CO-RE needs: %w", err)
	}
	r := &Recorder{done: make(chan struct{})}
	if err := r.load(options{ringBuffer: uint32(os.Getpagesize())}); err != nil {
		return err
	}
	return r.Close()
}
