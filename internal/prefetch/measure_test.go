package prefetch

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// TestMeasure prints the tables behind DefaultEngine, the engines' default
// concurrency, DefaultGapPages and the request size: medians of cold runs,
// configurations interleaved so background load spreads evenly, with the
// process's CPU time. It takes a few minutes and is off by default:
//
//	SNAPBPF_MEASURE=all go test -run TestMeasure -v ./internal/prefetch
//
// or a comma-separated subset of engines, gap, split, hold, fio.
func TestMeasure(t *testing.T) {
	parts := os.Getenv("SNAPBPF_MEASURE")
	if parts == "" {
		t.Skip("measurement: set SNAPBPF_MEASURE=all (or engines,gap,split,hold,fio) to run")
	}
	part := func(p string) bool { return parts == "all" || slices.Contains(strings.Split(parts, ","), p) }
	const reps = 5
	path := benchFile(t)

	if part("engines") {
		var cfgs []config
		for _, w := range workloads() {
			for _, c := range []struct {
				eng     string
				workers []int
			}{
				{"willneed", []int{1, 2, 4, 8}},
				{"iouring", []int{8, 16, 32, 64, 128}},
				{"iouring-willneed", []int{8, 32}},
				{"pread", []int{4, 16, 32}},
			} {
				for _, n := range c.workers {
					cfgs = append(cfgs, config{w, Options{Engine: c.eng, Workers: n}, fmt.Sprintf("%s/%s/%d", w.name, c.eng, n)})
				}
			}
		}
		measure(t, path, reps, "engines x workers (default gap)", cfgs)
	}

	if part("gap") {
		var cfgs []config
		for _, w := range workloads()[:2] {
			for _, eng := range []string{"iouring", "willneed"} {
				for _, gap := range []int{-1, 1, 2, 4, 8, 16, 32, 64} {
					cfgs = append(cfgs, config{w, Options{Engine: eng, GapPages: gap}, fmt.Sprintf("%s/%s/gap=%d", w.name, eng, max(gap, 0))})
				}
			}
		}
		measure(t, path, reps, "gap threshold (default workers)", cfgs)
	}

	if part("split") {
		var cfgs []config
		for _, w := range workloads()[2:] {
			for _, eng := range []string{"iouring", "willneed"} {
				for _, kb := range []int64{256, 1024, 2048, 8192} {
					cfgs = append(cfgs, config{w, Options{Engine: eng, MaxRequestBytes: kb << 10}, fmt.Sprintf("%s/%s/max=%dK", w.name, eng, kb)})
				}
			}
		}
		measure(t, path, reps, "request size cap (default workers)", cfgs)
	}

	if part("hold") {
		measureHold(t, path, 3)
	}

	if part("fio") {
		if _, err := exec.LookPath("fio"); err != nil {
			t.Skip("fio not installed")
		}
		for _, w := range workloads()[:2] {
			for _, gap := range []int{-1, DefaultGapPages} {
				var ms []time.Duration
				for range reps {
					ms = append(ms, fioReplay(t, path, w.ext, gap))
				}
				t.Logf("fio replay %s gap=%d (io_uring, iodepth 32, buffered, same requests): median %.0f ms", w.name, max(gap, 0), ms2(median(ms)))
			}
		}
		for _, ref := range []string{
			"--rw=read --bs=8m --iodepth=32 --direct=0 --offset=100m --size=80m --fadvise_hint=random --invalidate=1",
			"--rw=randread --bs=4k --iodepth=1 --direct=1 --time_based --runtime=2s",
			"--rw=randread --bs=4k --iodepth=32 --direct=1 --time_based --runtime=2s",
			"--rw=randread --bs=40k --iodepth=32 --direct=1 --time_based --runtime=2s",
			"--rw=read --bs=128k --iodepth=32 --direct=1 --time_based --runtime=2s",
			"--rw=randread --bs=4k --iodepth=32 --direct=0 --fadvise_hint=random --invalidate=1 --time_based --runtime=2s",
		} {
			t.Logf("fio io_uring %s: %s", ref, fioReference(t, path, ref))
		}
	}
}

