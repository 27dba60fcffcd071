package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/snapbpf/snapbpf/internal/prefetch"
)

// fioResult is what a fio replay measured.
type fioResult struct {
	// Bytes is what fio counted as read. At depth 32 it counts less than
	// the log asks for (also with libaio; not at depth 1): concurrent
	// requests meet in one large folio and fio counts the short reads,
	// yet every requested page ends up cached (checked with mincore).
	Bytes    int64
	Logged   int64 // the bytes of the requests in the log
	Ms       float64
	Requests int
	Command  string
}

// fioReplay has fio read exactly reqs of file, buffered, through io_uring
// at depth 32 with readahead off (fadvise random), as the prefetch's
// engine sees the device. fio reports whole milliseconds.
func fioReplay(ctx context.Context, file string, reqs []prefetch.Request) (fioResult, error) {
	if len(reqs) == 0 {
		return fioResult{}, fmt.Errorf("fio replay of %s: no requests", file)
	}
	log, err := os.CreateTemp("", "snapbpf-fio-*.iolog")
	if err != nil {
		return fioResult{}, fmt.Errorf("fio replay: %w", err)
	}
	defer os.Remove(log.Name())
	w := bufio.NewWriter(log)
	fmt.Fprintf(w, "fio version 2 iolog\n%s add\n%s open\n", file, file)
	var longest, total int64
	for _, r := range reqs {
		fmt.Fprintf(w, "%s read %d %d\n", file, r.Off, r.Len)
		longest, total = max(longest, r.Len), total+r.Len
	}
	fmt.Fprintf(w, "%s close\n", file)
	if err := w.Flush(); err != nil {
		log.Close()
		return fioResult{}, fmt.Errorf("fio replay: %w", err)
	}
	if err := log.Close(); err != nil {
		return fioResult{}, fmt.Errorf("fio replay: %w", err)
	}
	// --bs sizes fio's buffers for the longest request of the log.
	args := []string{"--name=replay", "--filename=" + file, "--read_iolog=" + log.Name(),
		"--ioengine=io_uring", "--iodepth=32", fmt.Sprintf("--bs=%d", longest),
		"--direct=0", "--fadvise_hint=random", "--invalidate=1", "--replay_no_stall=1", "--output-format=json"}
	cmd := exec.CommandContext(ctx, "fio", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fioResult{}, fmt.Errorf("fio %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	res, err := parseFio(out)
	if err != nil {
		return fioResult{}, err
	}
	res.Requests, res.Logged = len(reqs), total
	res.Command = "fio " + strings.Join(args, " ")
	return res, nil
}

// parseFio reads the first job's read results of fio's JSON output.
func parseFio(out []byte) (fioResult, error) {
	var v struct {
		Jobs []struct {
			Read struct {
				IOBytes int64 `json:"io_bytes"`
				Runtime int64 `json:"runtime"` // ms
			} `json:"read"`
		} `json:"jobs"`
	}
	if i := bytes.IndexByte(out, '{'); i > 0 {
		out = out[i:] // fio may print notes before the JSON
	}
	if err := json.Unmarshal(out, &v); err != nil {
		return fioResult{}, fmt.Errorf("fio output: %w", err)
	}
	if len(v.Jobs) == 0 {
		return fioResult{}, fmt.Errorf("fio output has no jobs")
	}
	r := v.Jobs[0].Read
	if r.Runtime <= 0 {
		return fioResult{}, fmt.Errorf("fio read %d bytes in under a millisecond: too little to time", r.IOBytes)
	}
	return fioResult{Bytes: r.IOBytes, Ms: float64(r.Runtime)}, nil
}
