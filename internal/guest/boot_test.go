package guest

import (
	"bufio"
	"context"
	"debug/elf"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Markers printed by testdata/guestinit.
const (
	markerStart   = "SNAPBPF-INIT-START"
	markerModules = "SNAPBPF-MODULES-OK"
	markerFail    = "SNAPBPF-INIT-FAIL"
)

const bootTimeout = 60 * time.Second

// testLog sends Build's diagnostics to the test's output.
func testLog(t *testing.T) *slog.Logger { return slog.New(slog.NewTextHandler(t.Output(), nil)) }

// needBootTools skips unless the test can download the kernel package and
// run QEMU.
func needBootTools(t *testing.T) string {
	t.Helper()
	// testenv.NeedRoot's rule; testenv imports this package.
	if testing.Short() {
		t.Skip("-short: downloads and boots the guest kernel (make test runs it)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: downloads the kernel package into " + DefaultCacheDir)
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Skip("needs apt-get: the guest kernel comes from Debian's package")
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("needs qemu-system-x86_64 (apt-get install qemu-system-x86)")
	}
	return qemu
}

// buildGuestInit compiles testdata/guestinit as a static binary.
func buildGuestInit(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "init")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./testdata/guestinit")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build test init: %v\n%s", err, b)
	}
	return out
}

// bootResult is what one boot printed and how long it took.
type bootResult struct {
	lines     []string
	toMarker  map[string]time.Duration // first time each marker was seen
	exited    time.Duration
	exitError error
}

func (r *bootResult) line(marker string) string {
	for _, l := range r.lines {
		if strings.HasPrefix(l, marker) {
			return l
		}
	}
	return ""
}

// boot runs the image under QEMU microvm with TCG until QEMU exits or
// bootTimeout passes (then QEMU is killed and the test fails).
func boot(t *testing.T, qemu string, im *Image, cmdline string, extra ...string) *bootResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	args := append([]string{
		"-M", "microvm,x-option-roms=off",
		"-accel", "tcg,thread=multi,tb-size=512", "-cpu", "max", "-m", "256",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-serial", "stdio",
		"-kernel", im.Kernel, "-initrd", im.Initramfs, "-append", cmdline,
	}, extra...)
	cmd := exec.CommandContext(ctx, qemu, args...)
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	res := &bootResult{toMarker: map[string]time.Duration{}}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		l := strings.TrimRight(sc.Text(), "\r")
		res.lines = append(res.lines, l)
		for _, m := range []string{markerStart, markerModules, markerFail} {
			if _, seen := res.toMarker[m]; !seen && strings.HasPrefix(l, m) {
				res.toMarker[m] = time.Since(start)
			}
		}
	}
	res.exitError = cmd.Wait()
	res.exited = time.Since(start)
	if ctx.Err() != nil {
		t.Fatalf("guest did not power off within %s; it printed:\n%s", bootTimeout, strings.Join(res.lines, "\n"))
	}
	return res
}

