package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/snapbpf/snapbpf/internal/owner"
	"github.com/snapbpf/snapbpf/internal/procfs"
)

// Sample is the host's memory and the service's metrics at one time.
type Sample struct {
	// T is the time since the load started, in seconds.
	T float64 `json:"t_s"`
	// Host memory from /proc/meminfo, MiB: used is MemTotal less
	// MemAvailable; cached is the page cache (Cached); anon AnonPages.
	MemUsedMiB   float64 `json:"mem_used_mib"`
	MemCachedMiB float64 `json:"mem_cached_mib"`
	MemAnonMiB   float64 `json:"mem_anon_mib"`
	// Metrics are the service's metrics named in the sampler's Metrics:
	// each series ("name{labels}") and each name's sum over its series.
	Metrics map[string]float64 `json:"metrics,omitempty"`
	// MetricsError says why the service's metrics were not read.
	MetricsError string `json:"metrics_error,omitempty"`
	// The service process's open descriptors and resident memory (MiB),
	// when the sampler has its pidfile; ServiceError says why not.
	ServicePID    int     `json:"service_pid,omitempty"`
	ServiceFDs    int     `json:"service_fds,omitempty"`
	ServiceRSSMiB float64 `json:"service_rss_mib,omitempty"`
	ServiceError  string  `json:"service_error,omitempty"`
}

// MetricsSource serves Prometheus text metrics (a *serveclient.Client).
type MetricsSource interface {
	Metrics(ctx context.Context) ([]byte, error)
}

// DefaultMetrics are the service metrics a load samples: the memory its
// functions use, its instances, evictions, waits for memory and
// invocations.
var DefaultMetrics = []string{"snapbpf_memory_used_bytes", "snapbpf_memory_budget_bytes", "snapbpf_instances", "snapbpf_evictions_total", "snapbpf_budget_waits_total", "snapbpf_invocations_total"}

// Sampler samples memory and metrics at an interval.
type Sampler struct {
	// Meminfo is the meminfo file (/proc/meminfo when empty).
	Meminfo string
	// Source, if set, is where the service's metrics come from.
	Source MetricsSource
	// Metrics are the metric names kept (DefaultMetrics when nil).
	Metrics []string
	// Interval between samples (1 s when 0).
	Interval time.Duration
	// Pidfile, if set, is the service's pidfile (snapbpf serve's
	// $SNAPBPF_HOME/serve/serve.pid, an owner.Owner in JSON): each sample
	// reads it and measures that process's descriptors and memory.
	Pidfile string
}

// Run samples at once, then every interval, and once more when ctx is
// done (the state the run left), and returns the samples, their times
// counted from start.
func (s Sampler) Run(ctx context.Context, start time.Time) []Sample {
	iv := s.Interval
	if iv <= 0 {
		iv = time.Second
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	var out []Sample
	for {
		out = append(out, s.sample(ctx, start))
		select {
		case <-ctx.Done():
			return append(out, s.sample(context.WithoutCancel(ctx), start))
		case <-t.C:
		}
	}
}

func (s Sampler) sample(ctx context.Context, start time.Time) Sample {
	smp := Sample{T: time.Since(start).Seconds()}
	if mi, err := procfs.Meminfo(s.Meminfo); err == nil {
		smp.MemUsedMiB = float64(mi["MemTotal"]-mi["MemAvailable"]) / (1 << 20)
		smp.MemCachedMiB = float64(mi["Cached"]) / (1 << 20)
		smp.MemAnonMiB = float64(mi["AnonPages"]) / (1 << 20)
	}
	if s.Pidfile != "" {
		smp.ServicePID, smp.ServiceFDs, smp.ServiceRSSMiB, smp.ServiceError = sampleService(s.Pidfile)
	}
	if s.Source != nil {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		text, err := s.Source.Metrics(ctx)
		if err != nil {
			smp.MetricsError = err.Error()
		} else {
			names := s.Metrics
			if names == nil {
				names = DefaultMetrics
			}
			smp.Metrics = ParseMetrics(text, names)
		}
	}
	return smp
}

// sampleService measures the process the pidfile names, if it still runs.
func sampleService(pidfile string) (pid, fds int, rssMiB float64, why string) {
	b, err := os.ReadFile(pidfile)
	if err != nil {
		return 0, 0, 0, err.Error()
	}
	var o owner.Owner
	if err := json.Unmarshal(b, &o); err != nil || o.PID <= 0 {
		return 0, 0, 0, fmt.Sprintf("%s: not a pidfile of snapbpf serve (%v)", pidfile, err)
	}
	if !o.Alive() {
		return o.PID, 0, 0, fmt.Sprintf("the service (pid %d, from %s) no longer runs", o.PID, pidfile)
	}
	fds, err = procfs.OpenFDs(o.PID)
	if err != nil {
		return o.PID, 0, 0, err.Error()
	}
	rss, err := procfs.RSS(o.PID)
	if err != nil {
		return o.PID, 0, 0, err.Error()
	}
	return o.PID, fds, float64(rss) / (1 << 20), ""
}

// ParseMetrics picks the samples of the named metrics out of Prometheus
// text: each series under "name{labels}" (as written) and each name's sum
// under "name". Lines it does not understand are skipped.
func ParseMetrics(text []byte, names []string) map[string]float64 {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		series, value, ok := splitSample(line)
		if !ok {
			continue
		}
		name, _, _ := strings.Cut(series, "{")
		if !want[name] {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		if series != name {
			out[series] = v
		}
		out[name] += v
	}
	return out
}

// splitSample splits "name{labels} value [timestamp]" into the series and
// the value; label values may hold spaces.
func splitSample(line string) (series, value string, ok bool) {
	end := strings.IndexByte(line, ' ')
	if i := strings.IndexByte(line, '{'); i >= 0 && (end < 0 || i < end) {
		j := strings.LastIndexByte(line, '}')
		if j < i {
			return "", "", false
		}
		end = j + 1
	}
	if end < 0 || end >= len(line) {
		return "", "", false
	}
	f := strings.Fields(line[end:])
	if len(f) == 0 {
		return "", "", false
	}
	return line[:end], f[0], true
}
