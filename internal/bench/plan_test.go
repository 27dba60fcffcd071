package bench

import (
	"slices"
	"strings"
	"testing"
)

func TestPlanReduced(t *testing.T) {
	c := Reduced()
	keys := Plan(c)
	// Per function and run: 3 policies at 3 N, snapbpf-other and warm at
	// N=1, one breakdown cell, prefetch and fio; replays of 5 policies at
	// 3 N and warm at N=1; 5 policies at 3 scatter fractions. Per
	// function once: the trace.
	per := 3*3 + 2 + 1 + 2 + 5*3 + 1 + 5*3
	if want := per*len(c.Functions)*c.Runs + len(c.Functions); len(keys) != want {
		t.Fatalf("reduced plan has %d cells, want %d", len(keys), want)
	}
	seen := map[Key]bool{}
	lastRun := 0
	for _, k := range keys {
		if seen[k] {
			t.Errorf("cell %s planned twice", k)
		}
		seen[k] = true
		if k.Experiment == ExpTrace && k.Run != 1 {
			t.Errorf("trace planned in run %d", k.Run)
		}
		if k.Experiment != ExpScatter && k.Scatter != 0 {
			t.Errorf("cell %s has a scatter fraction", k)
		}
		if singleOnly(k.Policy) && k.N != 1 {
			t.Errorf("%s planned at N=%d", k.Policy, k.N)
		}
		if k.Run < lastRun {
			t.Errorf("cell %s after run %d: runs must not interleave backwards", k, lastRun)
		}
		lastRun = k.Run
	}
	// Each function's trace comes before its first replay.
	for _, fn := range c.Functions {
		tr := slices.Index(keys, Key{ExpTrace, fn, ExpTrace, 1, 1, 0})
		first := slices.IndexFunc(keys, func(k Key) bool { return k.Function == fn && usesTrace(k.Experiment) })
		if tr < 0 || first < tr {
			t.Errorf("%s: trace at %d, first replay at %d", fn, tr, first)
		}
	}
}

func TestPlanSubset(t *testing.T) {
	c := Reduced()
	c.Functions = []string{"json"}
	c.Policies = []string{"snapbpf"}
	c.Concurrency = []int{1, 8}
	c.Experiments = []string{ExpLatency}
	c.Runs = 2
	want := []Key{
		{ExpLatency, "json", "snapbpf", 1, 1, 0}, {ExpLatency, "json", "snapbpf", 8, 1, 0},
		{ExpLatency, "json", "snapbpf", 1, 2, 0}, {ExpLatency, "json", "snapbpf", 8, 2, 0},
	}
	got := Plan(c)
	if len(got) != len(want) {
		t.Fatalf("Plan = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("cell %d = %s, want %s", i, got[i], want[i])
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Reduced()
	ok.Out = t.TempDir()
	if err := ok.Validate(); err != nil {
		t.Fatalf("reduced set: %v", err)
	}
	tests := []struct {
		name string
		edit func(*Config)
	}{
		{"unknown function", func(c *Config) { c.Functions = []string{"nope"} }},
		{"unknown policy", func(c *Config) { c.Policies = []string{"reap"} }},
		{"unknown experiment", func(c *Config) { c.Experiments = []string{"fig5"} }},
		{"zero N", func(c *Config) { c.Concurrency = []int{0} }},
		{"no runs", func(c *Config) { c.Runs = 0 }},
		{"scatter above 1", func(c *Config) { c.ScatterFractions = []float64{1.5} }},
		{"no out", func(c *Config) { c.Out = "" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			if err := c.Validate(); err == nil {
				t.Error("Validate accepted it")
			}
		})
	}
}

// TestPlanReplayConcurrency: ExpReplay takes its own numbers of VMs,
// the real VMs keep Concurrency.
func TestPlanReplayConcurrency(t *testing.T) {
	c := Reduced()
	c.Functions = []string{"python:pyaes"}
	c.Policies = []string{"snapbpf"}
	c.Concurrency, c.ReplayConcurrency = []int{1}, []int{1, 8}
	c.Experiments = []string{ExpLatency, ExpReplay}
	c.Runs = 1
	var vm, rp []int
	for _, k := range Plan(c) {
		switch {
		case k.Experiment == ExpLatency:
			vm = append(vm, k.N)
		case k.Experiment == ExpReplay && k.Policy == "reap":
			rp = append(rp, k.N)
		}
	}
	if !slices.Equal(vm, []int{1}) || !slices.Equal(rp, []int{1, 8}) {
		t.Errorf("latency at N %v, reap replayed at N %v; want [1] and [1 8]", vm, rp)
	}
	c.Out = t.TempDir()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.ReplayConcurrency = []int{0}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "concurrency 0") {
		t.Errorf("replay concurrency 0: %v", err)
	}
}