func TestBuildAndBoot(t *testing.T) {
	qemu := needBootTools(t)
	agent := buildGuestInit(t)
	out := filepath.Join(t.TempDir(), "image")
	opts := BuildOptions{OutDir: out, AgentPath: agent, Log: testLog(t)}

	start := time.Now()
	im, err := Build(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	first := time.Since(start)
	wantMods := []string{"virtio_ring", "virtio", "virtio_mmio", "virtio_balloon", "virtio_console"}
	if !reflect.DeepEqual(im.Modules, wantMods) {
		t.Errorf("modules %q, want %q", im.Modules, wantMods)
	}
	if loaded, err := Load(out); err != nil || !loaded.sameContent(im) {
		t.Fatalf("Load after Build = %+v, %v", loaded, err)
	}

	// A second build from the cache is quick and gives the same bytes.
	start = time.Now()
	again, err := Build(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	cached := time.Since(start)
	if again.InitramfsSHA256 != im.InitramfsSHA256 || again.KernelSHA256 != im.KernelSHA256 {
		t.Error("rebuilding with the same inputs changed the image")
	}
	st, _ := os.Stat(im.Initramfs)
	t.Logf("kernel %s (%s %s); build %s, cached %s; initramfs %d bytes",
		im.KernelVersion, im.KernelPackage, im.PackageVersion, first.Round(time.Millisecond), cached.Round(time.Millisecond), st.Size())

	t.Run("boot", func(t *testing.T) {
		runs := 1
		if n, err := strconv.Atoi(os.Getenv("SNAPBPF_BOOT_RUNS")); err == nil && n > 0 {
			runs = n
		}
		var times []time.Duration
		for i := 0; i < runs; i++ {
			r := boot(t, qemu, im, KernelCmdline(), "-device", "virtio-balloon-device")
			checkBoot(t, r)
			times = append(times, r.toMarker[markerStart])
		}
		sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
		t.Logf("QEMU start to /init: median %s over %d boots %v", times[len(times)/2].Round(time.Millisecond), runs, times)
	})

	t.Run("gzip", func(t *testing.T) {
		gz := opts
		gz.OutDir = filepath.Join(t.TempDir(), "image")
		gz.GzipInitramfs = true
		gz.Log = testLog(t)
		gim, err := Build(context.Background(), gz)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := os.Stat(gim.Initramfs)
		r := boot(t, qemu, gim, KernelCmdline(), "-device", "virtio-balloon-device")
		checkBoot(t, r)
		t.Logf("gzip initramfs %d bytes; QEMU start to /init %s", st.Size(), r.toMarker[markerStart].Round(time.Millisecond))
	})

	t.Run("panic exits qemu", func(t *testing.T) {
		r := boot(t, qemu, im, KernelCmdline("snapbpf_test=exit"))
		if r.line("SNAPBPF-INIT-EXITING") == "" {
			t.Fatalf("init did not run; output:\n%s", strings.Join(r.lines, "\n"))
		}
		if !strings.Contains(strings.Join(r.lines, "\n"), "Kernel panic") {
			t.Errorf("no kernel panic printed; output:\n%s", strings.Join(r.lines, "\n"))
		}
		t.Logf("QEMU exited %s after init exited", (r.exited - r.toMarker[markerStart]).Round(time.Millisecond))
	})

	t.Run("failed build keeps image", func(t *testing.T) {
		bad := opts
		bad.ExtraModules = []string{"snapbpf_no_such_module"}
		bad.Log = testLog(t)
		if _, err := Build(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "snapbpf_no_such_module") {
			t.Fatalf("Build with a missing module: %v", err)
		}
		if loaded, err := Load(out); err != nil || !loaded.sameContent(im) {
			t.Fatalf("image changed by a failed build: %+v, %v", loaded, err)
		}
		for _, dir := range []string{filepath.Dir(out), DefaultCacheDir} {
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), ".") {
					t.Errorf("temporary %s left in %s", e.Name(), dir)
				}
			}
		}
	})
}

// checkBoot fails the test unless the guest ran /init, loaded the modules
// and bound the balloon driver.
func checkBoot(t *testing.T, r *bootResult) {
	t.Helper()
	out := strings.Join(r.lines, "\n")
	if l := r.line(markerFail); l != "" {
		t.Fatalf("guest init failed: %s\n%s", l, out)
	}
	if _, ok := r.toMarker[markerStart]; !ok {
		t.Fatalf("/init never ran; output:\n%s", out)
	}
	mods := r.line(markerModules)
	if mods == "" {
		t.Fatalf("modules not loaded; output:\n%s", out)
	}
	if !strings.Contains(mods, "drivers=virtio_balloon") {
		t.Errorf("balloon driver not bound: %s", mods)
	}
	t.Logf("%s (at %s); %s; %s", mods, r.toMarker[markerModules].Round(time.Millisecond),
		r.line("SNAPBPF-INIT-UPTIME"), r.line("SNAPBPF-INIT-CMDLINE"))
	if r.exitError != nil {
		t.Errorf("qemu: %v", r.exitError)
	}
	if extra := kernelLines(r.lines); len(extra) > 0 {
		t.Logf("kernel printed %d lines on the console: %q", len(extra), extra)
	}
}

// kernelLines returns the console lines that are not guestinit's markers.
func kernelLines(lines []string) []string {
	var out []string
	for _, l := range lines {
		if !strings.HasPrefix(l, "SNAPBPF-") && l != "" {
			out = append(out, l)
		}
	}
	return out
}

func TestReadAgent(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "script")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ path, err string }{
		{filepath.Join(dir, "missing"), "read agent"},
		{script, "not an ELF"},
	}
	// /bin/sh is a dynamically linked executable on Debian.
	if f, err := elf.Open("/bin/sh"); err == nil {
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				tests = append(tests, struct{ path, err string }{"/bin/sh", "dynamically linked"})
			}
		}
		f.Close()
	}
	for _, tc := range tests {
		if _, err := readAgent(tc.path); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("readAgent(%s) = %v, want an error containing %q", tc.path, err, tc.err)
		}
	}
}
