// Package layout names the paths of a runtime image that both its builder
// (package rootfs, on the host) and its user (the agent, in the guest)
// need, without the builder's dependencies in the agent.
package layout

const (
	// RunnerDir holds the runner and its functions package.
	RunnerDir = "/usr/lib/snapbpf"
	// RunnerPath is the runner script the agent starts.
	RunnerPath = RunnerDir + "/runner.py"
	// Python is the interpreter the agent starts the runner with.
	Python = "/usr/bin/python3"
	// GuestMount is where the agent mounts the image in the guest.
	GuestMount = "/rootfs"
	// GuestDevice is the image's block device in the guest: the first
	// virtio disk.
	GuestDevice = "/dev/vda"
)
