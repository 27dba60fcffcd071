package funcvm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/snapbpf/snapbpf/internal/guest"
	"github.com/snapbpf/snapbpf/internal/logging"
	"github.com/snapbpf/snapbpf/internal/progress"
	"github.com/snapbpf/snapbpf/internal/protocol"
	"github.com/snapbpf/snapbpf/internal/rootfs"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/vmm"
)

// CreateOptions describe a snapshot to create.
type CreateOptions struct {
	Function string
	// Runtime is set for a function that runs in the image's language
	// runtime ("python") rather than in the agent; Payload is then the
	// input of the warm-up call made before the snapshot.
	Runtime string
	Payload []byte
	DataMiB int // function data size; 0 is the function's default
	MemMiB  int
	Out     string
	Replace bool
	// FreePages is snapshot.FreePagesReport or snapshot.FreePagesNone.
	FreePages string
	// ReportOrder is the guest's page reporting order (pages of 2^order
	// contiguous free 4 KiB pages are reported).
	ReportOrder int
	Accel       string
	// Log receives diagnostics; nil discards them.
	Log *slog.Logger
	// Progress shows the creation's steps; nil shows nothing.
	Progress progress.Meter
	// Timeouts bound each step; zero fields take the defaults.
	Timeouts Timeouts
}

// CreateStats are the times of a snapshot creation.
type CreateStats struct {
	BootMs       float64 `json:"boot_ms"`            // VMM start to agent ready
	GuestUptime  string  `json:"guest_uptime_ms"`    // guest's own clock at ready
	InitMs       float64 `json:"init_ms"`            // function init, in the guest
	SettleMs     float64 `json:"settle_ms"`          // free page reporting until the memory file stopped shrinking
	SaveMs       float64 `json:"save_ms"`            // pause and device state save
	ZeroPunched  int64   `json:"zero_pages_punched"` // zero pages made holes after reporting
	TotalMs      float64 `json:"total_ms"`
	GuestFreeMiB int64   `json:"guest_free_mib"` // MemFree in the guest before the snapshot
	// GuestZeroedMiB is how much of it the guest overwrote with zeroes
	// (free pages report only), for the zero-page punch to find.
	GuestZeroedMiB int64 `json:"guest_zeroed_mib"`
}

// ErrGuestModules is wrapped by the error of a snapshot whose guest could
// not load its kernel modules (free page reporting needs them).
var ErrGuestModules = errors.New("guest could not load its modules")

