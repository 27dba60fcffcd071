package bench

import (
	"testing"
)

func TestPlanReduced(t *testing.T) {
	c := Reduced()
	keys := Plan(c)
	// Per function and run: 3 policies at 3 N, snapbpf-other and warm at
	// N=1, one breakdown cell, prefetch and fio.
	per := 3*3 + 2 + 1 + 2
	if want := per * len(c.Functions) * c.Runs; len(keys) != want {
		t.Fatalf("reduced plan has %d cells, want %d", len(keys), want)
	}
	seen := map[Key]bool{}
	lastRun := 0
	for _, k := range keys {
		if seen[k] {
			t.Errorf("cell %s planned twice", k)
		}
		seen[k] = true
		if singleOnly(k.Policy) && k.N != 1 {
			t.Errorf("%s planned at N=%d", k.Policy, k.N)
		}
		if k.Run < lastRun {
			t.Errorf("cell %s after run %d: runs must not interleave backwards", k, lastRun)
		}
		lastRun = k.Run
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
		{ExpLatency, "json", "snapbpf", 1, 1}, {ExpLatency, "json", "snapbpf", 8, 1},
		{ExpLatency, "json", "snapbpf", 1, 2}, {ExpLatency, "json", "snapbpf", 8, 2},
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
