package serve

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/api"
	"github.com/snapbpf/snapbpf/internal/owner"
	"github.com/snapbpf/snapbpf/internal/testenv"
)

// binaries builds snapbpf and snapbpf-agent side by side, as serve finds
// its agent.
func binaries(t *testing.T, root string) string {
	t.Helper()
	bin := filepath.Join(root, "bin")
	for _, b := range []struct{ out, pkg string }{
		{"snapbpf", "github.com/snapbpf/snapbpf/cmd/snapbpf"},
		{"snapbpf-agent", "github.com/snapbpf/snapbpf/cmd/snapbpf-agent"},
	} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, b.out), b.pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", b.out, err, out)
		}
	}
	return filepath.Join(bin, "snapbpf")
}

// service is a snapbpf serve process.
type service struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited, with err
	err    error
	log    string
}

// startServe runs snapbpf serve on home and waits until it answers.
func startServe(t *testing.T, exe, home, sock string, n int) *service {
	t.Helper()
	logPath := filepath.Join(home, "serve-"+itoa(n)+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(exe, "serve", "--socket", sock, "--record-runs", "2", "--free-pages", "none", "--drain-timeout", "2m")
	cmd.Env = append(os.Environ(), "SNAPBPF_HOME="+home)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &service{cmd: cmd, exited: make(chan struct{}), log: logPath}
	go func() { s.err = cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-s.exited
	})
	c := unixClient(sock)
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := c.Get("http://snapbpf/healthz")
		if err == nil {
			resp.Body.Close()
			return s
		}
		select {
		case <-s.exited:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("snapbpf serve exited: %v\n%s", s.err, b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("snapbpf serve does not answer")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// recordedVMMs are the VMMs the service's records name.
func recordedVMMs(t *testing.T, home string) []owner.Owner {
	t.Helper()
	des, _ := os.ReadDir(filepath.Join(home, "serve", "vmms"))
	var out []owner.Owner
	for _, de := range des {
		b, err := os.ReadFile(filepath.Join(home, "serve", "vmms", de.Name()))
		var rec vmmRecord
		if err == nil && json.Unmarshal(b, &rec) == nil {
			out = append(out, rec.VMM)
		}
	}
	return out
}

// TestServeKillAndDrain runs the built snapbpf serve on real VMs: killed
// with SIGKILL mid-invocation, the next start ends the VMMs it left (by
// their records, or finds them ended by their parent-death signal), keeps
// the function and serves it again; SIGTERM then lets an invocation in
// flight finish and exits 0 with no VMM left.
func TestServeKillAndDrain(t *testing.T) {
	testenv.NeedVM(t)
	root, err := testenv.Dir()
	if err != nil {
		t.Fatal(err)
	}
	exe := binaries(t, root)
	home, err := os.MkdirTemp(root, "serve-crash-")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(home, "s.sock")
	s1 := startServe(t, exe, home, sock, 1)
	c := unixClient(sock)
	post := func(path, body string) (int, string) {
		resp, err := c.Post("http://snapbpf"+path, "application/json", strings.NewReader(body))
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := readBody(resp)
		return resp.StatusCode, string(b)
	}
	if code, b := post("/v1/functions", `{"name":"json1","function":"json","memory_mib":256,"data_mib":8}`); code != 202 {
		t.Fatalf("create: %d %s", code, b)
	}
	waitReady := func() {
		deadline := time.Now().Add(10 * time.Minute)
		for {
			resp, err := c.Get("http://snapbpf/v1/functions/json1")
			if err == nil {
				var f api.Function
				json.NewDecoder(resp.Body).Decode(&f)
				resp.Body.Close()
				if f.State == api.StateReady {
					return
				}
				if f.State == api.StateFailed {
					t.Fatalf("function failed: %s", f.Error)
				}
			}
			if time.Now().After(deadline) {
				t.Fatal("json1 not ready in time")
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	waitReady()
	if code, b := post("/v1/functions/json1/invoke", "2"); code != 200 {
		t.Fatalf("invoke: %d %s", code, b)
	}
	// One invocation in flight (on the warm instance) when the service
	// is killed.
	go post("/v1/functions/json1/invoke", "3")
	time.Sleep(150 * time.Millisecond)
	left := recordedVMMs(t, home)
	if len(left) == 0 {
		t.Fatal("no VMM recorded while an instance runs")
	}
	s1.cmd.Process.Signal(syscall.SIGKILL)
	<-s1.exited
	time.Sleep(100 * time.Millisecond)
	for _, o := range left {
		// The parent-death signal usually ends them first; the
		// restart's reap is the backstop.
		t.Logf("VMM %d after the kill -9, before the restart: alive %v", o.PID, o.Alive())
	}

	s2 := startServe(t, exe, home, sock, 2)
	for _, o := range left {
		if o.Alive() {
			t.Errorf("VMM %d of the killed service still runs after the restart", o.PID)
		}
	}
	waitReady()
	if code, b := post("/v1/functions/json1/invoke", "4"); code != 200 {
		t.Fatalf("invoke after the restart: %d %s", code, b)
	}

	// SIGTERM with an invocation in flight: it finishes, then the
	// service exits 0 and leaves no VMM.
	done := make(chan int)
	go func() {
		code, _ := post("/v1/functions/json1/invoke", "5")
		done <- code
	}()
	time.Sleep(150 * time.Millisecond)
	running := recordedVMMs(t, home)
	s2.cmd.Process.Signal(syscall.SIGTERM)
	if code := <-done; code != 200 {
		t.Errorf("invocation in flight at SIGTERM: %d, want 200", code)
	}
	select {
	case <-s2.exited:
		var ee *exec.ExitError
		if errors.As(s2.err, &ee) {
			b, _ := os.ReadFile(s2.log)
			t.Errorf("serve exited %v after SIGTERM:\n%s", s2.err, b)
		}
	case <-time.After(time.Minute):
		t.Fatal("serve did not exit after SIGTERM")
	}
	for _, o := range running {
		if o.Alive() {
			t.Errorf("VMM %d still runs after the drain", o.PID)
		}
	}
}