// CreateSnapshot boots img, initialises the function, optionally has the
// guest report its free pages, pauses and saves the device state, and
// publishes the snapshot directory atomically.
func CreateSnapshot(ctx context.Context, d vmm.Driver, img *guest.Image, o CreateOptions) (_ *snapshot.Dir, _ CreateStats, retErr error) {
	var st CreateStats
	log := logging.Or(o.Log)
	if o.MemMiB <= 0 {
		return nil, st, fmt.Errorf("memory size %d MiB: must be positive", o.MemMiB)
	}
	if o.FreePages == "" {
		o.FreePages = snapshot.FreePagesReport
	}
	if o.FreePages != snapshot.FreePagesReport && o.FreePages != snapshot.FreePagesNone {
		return nil, st, fmt.Errorf("free pages %q: want %q or %q", o.FreePages, snapshot.FreePagesReport, snapshot.FreePagesNone)
	}
	version, err := d.Version(ctx)
	if err != nil {
		return nil, st, err
	}
	if err := os.MkdirAll(filepath.Dir(o.Out), 0o755); err != nil {
		return nil, st, fmt.Errorf("create snapshot: %w", err)
	}
	// The guest may write every page of its RAM, and the state follows.
	if err := snapshot.CheckFreeSpace(filepath.Dir(o.Out), int64(o.MemMiB)<<20+stateSpace, fmt.Sprintf("a snapshot of %d MiB of guest RAM", o.MemMiB)); err != nil {
		return nil, st, err
	}
	b, err := snapshot.Create(o.Out, snapshot.CreateOptions{Replace: o.Replace})
	if err != nil {
		return nil, st, err
	}
	defer b.Abort()

	// A sparse file: guest RAM never written reads as zeroes and costs no
	// disk (random contents confuse the guest's memory probing).
	if err := createSparse(b.MemPath(), int64(o.MemMiB)<<20); err != nil {
		return nil, st, err
	}
	accel := o.Accel
	if accel == "" {
		accel = vmm.DetectAccel()
	}
	report := o.FreePages == snapshot.FreePagesReport
	rootfsPath, rootfsSum, err := createRootfs(img, o.Runtime)
	if err != nil {
		return nil, st, err
	}
	cfg := vmm.Config{
		Rootfs: rootfsPath, AgentPort: rootfsPath != "",
		Kernel: img.Kernel, Initramfs: img.Initramfs, Cmdline: guest.KernelCmdline(),
		MemMiB: o.MemMiB, MemPath: b.MemPath(), MemShared: true,
		Accel: accel, FreePageReporting: report,
	}
	steps := 3 // boot, init, save
	if report {
		steps += 2 // free pages, zero pages
	}
	job := progress.Or(o.Progress).Start("snapshot "+o.Function, steps)
	defer job.Done()
	start := time.Now()
	job.Step("boot")
	log.Info("snapshot: booting guest", "function", o.Function, "accel", accel, "mem_mib", o.MemMiB)
	t := o.Timeouts.orDefaults()
	sctx, cancel := context.WithTimeout(ctx, t.VMM)
	m, err := d.Start(sctx, cfg)
	cancel()
	if err != nil {
		return nil, st, err
	}
	vm := newVM(m, t)
	defer vm.Close(context.Background())
	if err := vm.Resume(ctx); err != nil {
		return nil, st, err
	}
	bctx, cancel := context.WithTimeout(ctx, t.Boot)
	ready, err := vm.Agent.WaitReady(bctx)
	cancel()
	if err != nil {
		return nil, st, vm.explain(fmt.Errorf("boot: %w", err))
	}
	st.BootMs = ms(time.Since(start))
	st.GuestUptime = ready.Info["uptime_ms"]
	if e := ready.Info["modules_error"]; e != "" && report {
		return nil, st, fmt.Errorf("%w, so it cannot report free pages: %s (a snapshot with free pages %q needs none)", ErrGuestModules, e, snapshot.FreePagesNone)
	}

	if e := ready.Info["rootfs_error"]; e != "" {
		return nil, st, fmt.Errorf("guest could not mount the runtime image: %s", e)
	}
	job.Step("init")
	log.Info("snapshot: initialising function", "function", o.Function, "boot_ms", st.BootMs)
	res, err := vm.call(ctx, t.Init, protocol.Message{Type: protocol.TypeInit, Function: o.Function, DataMiB: o.DataMiB, Runtime: o.Runtime, Payload: o.Payload})
	if err != nil {
		return nil, st, err
	}
	st.InitMs = float64(res.FnNs) / 1e6

	order := -1 // do not touch the reporting order
	if report {
		order = o.ReportOrder
	}
	// Bounded like init: the guest writes over all its free memory, which
	// under TCG on a busy host took more than the short-step bound.
	prep, err := vm.call(ctx, t.Init, protocol.Message{Type: protocol.TypePrepare, ReportOrder: order})
	if err != nil {
		return nil, st, err
	}
	st.GuestFreeMiB = prep.Mem["MemFree"] >> 20
	if report {
		job.Step("free page reporting")
		settleStart := time.Now()
		var zeroed int64
		if z, err := strconv.ParseInt(prep.Info["zeroed_bytes"], 10, 64); err == nil {
			zeroed = z
		}
		st.GuestZeroedMiB = zeroed >> 20
		alloc, err := settle(ctx, b.MemPath(), zeroed, prep.Mem["MemFree"]-zeroed)
		if err != nil {
			return nil, st, err
		}
		st.SettleMs = ms(time.Since(settleStart))
		log.Info("snapshot: free page reporting settled", "settle_ms", st.SettleMs, "mem_file_mib", alloc>>20, "guest_zeroed_mib", st.GuestZeroedMiB, "guest_free_mib", st.GuestFreeMiB)
		// Clones would go on reporting, and each pass reads the page
		// structures of all free memory: pages of the memory file no
		// invocation needs, in the working sets of the long ones.
		stop, err := vm.call(ctx, t.VMM, protocol.Message{Type: protocol.TypeReporting, ReportOrder: -1})
		if err != nil {
			return nil, st, fmt.Errorf("stop free page reporting: %w", err)
		}
		log.Debug("snapshot: free page reporting stopped", "order", stop.Info["report_order"])
	}

	job.Step("save")
	saveStart := time.Now()
	sctx, cancel = context.WithTimeout(ctx, t.VMM)
	defer cancel()
	if err := m.Pause(sctx); err != nil {
		return nil, st, vm.explain(fmt.Errorf("pause: %w", err))
	}
	if err := m.SaveState(sctx, b.StatePath()); err != nil {
		return nil, st, vm.explain(err)
	}
	st.SaveMs = ms(time.Since(saveStart))
	if err := vm.Close(ctx); err != nil {
		return nil, st, err
	}
	if report {
		// Reporting misses free pages the guest holds in per-CPU lists or
		// freed after the last pass; those zeroed on allocation hold only
		// zeroes. Left as data, the guest allocates some of them on one
		// run and holes on the next, so the pages read (and recorded)
		// vary run to run; as holes, none is ever read.
		job.Step("zero pages")
		st.ZeroPunched, err = snapshot.PunchZeroPages(b.MemPath())
		switch {
		case errors.Is(err, snapshot.ErrNoPunch):
			log.Warn("snapshot: zero pages stay data", "err", err)
		case err != nil:
			return nil, st, err
		default:
			log.Info("snapshot: made zero pages holes", "pages", st.ZeroPunched, "mib", st.ZeroPunched>>8)
		}
	} else {
		// Without free page handling the file stores every guest page, as
		// a VMM's full memory dump does; a sparse file would already skip
		// the memory the guest never touched.
		if err := snapshot.FillHoles(b.MemPath()); err != nil {
			return nil, st, err
		}
	}

	dir, err := b.Commit(snapshot.Manifest{
		Function:         o.Function,
		FunctionOptions:  map[string]int{"data_mib": o.DataMiB},
		MemMiB:           o.MemMiB,
		FreePages:        o.FreePages,
		ZeroPagesPunched: st.ZeroPunched,
		KernelVersion:    img.KernelVersion,
		KernelSHA256:     img.KernelSHA256,
		InitramfsSHA256:  img.InitramfsSHA256,
		AgentSHA256:      img.AgentSHA256,
		Runtime:          o.Runtime,
		RootfsPath:       rootfsPath,
		RootfsSHA256:     rootfsSum,
		VMM:              snapshot.VMMInfo{Name: d.Name(), Version: version, Accel: accel, Machine: "microvm"},
		Agent:            snapshot.AgentInfo{ProtocolVersion: protocol.Version},
	})
	if err != nil {
		return nil, st, err
	}
	st.TotalMs = ms(time.Since(start))
	return dir, st, nil
}

