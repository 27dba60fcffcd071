package pyfn

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"time"

	"github.com/snapbpf/snapbpf/internal/rootfs/layout"
	"github.com/snapbpf/snapbpf/internal/runner"
)

// Host is the runner of a runtime image started on the host, chrooted
// into the image, to compute the results a guest must return.
type Host struct {
	r   *runner.Runner
	dir string
}

// StartHost starts the runner over image (an erofs file), in a mount
// namespace of its own: the image's mount lives exactly as long as the
// runner, however this process ends. It needs root.
func StartHost(ctx context.Context, image string) (*Host, error) {
	dir, err := os.MkdirTemp("", "snapbpf-rootfs-")
	if err != nil {
		return nil, fmt.Errorf("host runner: %w", err)
	}
	// The runner finds /proc and /sys as in the guest (torch reads
	// /proc/cpuinfo) and an empty /tmp; /dev stays empty.
	script := `mount -t erofs -o ro,loop "$1" "$2" || exit 1
mount -t proc proc "$2/proc" && mount -t sysfs sysfs "$2/sys" && mount -t tmpfs tmpfs "$2/tmp" || exit 1
exec chroot "$2" env -i PATH=/usr/bin:/bin LC_ALL=C.UTF-8 HOME=/tmp PYTHONDONTWRITEBYTECODE=1 ` + layout.Python + " " + layout.RunnerPath
	cmd := exec.CommandContext(ctx, "unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh", image, dir)
	r, err := runner.Start(Runtime, cmd)
	if err != nil {
		os.Remove(dir)
		return nil, fmt.Errorf("host runner over %s (needs root, util-linux's unshare and erofs support in the host kernel): %w", image, err)
	}
	return &Host{r: r, dir: dir}, nil
}

// Runner is the host's runner.
func (h *Host) Runner() *runner.Runner { return h.r }

// Close ends the runner; its mount goes with its namespace.
func (h *Host) Close() error {
	h.r.Close()
	return os.Remove(h.dir)
}

// Expect runs function fn over image on the host, as a guest would (init
// with warm-up input warmup, then one invoke on payload), and returns the
// checksum of the output a guest must return (as the agent reports it),
// the output and the function's own time for the invoke on the host (the
// runner's clock, as the guest reports its own).
func Expect(ctx context.Context, image, fn string, warmup, payload []byte) (string, []byte, time.Duration, error) {
	return ExpectMedian(ctx, image, fn, warmup, payload, 1)
}

// ExpectMedian is Expect with the median time of runs invokes in one
// runner: one native invoke of a few milliseconds is at the mercy of the
// scheduler, and the host time divides the guest's into a slowdown.
func ExpectMedian(ctx context.Context, image, fn string, warmup, payload []byte, runs int) (string, []byte, time.Duration, error) {
	h, err := StartHost(ctx, image)
	if err != nil {
		return "", nil, 0, err
	}
	defer h.Close()
	if _, err := h.r.Init(fn, warmup); err != nil {
		return "", nil, 0, fmt.Errorf("init %s on the host: %w", fn, err)
	}
	var (
		out   []byte
		times []time.Duration
	)
	for range max(runs, 1) {
		o, ns, err := h.r.Invoke(payload)
		if err != nil {
			return "", nil, 0, fmt.Errorf("invoke %s on the host: %w", fn, err)
		}
		if out != nil && !bytes.Equal(o, out) {
			return "", nil, 0, fmt.Errorf("invoke %s on the host: two runs on the same input gave different outputs", fn)
		}
		out, times = o, append(times, time.Duration(ns))
	}
	slices.Sort(times)
	return Checksum(out), out, times[len(times)/2], nil
}

// Checksum is the checksum of a runtime function's output, as the agent
// reports it.
func Checksum(out []byte) string {
	s := sha256.Sum256(out)
	return hex.EncodeToString(s[:])
}
