package main

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/snapbpf/snapbpf/api"
	"github.com/snapbpf/snapbpf/internal/serveclient/servetest"
)

// runOut runs a command line and returns its stdout, stderr and error.
func runOut(args ...string) (string, string, error) {
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), errOut.String(), err
}

// TestFnCommands runs every fn command against a fake service on a unix
// socket, in text and in JSON.
func TestFnCommands(t *testing.T) {
	srv := servetest.New(t, servetest.Options{Polls: 3})
	sock := "--socket=" + srv.Socket

	out, _, err := runOut("fn", "create", "json1", "--function=json", sock)
	if err != nil || !strings.Contains(out, "json1 creating") {
		t.Fatalf("create: %q, %v", out, err)
	}
	var f api.Function
	runJSON(t, &f, "fn", "create", "bert1", "--function=bert", "--memory-mib=512", "--data-mib=32", "--wait", "--poll=1ms", "--json", sock)
	if f.State != api.StateReady || f.Function != "bert" || f.MemMiB != 512 || f.DataMiB != 32 {
		t.Errorf("create --wait --json: %+v", f)
	}
	out, errOut, err := runOut("fn", "create", "aes1", "--function=aes", "--wait", "--poll=1ms", sock)
	if err != nil || !strings.Contains(out, "aes1 ready: snapshot snap-aes1, working set 4242 pages") {
		t.Errorf("create --wait: %q, %v", out, err)
	}
	if !strings.Contains(errOut, `job="fn create aes1" step="recording: record" i=2 n=8`) || !strings.Contains(errOut, `step="ready: done" i=8 n=8`) ||
		!strings.Contains(errOut, `msg="progress: done" job="fn create aes1" steps=8`) {
		t.Errorf("create --wait shows no progress: %q", errOut)
	}

	out, _, err = runOut("fn", "ls", sock)
	if err != nil || !strings.Contains(out, "NAME") || !strings.Contains(out, "json1") || !strings.Contains(out, "bert1") {
		t.Errorf("ls: %q, %v", out, err)
	}
	var l api.FunctionList
	runJSON(t, &l, "fn", "ls", "--json", sock)
	if len(l.Functions) != 3 {
		t.Errorf("ls --json: %+v", l)
	}

	out, _, err = runOut("fn", "get", "bert1", sock)
	if err != nil || !strings.Contains(out, "working set:") || !strings.Contains(out, "4242 pages") || !strings.Contains(out, "0 warm, 0 busy") {
		t.Errorf("get: %q, %v", out, err)
	}
	runJSON(t, &f, "fn", "get", "bert1", "--json", sock)
	if f.SnapshotID != "snap-bert1" {
		t.Errorf("get --json: %+v", f)
	}

	out, errOut, err = runOut("fn", "invoke", "bert1", "--input=4", sock)
	if err != nil || strings.TrimSpace(out) != `{"checksum":"sum-4","guest_fn_ms":2}` || !strings.Contains(errOut, "start=cold restore_ms=20 prefetch_mib=9") {
		t.Errorf("invoke: %q %q, %v", out, errOut, err)
	}
	var inv invokeOutput
	runJSON(t, &inv, "fn", "invoke", "bert1", "--json", sock)
	if inv.Start != "warm" || !strings.Contains(string(inv.Result), "sum-1") || inv.ClientMs <= 0 || inv.TotalMs <= 0 {
		t.Errorf("invoke --json: %+v", inv)
	}

	out, _, err = runOut("fn", "rm", "json1", sock)
	if err != nil || out != "deleted json1\n" {
		t.Errorf("rm: %q, %v", out, err)
	}
	var del map[string][]string
	runJSON(t, &del, "fn", "rm", "bert1", "aes1", "--json", sock)
	if strings.Join(del["deleted"], ",") != "bert1,aes1" {
		t.Errorf("rm --json: %v", del)
	}
	l = api.FunctionList{}
	runJSON(t, &l, "fn", "ls", "--json", sock)
	if l.Functions == nil || len(l.Functions) != 0 {
		t.Errorf("ls after rm: %+v", l)
	}
}

// TestFnErrors: each error path prints the service's message and fails.
func TestFnErrors(t *testing.T) {
	srv := servetest.New(t, servetest.Options{Polls: 1})
	sock := "--socket=" + srv.Socket
	if _, _, err := runOut("fn", "create", "bad", "--function=broken", sock); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runOut("fn", "create", "a", "--function=json", sock); err != nil {
		t.Fatal(err)
	}
	srv.Status.Store("a", http.StatusGatewayTimeout)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"fn", "create", "a", "--function=json", sock}, "exists; delete it first or pick another name (HTTP 409)"},
		{[]string{"fn", "create", "Bad/Name", sock}, "want [a-z0-9][a-z0-9-]{0,62} (HTTP 400)"},
		{[]string{"fn", "create", "c", "--function=nope", sock}, "want one of"},
		{[]string{"fn", "create", "bad", "--function=broken", sock}, "HTTP 409"},
		{[]string{"fn", "create", "bad2", "--function=broken", "--wait", "--poll=1ms", sock}, "function bad2 failed: snapshot validation"},
		{[]string{"fn", "get", "zzz", sock}, "fn get zzz: snapbpf serve: no function zzz"},
		{[]string{"fn", "rm", "zzz", sock}, "HTTP 404"},
		{[]string{"fn", "invoke", "zzz", sock}, "HTTP 404"},
		{[]string{"fn", "invoke", "a", sock}, "scripted answer 504 (HTTP 504)"},
		{[]string{"fn", "invoke", "bad", "--input=x", sock}, "decimal text"},
		{[]string{"fn", "ls", "--socket=" + filepath.Join(t.TempDir(), "none.sock")}, "cannot reach snapbpf serve at unix socket"},
		{[]string{"fn", "ls", sock, "--url=http://127.0.0.1:1"}, "none of the others can be"},
		{[]string{"fn", "ls", "--url=127.0.0.1:1"}, "want http://HOST:PORT"},
		{[]string{"fn", "ls", "--url=http://127.0.0.1:1", "--token-file=/nonexistent"}, "--token-file"},
		{[]string{"fn", "invoke", sock}, "accepts 1 arg"},
	} {
		t.Run(strings.Join(tc.args[:2], " "), func(t *testing.T) {
			out, _, err := runOut(tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v: %v (stdout %q), want an error saying %q", tc.args, err, out, tc.want)
			}
		})
	}
}

// TestFnToken: over TCP the token file's token reaches the service; a
// wrong one is refused with the service's message.
func TestFnToken(t *testing.T) {
	srv := servetest.New(t, servetest.Options{TCP: true, Token: "t0ken"})
	dir := t.TempDir()
	good, bad, empty := filepath.Join(dir, "good"), filepath.Join(dir, "bad"), filepath.Join(dir, "empty")
	os.WriteFile(good, []byte("t0ken\n"), 0o600)
	os.WriteFile(bad, []byte("nope\n"), 0o600)
	os.WriteFile(empty, []byte("\n"), 0o600)
	if out, _, err := runOut("fn", "ls", "--url="+srv.URL, "--token-file="+good); err != nil || !strings.Contains(out, "NAME") {
		t.Errorf("good token: %q, %v", out, err)
	}
	if _, _, err := runOut("fn", "ls", "--url="+srv.URL, "--token-file="+bad); err == nil || !strings.Contains(err.Error(), "HTTP 401") {
		t.Errorf("bad token: %v", err)
	}
	if _, _, err := runOut("fn", "ls", "--url="+srv.URL, "--token-file="+empty); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Errorf("empty token file: %v", err)
	}
}
