// Package qemu drives QEMU's microvm machine: the embedded default VMM.
package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/owner"
	"github.com/snapbpf/snapbpf/internal/seccomp"
	"github.com/snapbpf/snapbpf/internal/vmm"
)

// DefaultBinary is the QEMU executable looked up in PATH.
const DefaultBinary = "qemu-system-x86_64"

// Driver starts QEMU microvm machines.
type Driver struct {
	// Binary is the QEMU executable; empty means DefaultBinary from PATH.
	Binary string
	// RunDir holds one directory per VM (its QMP and serial sockets),
	// named for the owning process so CleanRunDirs can remove those of a
	// process that died without cleaning up; empty means os.TempDir().
	RunDir string
}

var _ vmm.Driver = (*Driver)(nil)
var _ vmm.Machine = (*Machine)(nil)

// Name implements vmm.Driver.
func (d *Driver) Name() string { return "qemu-microvm" }

func (d *Driver) binary() (string, error) {
	name := d.Binary
	if name == "" {
		name = DefaultBinary
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found: install it (Debian: apt-get install qemu-system-x86): %w", name, err)
	}
	return path, nil
}

// Version implements vmm.Driver.
func (d *Driver) Version(ctx context.Context) (string, error) {
	bin, err := d.binary()
	if err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", bin, err)
	}
	// "QEMU emulator version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)"
	first, _, _ := strings.Cut(string(out), "\n")
	if f := strings.Fields(first); len(f) >= 4 && f[2] == "version" {
		return f[3], nil
	}
	return strings.TrimSpace(first), nil
}

// Machine is one QEMU process.
type Machine struct {
	cmd    *exec.Cmd
	runDir string
	qmp    *qmp
	serial net.Conn
	port   net.Conn // the agent port (vmm.Config.AgentPort), or nil
	stderr *tailBuffer

	exited  chan struct{}
	waitErr error

	stopOnce sync.Once
	stopErr  error
}

// AgentPortName is the name of the virtio-serial port of vmm.Config.AgentPort,
// which the guest finds it by (/sys/class/virtio-ports/*/name).
const AgentPortName = "org.snapbpf.agent"

// memFD is the descriptor number of Config.MemFile in QEMU: the first of
// exec.Cmd.ExtraFiles.
const memFD = 3

// args builds QEMU's command line for c, with sockets in runDir.
func args(c vmm.Config, runDir string) []string {
	accel := c.Accel
	if accel == "" {
		accel = vmm.DetectAccel()
	}
	cpus := c.CPUs
	if cpus <= 0 {
		cpus = 1
	}
	share := "off"
	if c.MemShared {
		share = "on"
	}
	memPath := c.MemPath
	if c.MemFile != nil {
		// The first of cmd.ExtraFiles. QEMU 7.2 opens mem-path with a
		// plain open(2), so /dev/fdset/N does not work here; its own
		// /proc/self/fd/3 reaches exactly the inherited file.
		memPath = fmt.Sprintf("/proc/self/fd/%d", memFD)
	}
	a := []string{
		"-M", "microvm,x-option-roms=off",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-smp", strconv.Itoa(cpus),
		"-m", fmt.Sprintf("%dM", c.MemMiB),
		"-object", fmt.Sprintf("memory-backend-file,id=ram,size=%dM,mem-path=%s,share=%s", c.MemMiB, memPath, share),
		"-machine", "memory-backend=ram",
		"-serial", "unix:" + filepath.Join(runDir, "serial.sock") + ",server=on,wait=off",
		"-qmp", "unix:" + filepath.Join(runDir, "qmp.sock") + ",server=on,wait=off",
		// Start paused: nothing the guest prints is lost before the serial
		// socket is connected, and a restore resumes when the caller says.
		"-S",
	}
	switch accel {
	case "kvm":
		a = append(a, "-accel", "kvm", "-cpu", "host")
	default:
		// A TCG translation cache per VM; TCG's own default is 1 GiB.
		a = append(a, "-accel", "tcg,thread=multi,tb-size=256", "-cpu", "max")
	}
	// A restored VM needs no kernel: QEMU microvm hands the kernel to its
	// firmware through fw_cfg at boot, and the guest's copy is in RAM.
	if c.Kernel != "" {
		a = append(a, "-kernel", c.Kernel, "-initrd", c.Initramfs, "-append", c.Cmdline)
	}
	if c.FreePageReporting {
		a = append(a, "-device", "virtio-balloon-device,free-page-reporting=on")
	}
	// After the balloon, always: microvm numbers its virtio-mmio slots in
	// command-line order, and a restore must see the snapshot's layout.
	if c.Rootfs != "" {
		// read-only: the image is shared by every VM and never written.
		a = append(a,
			"-drive", "id=rootfs,file="+c.Rootfs+",format=raw,if=none,readonly=on,cache=none,aio=threads",
			"-device", "virtio-blk-device,drive=rootfs")
	}
	if c.AgentPort {
		a = append(a,
			"-device", "virtio-serial-device",
			"-chardev", "socket,id=agentport,path="+filepath.Join(runDir, "agent.sock")+",server=on,wait=off",
			"-device", "virtserialport,chardev=agentport,name="+AgentPortName)
	}
	if c.Incoming {
		a = append(a, "-incoming", "defer")
	}
	return a
}

