package funcvm

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/guest"
	"github.com/snapbpf/snapbpf/internal/protocol"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/vmm/qemu"
	"github.com/snapbpf/snapbpf/internal/zeroscan"
)

// refusedDiscard is what QEMU 7.2 prints when punching a hole for a
// reported free page fails: here, because the seccomp filter refused
// fallocate. Seeing it proves the restored guest reported free pages.
const refusedDiscard = "ram_block_discard_range: Failed to fallocate"

const (
	fpFunction = "alloc"
	fpDataMiB  = 64  // allocated and filled per invoke
	fpMemMiB   = 256 // room for the function, the guest and a freed invoke
	fpClones   = 3
)

// TestFreePageReportingLeavesSnapshotIntact restores several VMs from one
// snapshot made with free page reporting, has each guest allocate, free and
// allocate again (freed pages are reported to QEMU, which would punch holes
// in the memory file), and checks that the memory file's contents and
// allocated blocks are unchanged and every guest's results are right.
//
// Two controls show the test can fail: reporting must have punched holes
// while the snapshot was made, and a clone of a copy of the snapshot mapped
// shared (no seccomp filter, as at snapshot time) must punch holes in its
// copy when its guest frees memory.
func TestFreePageReportingLeavesSnapshotIntact(t *testing.T) {
	img := needVM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := createReportingSnapshot(ctx, t, img)
	mem := dir.MemPath()
	sumBefore := fileSHA(t, mem)
	blocksBefore := mustAllocated(t, mem)

	shared := filepath.Join(t.TempDir(), "mem-shared-copy")
	if out, err := exec.Command("cp", "--sparse=always", mem, shared).CombinedOutput(); err != nil {
		t.Fatalf("copy memory file: %v: %s", err, out)
	}

	var wg sync.WaitGroup
	errs := make([]error, fpClones+1)
	for i := range fpClones {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = freeAndAllocate(ctx, t, dir, i)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		errs[fpClones] = sharedControl(ctx, t, dir, shared)
	}()
	wg.Wait()
	for i, err := range errs {
		if err == nil {
			continue
		}
		if i == fpClones {
			t.Errorf("control (shared copy): %v", err)
		} else {
			t.Errorf("clone %d: %v", i, err)
		}
	}

	if after := mustAllocated(t, mem); after != blocksBefore {
		t.Errorf("memory file allocation changed: %d -> %d bytes (holes punched by a restored VM)", blocksBefore, after)
	}
	if after := fileSHA(t, mem); after != sumBefore {
		t.Errorf("memory file changed: sha256 %s -> %s", sumBefore, after)
	}
	if l := leftovers(t); len(l) > 0 {
		t.Errorf("left behind: %v", l)
	}
}

