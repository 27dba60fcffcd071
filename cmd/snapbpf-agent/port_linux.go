package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// agentPortName is the virtio-serial port the host's VMM adds for the
// protocol (qemu.AgentPortName; not imported, to keep the VMM driver out of
// the guest's binary).
const agentPortName = "org.snapbpf.agent"

// findAgentPort returns the device of the agent's virtio-serial port, or ""
// when the VM has none. Ports appear a moment after virtio_console loads,
// when the host has answered the driver's handshake.
func findAgentPort() string {
	deadline := time.Now().Add(2 * time.Second)
	for {
		names, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
		for _, n := range names {
			if b, err := os.ReadFile(n); err == nil && strings.TrimSpace(string(b)) == agentPortName {
				dev := "/dev/" + filepath.Base(filepath.Dir(n))
				if _, err := os.Stat(dev); err == nil {
					return dev
				}
			}
		}
		// No virtio-serial device at all: no port to wait for.
		devs, _ := filepath.Glob("/sys/bus/virtio/drivers/virtio_console/virtio*")
		if len(devs) == 0 || time.Now().After(deadline) {
			return ""
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// portReader reads the agent port. A read while the host end is not
// connected (between a snapshot's VMM and a restored one's) returns 0
// bytes, which is not the end of the protocol: wait for the host instead.
type portReader struct{ f *os.File }

func (r portReader) Read(b []byte) (int, error) {
	for {
		n, err := r.f.Read(b)
		if n > 0 || (err != nil && err != io.EOF) {
			return n, err
		}
		time.Sleep(5 * time.Millisecond)
	}
}