// measureHold prints how many pages of a freshly prefetched set leave the
// page cache by themselves (the host's proactive reclaim) while a job holds
// them and when it has let go at once, sampled over 15 s; runs alternate.
func measureHold(t *testing.T, path string, reps int) {
	// A python function's set: about 3000 pages in 900 extents.
	ext := randomSet(11, 256<<20, 3000, 900)
	at := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 15 * time.Second}
	var b strings.Builder
	fmt.Fprintf(&b, "\nset pages evicted after the prefetch completed (of %d), per run\n%-9s", wset.PageCount(Plan(ext, 0)), "")
	for _, d := range at {
		fmt.Fprintf(&b, " %7s", d)
	}
	fmt.Fprintln(&b)
	for range reps {
		for _, held := range []bool{false, true} {
			dropCache(t, path)
			j, err := Start(context.Background(), path, ext, Options{})
			if err != nil {
				t.Fatal(err)
			}
			<-j.Done()
			t0 := time.Now()
			if !held {
				if _, err := j.Wait(); err != nil {
					t.Fatal(err)
				}
			}
			fmt.Fprintf(&b, "%-9s", map[bool]string{false: "released", true: "held"}[held])
			for _, d := range at {
				time.Sleep(time.Until(t0.Add(d)))
				res := residentPages(t, path)
				gone := 0
				for _, e := range ext {
					for p := e.Page; p < e.End(); p++ {
						if !res[p] {
							gone++
						}
					}
				}
				fmt.Fprintf(&b, " %7d", gone)
			}
			fmt.Fprintln(&b)
			if _, err := j.Wait(); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Log(b.String())
}

type config struct {
	w    workload
	o    Options
	name string
}

func ms2(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func measure(t *testing.T, path string, reps int, title string, cfgs []config) {
	all := make([][]Stats, len(cfgs))
	cpu := make([][]time.Duration, len(cfgs))
	for range reps {
		for i, c := range cfgs {
			w, o := c.w, c.o
			dropCache(t, path)
			before := cpuTime()
			st, err := Prefetch(context.Background(), path, w.ext, o)
			if err != nil {
				t.Fatal(err)
			}
			cpu[i] = append(cpu[i], cpuTime()-before)
			all[i] = append(all[i], st)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n%s: median of %d cold runs\n", title, reps)
	fmt.Fprintf(&b, "%-32s %9s %9s %9s %9s %8s %8s %8s\n", "config", "issue ms", "done ms", "min ms", "max ms", "cpu ms", "MiB", "requests")
	for i, c := range cfgs {
		name := c.name
		var issue, done []time.Duration
		for _, s := range all[i] {
			issue = append(issue, s.IssueDur)
			done = append(done, s.CompleteDur)
		}
		lo, hi := done[0], done[0]
		for _, d := range done {
			lo, hi = min(lo, d), max(hi, d)
		}
		fmt.Fprintf(&b, "%-32s %9.1f %9.1f %9.1f %9.1f %8.1f %8.1f %8d\n", name, ms2(median(issue)), ms2(median(done)), ms2(lo), ms2(hi),
			ms2(median(cpu[i])), float64(all[i][0].Bytes)/(1<<20), all[i][0].Requests)
	}
	t.Log(b.String())
}

// fioReplay has fio read exactly the requests the prefetch would issue
// (read_iolog), buffered with io_uring at depth 32, and returns its run
// time (fio reports whole milliseconds).
func fioReplay(t *testing.T, path string, ext []pages.Extent, gap int) time.Duration {
	t.Helper()
	f := openT(t, path)
	st, _ := f.Stat()
	g := uint64(max(gap, 0))
	reqs, _, err := toRequests(f, Plan(ext, g), st.Size())
	if err != nil {
		t.Fatal(err)
	}
	reqs = split(reqs, maxRequestBytes(f))
	log := filepath.Join(t.TempDir(), "iolog")
	lf, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(lf)
	fmt.Fprintf(w, "fio version 2 iolog\n%s add\n%s open\n", path, path)
	for _, r := range reqs {
		fmt.Fprintf(w, "%s read %d %d\n", path, r.off, r.len)
	}
	fmt.Fprintf(w, "%s close\n", path)
	w.Flush()
	lf.Close()
	dropCache(t, path)
	// --bs sizes fio's buffers for the longest request in the log.
	out := runFio(t, "--name=replay", "--filename="+path, "--read_iolog="+log, "--ioengine=io_uring", "--iodepth=32", "--bs=8m",
		"--direct=0", "--fadvise_hint=random", "--invalidate=1", "--replay_no_stall=1")
	return time.Duration(out.Jobs[0].Read.Runtime) * time.Millisecond
}

type fioOut struct {
	Jobs []struct {
		Read struct {
			IOBytes int64   `json:"io_bytes"`
			BW      int64   `json:"bw_bytes"`
			IOPS    float64 `json:"iops"`
			Runtime int64   `json:"runtime"`
		} `json:"read"`
	} `json:"jobs"`
}

func runFio(t *testing.T, args ...string) fioOut {
	t.Helper()
	cmd := exec.CommandContext(context.Background(), "fio", append(args, "--output-format=json")...)
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("fio %v: %v", args, err)
	}
	var out fioOut
	if i := strings.IndexByte(string(b), '{'); i > 0 {
		b = b[i:] // fio may print notes before the JSON
	}
	if err := json.Unmarshal(b, &out); err != nil || len(out.Jobs) == 0 {
		t.Fatalf("fio output: %v\n%s", err, b)
	}
	return out
}

func fioReference(t *testing.T, path, spec string) string {
	dropCache(t, path)
	args := []string{"--name=ref", "--filename=" + path, "--ioengine=io_uring"}
	out := runFio(t, append(args, strings.Fields(spec)...)...)
	r := out.Jobs[0].Read
	return fmt.Sprintf("%.0f IOPS, %.0f MB/s, %d ms for %.0f MiB", r.IOPS, float64(r.BW)/1e6, r.Runtime, float64(r.IOBytes)/(1<<20))
}

// cpuTime is the CPU time of this process so far (all threads, including
// io_uring's workers).
func cpuTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