// createReportingSnapshot makes the alloc snapshot with free page
// reporting (order 0) and checks, as the first control, that reporting
// shrank the memory file's allocation while the snapshot was made.
func createReportingSnapshot(ctx context.Context, t *testing.T, img *guest.Image) *snapshot.Dir {
	t.Helper()
	parent := t.TempDir()
	// The memory file lives in a temporary directory until Commit.
	stopWatch := watchPeak(filepath.Join(parent, fpFunction+".tmp-*", snapshot.MemName))
	var log bytes.Buffer
	dir, st, err := CreateSnapshot(ctx, &qemu.Driver{}, img, CreateOptions{
		Function: fpFunction, DataMiB: fpDataMiB, MemMiB: fpMemMiB, Out: filepath.Join(parent, fpFunction),
		FreePages: snapshot.FreePagesReport, ReportOrder: 0, Log: slog.New(slog.NewTextHandler(&log, nil)),
	})
	peak := stopWatch()
	if err != nil {
		t.Fatalf("create %s snapshot: %v\n%s", fpFunction, err, log.String())
	}
	final := mustAllocated(t, dir.MemPath())
	t.Logf("snapshot: total %.0f ms (settle %.0f ms); memory file peak %d MiB, after reporting %d MiB, guest MemFree %d MiB",
		st.TotalMs, st.SettleMs, peak>>20, final>>20, st.GuestFreeMiB)
	// The guest frees its initramfs, page cache and init garbage before
	// the snapshot: tens of MiB.
	if peak-final < 8<<20 {
		t.Fatalf("control: free page reporting did not shrink the memory file during creation (peak %d, final %d bytes): "+
			"the guest does not report, so the restore check below would prove nothing", peak, final)
	}
	// What reporting left as zero-filled data pages became holes too:
	// none is left, and the manifest counts them.
	zs, err := zeroscan.File(dir.MemPath(), zeroscan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if zs.ZeroPages != 0 || st.ZeroPunched == 0 || dir.Manifest.ZeroPagesPunched != st.ZeroPunched {
		t.Errorf("zero pages: %d left as data; %d punched (manifest says %d): want none left and some punched",
			zs.ZeroPages, st.ZeroPunched, dir.Manifest.ZeroPagesPunched)
	}
	// Free guest memory is not stored, whether reporting reached it or
	// the guest zeroed it: the file holds what the guest used, and at most
	// the reserve the guest left unzeroed (8 MiB) and some slack besides.
	data, _, err := snapshot.MemLayout(dir.MemPath())
	if err != nil {
		t.Fatal(err)
	}
	if used := int64(fpMemMiB-st.GuestFreeMiB) << 20; st.GuestZeroedMiB == 0 || data > used+16<<20 {
		t.Errorf("memory file holds %d MiB of data; the guest used %d MiB and zeroed %d of its %d MiB free: want at most %d MiB",
			data>>20, used>>20, st.GuestZeroedMiB, st.GuestFreeMiB, used>>20+16)
	}
	return dir
}

// freeAndAllocate restores one clone that allocates, frees, allocates
// again and frees again, verifying every result, and waits until QEMU has
// been refused a hole for a reported page.
func freeAndAllocate(ctx context.Context, t *testing.T, dir *snapshot.Dir, i int) error {
	vm, err := startClone(ctx, dir, dir.MemPath(), false)
	if err != nil {
		return err
	}
	defer vm.Close(context.Background())
	// Clones start with reporting stopped; a guest is not trusted to
	// keep it so, and the filter must hold when it reports.
	if err := reportAgain(ctx, vm); err != nil {
		return err
	}
	base := uint64(10 * (i + 1)) // different inputs per clone
	for round := range 3 {
		input := base + uint64(round)
		if err := invokeChecked(ctx, vm, input); err != nil {
			return fmt.Errorf("round %d: %w", round, err)
		}
		if round == 2 {
			break
		}
		free, err := freeGuestMemory(ctx, vm)
		if err != nil {
			return fmt.Errorf("round %d: %w", round, err)
		}
		if round == 0 {
			// Reporting runs in passes 2 s apart; wait for its first
			// refused discard so the invokes after it run on reported pages.
			if err := waitFor(ctx, 60*time.Second, func() bool { return strings.Contains(vm.M.Stderr(), refusedDiscard) }); err != nil {
				return fmt.Errorf("guest freed memory (MemFree %d MiB) but QEMU never tried to punch a hole: %w; QEMU said: %s",
					free>>20, err, lastLines(vm.M.Stderr(), 3))
			}
			t.Logf("clone %d: guest MemFree %d MiB after freeing; QEMU refused: %s", i, free>>20, lastLines(vm.M.Stderr(), 1))
		}
	}
	return nil
}

// sharedControl is the same scenario on a copy of the memory file mapped
// shared, so QEMU may punch holes. A clone does not report (the snapshot
// stopped reporting): the copy's allocation must stay put while the
// guest frees the invoke's memory. Once the guest turns reporting back
// on, it must drop.
func sharedControl(ctx context.Context, t *testing.T, dir *snapshot.Dir, copyPath string) error {
	vm, err := startClone(ctx, dir, copyPath, true)
	if err != nil {
		return err
	}
	defer vm.Close(context.Background())
	if err := invokeChecked(ctx, vm, 1); err != nil {
		return err
	}
	grown, err := allocated(copyPath)
	if err != nil {
		return err
	}
	if _, err := freeGuestMemory(ctx, vm); err != nil {
		return err
	}
	// Reporting passes start 2 s after a free; give it four times that.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(8 * time.Second):
	}
	if now, err := allocated(copyPath); err != nil || grown-now >= 1<<20 {
		return fmt.Errorf("a clone reported free pages (the shared copy went from %d to %d bytes allocated, %v): the snapshot should have stopped reporting", grown, now, err)
	}
	if err := reportAgain(ctx, vm); err != nil {
		return err
	}
	if err := invokeChecked(ctx, vm, 2); err != nil {
		return err
	}
	if grown, err = allocated(copyPath); err != nil {
		return err
	}
	if _, err := freeGuestMemory(ctx, vm); err != nil {
		return err
	}
	var now int64
	err = waitFor(ctx, 60*time.Second, func() bool {
		now, _ = allocated(copyPath)
		return grown-now >= (fpDataMiB/4)<<20
	})
	t.Logf("control: shared copy allocated %d MiB after the invoke, %d MiB after the guest freed it", grown>>20, now>>20)
	if err != nil {
		return fmt.Errorf("the unfiltered clone did not punch holes for its freed memory (%d -> %d bytes): %w", grown, now, err)
	}
	return nil
}

