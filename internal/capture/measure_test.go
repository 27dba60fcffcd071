package capture

import (
	"context"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/snapbpf/snapbpf/internal/capture/capturetest"
	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/readahead"
	"golang.org/x/sys/unix"
)

// TestMeasureOpenRace measures the alternative record.Command rejects:
// leave the disk alone and turn readahead off (DisableForProcess) only
// once the open is seen. A program that opens, maps and touches at once
// faults before user space can react, and those faults read around.
func TestMeasureOpenRace(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	needRoot(t)
	path := capturetest.DataFile(t, 256*mib)
	const k = 500
	touched := capturetest.RandomPages(1, k, 256*mib/pages.Size)
	for run := range 3 {
		if _, err := pagecache.Drop(path); err != nil {
			t.Fatal(err)
		}
		r, err := NewRecorder([]string{path})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Start(); err != nil {
			t.Fatal(err)
		}
		fixed := make(chan error, 1)
		go func() {
			o := <-r.Opens()
			_, err := readahead.DisableForProcess(context.Background(), o.Pid, path)
			fixed <- err
		}()
		capturetest.Run(t, capturetest.Argv(t, path, touched, "", ""))
		if err := <-fixed; err != nil {
			t.Logf("run %d: disable: %v", run, err)
		}
		c, err := r.Stop()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("run %d: react-after-open captured %d pages for %d touched (readahead windows %d)", run, len(Pages(c, 0)), k, c.ReadaheadWindows)
	}
}

// TestCaptureOverhead times a child touching 20k random pages of a cold
// file with and without the recorder attached (median of 5 each). The
// child uses MADV_RANDOM in both so that both do the same I/O.
func TestCaptureOverhead(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	needRoot(t)
	path := capturetest.DataFile(t, 256*mib)
	touched := capturetest.RandomPages(11, 20000, 256*mib/pages.Size)
	result := t.TempDir() + "/ns"
	argv := capturetest.Argv(t, path, touched, "random", result)
	// BPF run-time statistics, only while this fd is open.
	if stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME)); err == nil {
		defer stats.Close()
	}
	var progTime time.Duration
	var progRuns uint64
	run := func(record bool) time.Duration {
		if _, err := pagecache.Drop(path); err != nil {
			t.Fatal(err)
		}
		var r *Recorder
		if record {
			var err error
			if r, err = NewRecorder([]string{path}); err != nil {
				t.Fatal(err)
			}
			if err := r.Start(); err != nil {
				t.Fatal(err)
			}
		}
		capturetest.Run(t, argv)
		if record {
			if st, err := r.objs.OnAddToPageCache.Stats(); err == nil {
				progTime += st.Runtime
				progRuns += st.RunCount
			}
			c, err := r.Stop()
			if err != nil {
				t.Fatal(err)
			}
			if n := len(Pages(c, 0)); n != len(touched) {
				t.Errorf("captured %d pages, touched %d", n, len(touched))
			}
		}
		b, err := os.ReadFile(result)
		if err != nil {
			t.Fatal(err)
		}
		ns, err := strconv.ParseInt(string(b), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return time.Duration(ns)
	}
	var with, without []time.Duration
	for range 5 {
		without = append(without, run(false))
		with = append(with, run(true))
	}
	median := func(d []time.Duration) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[len(s)/2]
	}
	mw, mo := median(with), median(without)
	t.Logf("20k random pages, cold: without recorder %v (runs %v), with %v (runs %v), ratio %.3f",
		mo, without, mw, with, float64(mw)/float64(mo))
	if progRuns > 0 {
		t.Logf("in-kernel cost: %d runs of the insertion program (all files), %v each",
			progRuns, progTime/time.Duration(progRuns))
	}
}
