package main

import (
	"bytes"
	"strings"
	"testing"
)

// asUser makes the commands see effective user ID uid for the rest of the
// test.
func asUser(t *testing.T, uid int) {
	t.Helper()
	saved := euid
	euid = func() int { return uid }
	t.Cleanup(func() { euid = saved })
}

// runCLI runs the snapbpf command line args and returns its error.
func runCLI(t *testing.T, args ...string) error {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	return cmd.Execute()
}

// TestArgumentErrorsBeforeRootCheck: a user who is not root and gets a
// flag wrong is told what is wrong with the flag, not that the command
// needs root. No command here gets as far as doing anything.
func TestArgumentErrorsBeforeRootCheck(t *testing.T) {
	asUser(t, 1000)
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want []string // substrings of the error
	}{
		{"restore concurrency 0", []string{"restore", "--snapshot", dir, "--concurrency", "0"}, []string{"--concurrency 0"}},
		{"log level unknown", []string{"--log-level", "loud", "restore", "--snapshot", dir}, []string{`--log-level "loud"`, "debug, info"}},
		{"log format unknown", []string{"restore", "--snapshot", dir, "--log-format", "xml"}, []string{`--log-format "xml"`, "text or json"}},
		{"verbose against log level", []string{"restore", "--snapshot", dir, "-v", "--log-level", "error"}, []string{"--verbose", "--log-level error"}},
		{"serve tcp without token", []string{"serve", "--listen", "127.0.0.1:8080"}, []string{"--listen needs --token-file"}},
		{"serve budget negative", []string{"serve", "--memory-budget", "-1"}, []string{"--memory-budget -1"}},
		{"serve policy unknown", []string{"serve", "--policy", "fast"}, []string{`--policy "fast"`}},
		{"serve rerecord-faults 0", []string{"serve", "--rerecord-faults", "0"}, []string{"--rerecord-faults 0: want 1 or more", "-1 to never re-record"}},
		{"serve rerecord-faults -2", []string{"serve", "--rerecord-faults", "-2"}, []string{"--rerecord-faults -2"}},
		{"restore count (alias) 0", []string{"restore", "--snapshot", dir, "--count", "0"}, []string{"--concurrency 0"}},
		{"restore concurrency not a number", []string{"restore", "--snapshot", dir, "--concurrency", "many"}, []string{`invalid argument "many"`, "--concurrency"}},
		{"restore unknown flag", []string{"restore", "--snapshot", dir, "--colder"}, []string{"unknown flag: --colder"}},
		{"restore positional argument", []string{"restore", "--snapshot", dir, "extra"}, []string{`unknown command "extra"`}},
		{"restore without snapshot", []string{"restore"}, []string{`required flag(s) "snapshot" not set`}},
		{"restore cold and warm", []string{"restore", "--snapshot", dir, "--cold", "--warm"}, []string{"[cold warm]"}},
		{"restore unknown policy", []string{"restore", "--snapshot", dir, "--policy", "eager"}, []string{`--policy "eager"`, "lazy"}},
		{"restore no-readahead under lazy", []string{"restore", "--snapshot", dir, "--policy", "lazy", "--no-readahead"}, []string{"--no-readahead", "snapbpf only"}},
		{"restore unknown accel", []string{"restore", "--snapshot", dir, "--accel", "xen"}, []string{`--accel "xen"`}},
		{"restore deprecated and new readahead flags", []string{"restore", "--snapshot", dir, "--keep-readahead", "--no-readahead", "--policy", "snapbpf"}, []string{"keep-readahead", "no-readahead"}},
		{"snapshot create unknown function", []string{"snapshot", "create", "--function", "nosuch", "--out", dir}, []string{"--function", `unknown function "nosuch"`}},
		{"snapshot create unknown runtime", []string{"snapshot", "create", "--function", "json", "--runtime", "ruby", "--out", dir}, []string{`--runtime "ruby"`}},
		{"snapshot create no such python function", []string{"snapshot", "create", "--function", "python:bert", "--out", dir}, []string{"--function", `no python function "bert"`}},
		{"snapshot create runtime twice", []string{"snapshot", "create", "--function", "python:json", "--runtime", "python", "--out", dir}, []string{"--function", "name alone"}},
		{"snapshot create python data size", []string{"snapshot", "create", "--function", "python:json", "--data-mib", "8", "--out", dir}, []string{"Go functions only"}},
		{"snapshot create without function", []string{"snapshot", "create", "--out", dir}, []string{`required flag(s) "function" not set`}},
		{"snapshot create negative memory", []string{"snapshot", "create", "--function", "aes", "--out", dir, "--mem-mib", "-1"}, []string{"--mem-mib -1"}},
		{"snapshot create free pages", []string{"snapshot", "create", "--function", "aes", "--out", dir, "--free-pages", "some"}, []string{`--free-pages "some"`}},
		{"replay without trace", []string{"replay", "--snapshot", dir}, []string{`required flag(s) "trace" not set`}},
		{"replay unknown policy", []string{"replay", "--snapshot", dir, "--trace", dir, "--policies", "lazy,bogus"}, []string{"--policies", `unknown policy "bogus"`}},
		{"replay unknown policy (alias)", []string{"replay", "--snapshot", dir, "--trace", dir, "--policy", "lazy,bogus"}, []string{"--policies", `unknown policy "bogus"`}},
		{"trace without out", []string{"trace", "--snapshot", dir}, []string{`required flag(s) "out" not set`}},
		{"trace unknown accel", []string{"trace", "--snapshot", dir, "--out", dir + "/t", "--accel", "hvf"}, []string{`--accel "hvf"`}},
		{"record neither snapshot nor mem", []string{"record", "--", "true"}, []string{"[snapshot mem]", "at least one"}},
		{"record snapshot and mem", []string{"record", "--snapshot", dir, "--mem", dir + "/m", "--out", dir + "/w"}, []string{"[snapshot mem]", "none of the others"}},
		{"record mem without out", []string{"record", "--mem", dir + "/m", "--", "true"}, []string{"[mem out]", "missing [out]"}},
		{"record out without mem", []string{"record", "--snapshot", dir, "--out", dir + "/w"}, []string{"[mem out]", "missing [mem]"}},
		{"record input and inputs", []string{"record", "--snapshot", dir, "--input", "2", "--inputs", "3"}, []string{"[input inputs]", "none of the others"}},
		{"record mem with inputs", []string{"record", "--mem", dir + "/m", "--out", dir + "/w", "--inputs", "3", "--", "true"}, []string{"[mem inputs]", "none of the others"}},
		{"record mem with no-wait", []string{"record", "--mem", dir + "/m", "--out", dir + "/w", "--no-wait", "--", "true"}, []string{"[mem no-wait]", "none of the others"}},
		{"demo unknown function", []string{"demo", "--function", "nosuch"}, []string{`unknown function "nosuch"`}},
		{"demo unknown python function", []string{"demo", "--function", "python:cobol"}, []string{`no python function "cobol"`}},
		{"demo no rounds", []string{"demo", "--rounds", "0"}, []string{"--rounds 0"}},
		{"demo no runs (alias)", []string{"demo", "--runs", "0"}, []string{"--rounds 0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := runCLI(t, tc.args...)
			if err == nil {
				t.Fatalf("%v: no error", tc.args)
			}
			if strings.Contains(err.Error(), "needs root") {
				t.Fatalf("%v: error %q is the privilege check's, want the argument error", tc.args, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%v: error %q does not say %q", tc.args, err, w)
				}
			}
		})
	}
}

// TestRootCheckAfterArguments: with its arguments right, a command that
// needs root still refuses a user who is not, before any work.
func TestRootCheckAfterArguments(t *testing.T) {
	asUser(t, 1000)
	dir := t.TempDir()
	for _, args := range [][]string{
		{"restore", "--snapshot", dir, "--concurrency", "2", "--policy", "nora"},
		{"restore", "--snapshot", dir, "--count", "2", "--policy", "nora"},
		{"snapshot", "create", "--function", "aes", "--out", dir + "/s"},
		{"replay", "--snapshot", dir, "--trace", dir + "/t", "--policies", "all", "--rounds", "2"},
		{"replay", "--snapshot", dir, "--trace", dir + "/t", "--policy", "all", "--runs", "2"},
		{"trace", "--snapshot", dir, "--out", dir + "/t"},
		{"demo", "--function", "json", "--rounds", "1"},
		{"demo", "--function", "json", "--runs", "1"},
		{"image", "build"},
	} {
		err := runCLI(t, args...)
		if err == nil || !strings.Contains(err.Error(), "needs root") {
			t.Errorf("%v as uid 1000: error %v, want needs root", args, err)
		}
	}
}