// Start implements vmm.Driver: the VM is started paused, with QMP and the
// serial port connected. On error nothing is left running.
func (d *Driver) Start(ctx context.Context, c vmm.Config) (_ vmm.Machine, retErr error) {
	bin, err := d.binary()
	if err != nil {
		return nil, err
	}
	files := []string{c.Kernel, c.Initramfs, c.Rootfs}
	if c.MemFile == nil {
		files = append(files, c.MemPath)
	}
	for _, f := range files {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("start VM: %w", err)
		}
	}
	runDir, err := d.newRunDir()
	if err != nil {
		return nil, err
	}
	m := &Machine{runDir: runDir, stderr: &tailBuffer{max: 16 << 10}, exited: make(chan struct{})}
	defer func() {
		if retErr != nil {
			m.Stop(context.Background())
		}
	}()

	m.cmd = exec.Command(bin, args(c, runDir)...)
	if c.MemFile != nil {
		m.cmd.ExtraFiles = []*os.File{c.MemFile} // memFD
	}
	// Creating a snapshot (shared memory), QEMU must be free to punch holes
	// for free page reporting; restoring, it must not touch the file.
	policy := seccomp.Policy{DenyFallocate: !c.MemShared, IgnoreHugepageAdvice: c.IgnoreHugepageAdvice}
	if err := seccomp.Wrap(m.cmd, policy); err != nil {
		os.RemoveAll(runDir)
		return nil, err
	}
	var out io.Writer = m.stderr
	if c.Log != nil {
		out = io.MultiWriter(m.stderr, c.Log)
	}
	m.cmd.Stdout, m.cmd.Stderr = out, out
	// Own process group so a terminal's Ctrl-C reaches snapbpf, which stops
	// its VMs in order; killed with us if we die without cleaning up.
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		os.RemoveAll(runDir)
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		m.waitErr = m.cmd.Wait()
		close(m.exited)
	}()

	if m.qmp, err = m.connectQMP(ctx, filepath.Join(runDir, "qmp.sock")); err != nil {
		return nil, err
	}
	var dialer net.Dialer
	if m.serial, err = dialer.DialContext(ctx, "unix", filepath.Join(runDir, "serial.sock")); err != nil {
		return nil, m.withStderr(fmt.Errorf("connect serial: %w", err))
	}
	if c.AgentPort {
		if m.port, err = dialer.DialContext(ctx, "unix", filepath.Join(runDir, "agent.sock")); err != nil {
			return nil, m.withStderr(fmt.Errorf("connect agent port: %w", err))
		}
		// The protocol is on the port; the UART carries only the
		// console, kept for error reports.
		go io.Copy(m.stderr, m.serial)
	}
	return m, nil
}

// runDirPrefix starts the name of every VM's run directory; the owner
// ("PID-START", package owner) and a random suffix follow.
const runDirPrefix = "snapbpf-qemu-"

