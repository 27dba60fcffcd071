package guest

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// HostTSCKHz returns the host's TSC frequency in kHz, which is also the
// frequency of the TSC a TCG guest reads (QEMU passes the host's through).
//
// When the kernel knows the frequency exactly (cpuinfo flag tsc_known_freq)
// and "cpu MHz" is not a live clock reading (no APERF/MPERF, no cpufreq
// driver), cpuinfo's figure is it. Otherwise the TSC is timed against
// CLOCK_MONOTONIC for a few tens of milliseconds.
func HostTSCKHz() (int, error) {
	info, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0, fmt.Errorf("read /proc/cpuinfo: %w", err)
	}
	flags, mhz := parseCPUInfo(string(info))
	if !flags["tsc"] || !flags["constant_tsc"] {
		return 0, errors.New("host TSC is missing or not constant-rate")
	}
	_, cpufreqErr := os.Stat("/sys/devices/system/cpu/cpu0/cpufreq")
	if flags["tsc_known_freq"] && !flags["aperfmperf"] && cpufreqErr != nil && mhz > 0 {
		return int(mhz*1000 + 0.5), nil
	}
	return measureTSCKHz()
}

// parseCPUInfo returns the first processor's flags and "cpu MHz".
func parseCPUInfo(s string) (map[string]bool, float64) {
	flags := map[string]bool{}
	var mhz float64
	haveFlags, haveMHz := false, false
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "flags":
			if !haveFlags {
				for _, f := range strings.Fields(v) {
					flags[f] = true
				}
				haveFlags = true
			}
		case "cpu MHz":
			if !haveMHz {
				mhz, _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
				haveMHz = true
			}
		}
	}
	return flags, mhz
}

// measureTSCKHz times the TSC against the monotonic clock five times for
// 20 ms and takes the median, which discards samples a preemption between
// the two clock reads spoiled.
func measureTSCKHz() (int, error) {
	if !haveRDTSC {
		return 0, errors.New("cannot read the TSC on this architecture")
	}
	var samples []float64
	for i := 0; i < 5; i++ {
		t0, c0 := time.Now(), rdtsc()
		time.Sleep(20 * time.Millisecond)
		t1, c1 := time.Now(), rdtsc()
		if ns := t1.Sub(t0).Nanoseconds(); ns > 0 && c1 > c0 {
			samples = append(samples, float64(c1-c0)/float64(ns)*1e6)
		}
	}
	if len(samples) < 3 {
		return 0, errors.New("TSC measurement failed")
	}
	sort.Float64s(samples)
	return int(samples[len(samples)/2] + 0.5), nil
}
