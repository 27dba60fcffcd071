package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// findCmd returns the command of the tree at path (e.g. "ws", "merge").
func findCmd(t *testing.T, root *cobra.Command, path ...string) *cobra.Command {
	t.Helper()
	c, rest, err := root.Find(path)
	if err != nil || len(rest) > 0 {
		t.Fatalf("no command %v: %v", path, err)
	}
	return c
}

// TestFlagAliases: each old flag name still sets the new flag's value,
// and help shows only the new name.
func TestFlagAliases(t *testing.T) {
	for _, tc := range []struct {
		cmd      []string
		old, new string
		value    string
	}{
		{[]string{"restore"}, "count", "concurrency", "3"},
		{[]string{"replay"}, "policy", "policies", "lazy,nora"},
		{[]string{"replay"}, "runs", "rounds", "4"},
		{[]string{"bench"}, "runs", "rounds", "4"},
		{[]string{"demo"}, "runs", "rounds", "4"},
	} {
		t.Run(strings.Join(tc.cmd, " ")+" --"+tc.old, func(t *testing.T) {
			root := newRootCmd()
			c := findCmd(t, root, tc.cmd...)
			if err := c.ParseFlags([]string{"--" + tc.old, tc.value}); err != nil {
				t.Fatalf("--%s %s: %v", tc.old, tc.value, err)
			}
			f := c.Flags().Lookup(tc.new)
			if f == nil {
				t.Fatalf("no flag --%s", tc.new)
			}
			if got := f.Value.String(); got != tc.value && got != "["+tc.value+"]" {
				t.Errorf("--%s %s set --%s to %q", tc.old, tc.value, tc.new, got)
			}
			if !c.Flags().Changed(tc.new) {
				t.Errorf("--%s does not count as --%s given", tc.old, tc.new)
			}

			root = newRootCmd()
			var out bytes.Buffer
			root.SetOut(&out)
			root.SetErr(&out)
			root.SetArgs(append(append([]string{}, tc.cmd...), "--help"))
			if err := root.Execute(); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), "--"+tc.new+" ") {
				t.Errorf("help does not list --%s:\n%s", tc.new, out.String())
			}
			if strings.Contains(out.String(), "--"+tc.old+" ") {
				t.Errorf("help lists the old name --%s:\n%s", tc.old, out.String())
			}
		})
	}
}