// newRunDir creates a VM's run directory under d.RunDir, named for this
// process.
func (d *Driver) newRunDir() (string, error) {
	root := d.RunDir
	if root == "" {
		root = os.TempDir()
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return "", fmt.Errorf("start VM: create run directory: %w", err)
	}
	me, err := owner.Self()
	if err != nil {
		return "", fmt.Errorf("start VM: %w", err)
	}
	dir, err := os.MkdirTemp(root, runDirPrefix+me.String()+"-")
	if err != nil {
		return "", fmt.Errorf("start VM: create run directory: %w", err)
	}
	// A unix socket path holds at most 107 bytes.
	if p := filepath.Join(dir, "serial.sock"); len(p) > 107 {
		os.Remove(dir)
		return "", fmt.Errorf("start VM: socket path %s is longer than 107 bytes; use a shorter SNAPBPF_HOME", p)
	}
	return dir, nil
}

// StaleRunDirs lists the VM run directories in dir whose owning process is
// gone (killed before it could remove them).
func StaleRunDirs(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list run directories: %w", err)
	}
	var stale []string
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), runDirPrefix)
		if !ok || !e.IsDir() {
			continue
		}
		if o, _, ok := owner.Parse(rest); ok && !o.Alive() {
			stale = append(stale, filepath.Join(dir, e.Name()))
		}
	}
	return stale, nil
}

// CleanRunDirs removes the run directories in dir whose owning process is
// gone and returns them. Their VMMs died with their owner (parent-death
// signal), so only the sockets remain.
func CleanRunDirs(dir string) ([]string, error) {
	stale, err := StaleRunDirs(dir)
	var removed []string
	var errs []error
	for _, p := range stale {
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, fmt.Errorf("remove stale run directory: %w", err))
			continue
		}
		removed = append(removed, p)
	}
	return removed, errors.Join(append(errs, err)...)
}