// startClone restores dir's device state into a VM whose RAM is memPath,
// resumes it and reseeds it.
func startClone(ctx context.Context, dir *snapshot.Dir, memPath string, shared bool) (*VM, error) {
	cfg := restoreConfig(dir, "")
	cfg.MemPath, cfg.MemFile, cfg.MemShared = memPath, nil, shared
	m, err := (&qemu.Driver{}).Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	vm := newVM(m, Timeouts{})
	state, err := dir.OpenState()
	if err != nil {
		vm.Close(context.Background())
		return nil, err
	}
	defer state.Close()
	if err := m.LoadState(ctx, state); err != nil {
		vm.Close(context.Background())
		return nil, err
	}
	if err := m.Resume(ctx); err != nil {
		vm.Close(context.Background())
		return nil, err
	}
	if err := vm.Reseed(ctx); err != nil {
		vm.Close(context.Background())
		return nil, err
	}
	return vm, nil
}

// invokeChecked invokes the function once and compares its checksum with
// the host's: the init data came from the snapshot, so a damaged snapshot
// or guest memory shows here.
func invokeChecked(ctx context.Context, vm *VM, input uint64) error {
	want, err := Expect(fpFunction, fpDataMiB, input)
	if err != nil {
		return err
	}
	res, err := vm.Invoke(ctx, input, nil)
	if err != nil {
		return fmt.Errorf("invoke %d: %w", input, err)
	}
	if res.Checksum != want {
		return fmt.Errorf("invoke %d: checksum %s, want %s", input, res.Checksum, want)
	}
	return nil
}

// freeGuestMemory has the agent collect its garbage, return it to the
// guest kernel and drop the guest's caches (the snapshot preparation
// without touching the reporting order); it returns the guest's MemFree.
func freeGuestMemory(ctx context.Context, vm *VM) (int64, error) {
	res, err := vm.call(ctx, VMMTimeout, protocol.Message{Type: protocol.TypePrepare, ReportOrder: -1})
	if err != nil {
		return 0, fmt.Errorf("free guest memory: %w", err)
	}
	return res.Mem["MemFree"], nil
}

// reportAgain turns the guest's free page reporting back on (order 0, every
// free page), as a guest may.
func reportAgain(ctx context.Context, vm *VM) error {
	if _, err := vm.call(ctx, VMMTimeout, protocol.Message{Type: protocol.TypeReporting, ReportOrder: 0}); err != nil {
		return fmt.Errorf("turn free page reporting back on: %w", err)
	}
	return nil
}

func waitFor(ctx context.Context, limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v", limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// watchPeak polls the allocation of the files matching pattern until the
// returned function is called, which returns the largest seen.
func watchPeak(pattern string) (stop func() int64) {
	done := make(chan struct{})
	result := make(chan int64, 1)
	go func() {
		var peak int64
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			paths, _ := filepath.Glob(pattern)
			for _, p := range paths {
				if a, err := allocated(p); err == nil {
					peak = max(peak, a)
				}
			}
			select {
			case <-done:
				result <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return func() int64 {
		close(done)
		return <-result
	}
}

func mustAllocated(t *testing.T, path string) int64 {
	t.Helper()
	a, err := allocated(path)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