// stateSpace is what the device state file may take: 57 KiB for a
// 160 MiB guest here, with room to spare.
const stateSpace = 4 << 20

func createSparse(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("create memory file: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	return nil
}

// settle waits until QEMU stops punching holes for reported free pages.
// The guest reports in passes 2 s apart (PAGE_REPORTING_DELAY, guest
// time), each covering part of a long free list, so reporting can go on
// for 20 s, and a slow or busy guest starts its first pass late (seen: a
// 3 s quiet window from the start ended before any hole, 4 of 5 times).
// settle ends when the file has not shrunk for quiet after shrinking at
// least once, after noReport if it never shrinks, or at limit. The guest
// has just zeroed and freed zeroed bytes; once reporting has given back
// most of them the rest is left to the zero-page punch after the save
// (PunchZeroPages), which finds what reporting missed, so settle then
// waits only for brief quiet: the pass in progress. Unless the guest left
// much of its free memory unzeroed (unzeroed bytes: its reserve, four
// times min_free_kbytes, which THP raises to 176 MiB in a 1 GiB guest):
// only reporting makes those holes, and reporting is stopped after
// settle, so it waits for quiet.
func settle(ctx context.Context, path string, zeroed, unzeroed int64) (int64, error) {
	const (
		quiet    = 5 * time.Second
		brief    = time.Second
		noReport = 10 * time.Second
		limit    = 90 * time.Second
		tick     = 100 * time.Millisecond
		// maxUnzeroed is what may stay data for want of a report:
		// 256 MiB guests leave 8 MiB.
		maxUnzeroed = 16 << 20
	)
	start := time.Now()
	first, least, shrunk, lastShrink := int64(-1), int64(-1), false, start
	for {
		alloc, err := allocated(path)
		if err != nil {
			return 0, err
		}
		if first < 0 {
			first = alloc
		}
		if least < 0 || alloc < least {
			shrunk = shrunk || least >= 0
			least, lastShrink = alloc, time.Now()
		}
		mostly := zeroed > 0 && unzeroed <= maxUnzeroed && first-alloc >= zeroed-zeroed/8
		switch {
		case shrunk && time.Since(lastShrink) >= quiet,
			mostly && time.Since(lastShrink) >= brief,
			!shrunk && time.Since(start) >= noReport,
			time.Since(start) >= limit:
			return alloc, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(tick):
		}
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// createRootfs checks that img carries the root filesystem of runtime (none
// for a Go function) and returns its path and digest, checked now: the
// snapshot records them and every restore compares.
func createRootfs(img *guest.Image, runtime string) (string, string, error) {
	switch {
	case runtime == "" && img.Rootfs == "":
		return "", "", nil
	case runtime == "":
		// A Go function in a runtime image: the disk is attached, and
		// restores must attach the same one.
	case img.Runtime != runtime:
		return "", "", fmt.Errorf("function needs the %s runtime, and image %s has %q: build one with snapbpf image build --runtime %s", runtime, img.Dir, img.Runtime, runtime)
	}
	p, err := filepath.Abs(img.Rootfs)
	if err != nil {
		return "", "", err
	}
	if err := rootfs.Verify(p, img.RootfsSHA256); err != nil {
		return "", "", fmt.Errorf("guest image %s: %w: rebuild it (snapbpf image build --runtime %s)", img.Dir, err, img.Runtime)
	}
	return p, img.RootfsSHA256, nil
}