// connectQMP connects to QEMU's QMP socket as soon as QEMU listens on it:
// the socket file appears at bind, a moment before listen, so a refused
// connection is retried until QEMU is ready or dies trying.
func (m *Machine) connectQMP(ctx context.Context, path string) (*qmp, error) {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(path); err == nil {
			q, err := dialQMP(ctx, path)
			if err == nil {
				return q, nil
			}
			if !errors.Is(err, syscall.ECONNREFUSED) {
				return nil, m.withStderr(err)
			}
		}
		select {
		case <-m.exited:
			return nil, m.withStderr(fmt.Errorf("QEMU %s before it was ready", m.ExitReason()))
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for QEMU to start: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

func (m *Machine) withStderr(err error) error {
	if s := strings.TrimSpace(m.stderr.String()); s != "" {
		return fmt.Errorf("%w; QEMU said: %s", err, s)
	}
	return err
}

// PID implements vmm.Machine.
func (m *Machine) PID() int { return m.cmd.Process.Pid }

// Serial implements vmm.Machine: the agent port when the VM has one.
func (m *Machine) Serial() io.ReadWriteCloser {
	if m.port != nil {
		return m.port
	}
	return m.serial
}

// Exited implements vmm.Machine.
func (m *Machine) Exited() <-chan struct{} { return m.exited }

// ExitReason implements vmm.Machine.
func (m *Machine) ExitReason() string {
	select {
	case <-m.exited:
	default:
		return ""
	}
	return exitReason(m.cmd.ProcessState)
}

// exitReason describes how a process ended, in words an operator can act on.
func exitReason(ps *os.ProcessState) string {
	if ps == nil {
		return "exited"
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() {
		return fmt.Sprintf("exited with status %d", ps.ExitCode())
	}
	sig := ws.Signal()
	why := fmt.Sprintf("was killed by %s", unix.SignalName(sig))
	switch sig {
	case syscall.SIGBUS:
		// Writing guest RAM to a file-backed mapping that cannot grow on
		// disk, or reading past the end of a file truncated under it.
		why += ": likely the disk holding the memory file is full (or the file was truncated)"
	case syscall.SIGKILL:
		why += ": by the kernel's out-of-memory killer, an operator, or snapbpf after a timeout"
	case syscall.SIGSYS:
		why += ": it made a system call the seccomp filter refuses"
	}
	return why
}

// Stderr implements vmm.Machine.
func (m *Machine) Stderr() string { return m.stderr.String() }

// Resume implements vmm.Machine.
func (m *Machine) Resume(ctx context.Context) error {
	_, err := m.qmp.execute(ctx, "cont", nil)
	return err
}

// Pause implements vmm.Machine.
func (m *Machine) Pause(ctx context.Context) error {
	_, err := m.qmp.execute(ctx, "stop", nil)
	return err
}

// ignoreShared keeps guest RAM out of the migration stream: RAM is the
// memory file, so the state file holds only devices.
func (m *Machine) ignoreShared(ctx context.Context) error {
	_, err := m.qmp.execute(ctx, "migrate-set-capabilities", map[string]any{
		"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": true}},
	})
	return err
}

// shellQuote quotes s for the /bin/sh that QEMU's exec: migration runs.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// SaveState implements vmm.Machine.
func (m *Machine) SaveState(ctx context.Context, path string) error {
	if err := m.ignoreShared(ctx); err != nil {
		return err
	}
	if _, err := m.qmp.execute(ctx, "migrate", map[string]any{"uri": "exec:cat > " + shellQuote(path)}); err != nil {
		return err
	}
	if err := m.waitMigration(ctx); err != nil {
		return fmt.Errorf("save state to %s: %w", path, err)
	}
	return nil
}

// stateFDName is the name the device state's descriptor gets in QEMU.
const stateFDName = "snapbpf-state"

// LoadState implements vmm.Machine. QEMU reads the state from the
// descriptor passed over QMP (getfd), never from a path, so it loads the
// very file the caller checked.
func (m *Machine) LoadState(ctx context.Context, state *os.File) error {
	if err := m.ignoreShared(ctx); err != nil {
		return err
	}
	if _, err := m.qmp.executeFile(ctx, "getfd", map[string]any{"fdname": stateFDName}, state); err != nil {
		return fmt.Errorf("load state from %s: %w", state.Name(), err)
	}
	if _, err := m.qmp.execute(ctx, "migrate-incoming", map[string]any{"uri": "fd:" + stateFDName}); err != nil {
		return fmt.Errorf("load state from %s: %w", state.Name(), err)
	}
	if err := m.waitMigration(ctx); err != nil {
		return fmt.Errorf("load state from %s: %w", state.Name(), err)
	}
	return nil
}

// waitMigration polls until the migration in either direction ends.
func (m *Machine) waitMigration(ctx context.Context) error {
	delay := 500 * time.Microsecond
	for {
		raw, err := m.qmp.execute(ctx, "query-migrate", nil)
		if err != nil {
			return err
		}
		var st struct {
			Status    string `json:"status"`
			ErrorDesc string `json:"error-desc"`
		}
		if err := json.Unmarshal(raw, &st); err != nil {
			return fmt.Errorf("query-migrate: %w", err)
		}
		switch st.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			return m.withStderr(fmt.Errorf("migration %s: %s", st.Status, st.ErrorDesc))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.exited:
			return m.withStderr(fmt.Errorf("QEMU %s during migration", m.ExitReason()))
		case <-time.After(delay):
		}
		if delay < 20*time.Millisecond {
			delay *= 2
		}
	}
}

// Stop implements vmm.Machine: quit through QMP, then SIGKILL if QEMU does
// not exit within a grace period or ctx ends first.
func (m *Machine) Stop(ctx context.Context) error {
	m.stopOnce.Do(func() { m.stopErr = m.stop(ctx) })
	return m.stopErr
}

func (m *Machine) stop(ctx context.Context) error {
	var errs []error
	if m.cmd != nil && m.cmd.Process != nil {
		select {
		case <-m.exited:
		default:
			if m.qmp != nil {
				qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				m.qmp.execute(qctx, "quit", nil) // the connection drops as QEMU exits
				cancel()
			}
			select {
			case <-m.exited:
			case <-time.After(3 * time.Second):
				m.cmd.Process.Kill()
				<-m.exited
			case <-ctx.Done():
				m.cmd.Process.Kill()
				<-m.exited
			}
		}
	}
	if m.qmp != nil {
		m.qmp.close()
	}
	if m.serial != nil {
		m.serial.Close()
	}
	if m.port != nil {
		m.port.Close()
	}
	if err := os.RemoveAll(m.runDir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(p)
	if over := t.buf.Len() - t.max; over > 0 {
		t.buf.Next(over)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}
