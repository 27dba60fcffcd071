package serve

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/snapbpf/snapbpf/internal/atomicfile"
	"github.com/snapbpf/snapbpf/internal/owner"
	"github.com/snapbpf/snapbpf/internal/procfs"
)

// vmmRecords name the VMMs this service runs, one file each under
// vmms/ (the process, its start time and its command line), beside a
// pidfile naming the service. A service killed with SIGKILL cannot stop
// its VMMs (the driver's parent-death signal usually does, but only for
// the thread that started them); the next one ends every recorded VMM
// that still runs with the recorded command line, never a process found
// by its name.
type vmmRecords struct {
	dir, pidfile string

	mu   sync.Mutex
	next int
	live map[int]int // record id → pid
}

type vmmRecord struct {
	VMM     owner.Owner `json:"vmm"`
	Cmdline string      `json:"cmdline"`
}

// openVMMRecords takes the pidfile (refusing while another service runs
// from the same home) and ends the VMMs a previous service left.
func openVMMRecords(home string) (*vmmRecords, error) {
	r := &vmmRecords{dir: filepath.Join(home, "vmms"), pidfile: filepath.Join(home, "serve.pid"), live: map[int]int{}}
	if err := os.MkdirAll(r.dir, 0o700); err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	if b, err := os.ReadFile(r.pidfile); err == nil {
		var prev owner.Owner
		if json.Unmarshal(b, &prev) == nil && prev.PID != os.Getpid() && prev.Alive() {
			return nil, fmt.Errorf("serve: another snapbpf serve (pid %d) runs from %s: stop it first, or give this one another SNAPBPF_HOME", prev.PID, home)
		}
	}
	self, err := owner.Self()
	if err != nil {
		return nil, fmt.Errorf("serve: who am I: %w", err)
	}
	b, _ := json.Marshal(self)
	if err := atomicfile.WriteFile(r.pidfile, b, 0o600); err != nil {
		return nil, fmt.Errorf("serve: pidfile: %w", err)
	}
	r.reap()
	return r, nil
}

// reap ends the recorded VMMs of a previous service and removes the
// records.
func (r *vmmRecords) reap() {
	des, err := os.ReadDir(r.dir)
	if err != nil {
		return
	}
	for _, de := range des {
		path := filepath.Join(r.dir, de.Name())
		b, err := os.ReadFile(path)
		var rec vmmRecord
		if err == nil && json.Unmarshal(b, &rec) == nil && rec.VMM.PID != os.Getpid() && rec.VMM.Alive() && cmdline(rec.VMM.PID) == rec.Cmdline {
			slog.Warn("serve: ending a VMM a previous service left running", "pid", rec.VMM.PID)
			if err := syscall.Kill(rec.VMM.PID, syscall.SIGKILL); err == nil {
				waitGone(rec.VMM, 5*time.Second)
			}
		}
		os.Remove(path)
	}
}

// waitGone waits up to limit for o to exit (a killed process whose parent
// is gone is reaped by init).
func waitGone(o owner.Owner, limit time.Duration) {
	for end := time.Now().Add(limit); time.Now().Before(end) && o.Alive(); {
		time.Sleep(10 * time.Millisecond)
	}
}

// cmdline is a process's command line, arguments joined by spaces ("" if
// it is gone): what a VMM record keeps to recognise its VMM.
func cmdline(pid int) string {
	args, err := procfs.Cmdline(pid)
	if err != nil {
		return ""
	}
	return strings.Join(args, " ")
}

// add records the VMM pid and returns the record's id. The record is
// written without fsync: it matters only while this boot lasts.
func (r *vmmRecords) add(pid int) int {
	o, err := owner.Of(pid)
	if err != nil {
		return -1 // gone already
	}
	r.mu.Lock()
	id := r.next
	r.next++
	r.live[id] = pid
	r.mu.Unlock()
	b, _ := json.Marshal(vmmRecord{VMM: o, Cmdline: cmdline(pid)})
	if err := os.WriteFile(r.path(id), b, 0o600); err != nil {
		slog.Warn("serve: cannot record a VMM for the next start to end it if this service is killed", "pid", pid, "err", err)
	}
	return id
}

func (r *vmmRecords) path(id int) string { return filepath.Join(r.dir, strconv.Itoa(id)+".json") }

// forget removes record id once its VMM has stopped.
func (r *vmmRecords) forget(id int) {
	if id < 0 {
		return
	}
	r.mu.Lock()
	delete(r.live, id)
	r.mu.Unlock()
	os.Remove(r.path(id))
}

// pids are the recorded VMMs' processes, each once.
func (r *vmmRecords) pids() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[int]bool{}
	var out []int
	for _, pid := range r.live {
		if !seen[pid] {
			seen[pid] = true
			out = append(out, pid)
		}
	}
	return out
}

// close removes the pidfile: the service ended its VMMs.
func (r *vmmRecords) close() error {
	err := os.Remove(r.pidfile)
	if errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	return err
}
