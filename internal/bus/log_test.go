package bus

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// refused is the error a route's dial fails with while its peer is down.
func refused(addr string) error {
	return &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: mustPort(addr)},
		Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
}

func mustPort(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}

// TestServerLoggerSummarisesConnectFailures drives the adapter as the
// server would with two peers down for two minutes, attempts every second
// from two route connections each: one warning per peer at first, one per
// 30 s after with the count, one info line per peer when its route is
// back; other errors stay errors.
func TestServerLoggerSummarisesConnectFailures(t *testing.T) {
	var out bytes.Buffer
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	s := &serverLogger{l: slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	s.down.now = func() time.Time { return now }
	peers := []string{"127.0.0.1:6222", "127.0.0.1:6223"}
	for sec := range 120 {
		for _, p := range peers {
			for range 2 {
				s.Errorf(routeConnErrFmt, sec+1, refused(p))
			}
		}
		now = now.Add(time.Second)
	}
	s.Errorf("Error writing ports file (%s): %v", "/x", errors.New("disk full"))
	// The server renders the connection into the format itself (no
	// arguments), hence nil... to keep vet's printf check quiet.
	for i, p := range peers {
		s.Noticef(p+" - rid:"+strconv.Itoa(i+7)+" - "+routeCreatedMsg, nil...)
	}
	// A second route connection to the same peer says nothing more.
	s.Noticef(peers[0]+" - rid:9 - "+routeCreatedMsg, nil...)

	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var got []string
	for _, l := range lines {
		l = l[strings.Index(l, "level="):] // drop the time
		got = append(got, l)
	}
	var want []string
	for _, p := range peers {
		want = append(want, fmt.Sprintf(`level=WARN msg="nats: cannot connect to route %s, retrying (failures summarised every 30s)" err="dial tcp %s: connect: connection refused"`, p, p))
	}
	// Summaries at 30, 60 and 90 s, each made by the first attempt 30 s
	// after the last line and counting the 60 since it (the first: the
	// second attempt at 0 s to the first at 30 s); at 120 s there is no
	// attempt left to make one.
	for _, sec := range []int{30, 60, 90} {
		for _, p := range peers {
			want = append(want, fmt.Sprintf(`level=WARN msg="nats: route %s still down: 60 attempts failed in the last 30s" failed=%d down=%v err="dial tcp %s: connect: connection refused"`,
				p, 2*sec+1, time.Duration(sec)*time.Second, p))
		}
	}
	want = append(want, `level=ERROR msg="Error writing ports file (/x): disk full"`)
	for _, p := range peers {
		want = append(want, fmt.Sprintf(`level=INFO msg="nats: route to %s restored after 240 failed attempts over 2m0s" failed=240 down=2m0s`, p))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Down again later: a first line again, not a summary of the old run.
	out.Reset()
	s.Errorf(routeConnErrFmt, 1, refused(peers[0]))
	if !strings.Contains(out.String(), "cannot connect to route "+peers[0]) {
		t.Errorf("the next outage starts with %q", out.String())
	}
}

// TestServerLoggerOtherConnectFailures: gateways and leafnodes are
// summarised per remote like routes; a failure whose arguments are not
// the format's is logged as the error it is.
func TestServerLoggerOtherConnectFailures(t *testing.T) {
	var out bytes.Buffer
	s := &serverLogger{l: slog.New(slog.NewTextHandler(&out, nil))}
	for i := range 3 {
		s.Errorf(gatewayConnErrFmt, "explicit", "east", "east:7222", "10.0.0.2:7222", i+1, refused("10.0.0.2:7222"))
		s.Errorf(leafConnErrFmt, "hub:7422", i+1, refused("10.0.0.3:7422"))
	}
	s.Errorf(routeConnErrFmt, 1, "not an error")
	want := []string{
		`level=WARN msg="nats: cannot connect to gateway 10.0.0.2:7222, retrying`,
		`level=WARN msg="nats: cannot connect to leafnode hub:7422, retrying`,
		`level=ERROR msg="Error trying to connect to route (attempt 1): not an error"`,
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), out.String())
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d: %s\nwant %s", i, lines[i], w)
		}
	}
}

// TestConnectFailureFormatsInServerSource: the formats matched are the
// ones the nats-server in go.mod passes; a rewording upstream fails here
// with the file to read.
func TestConnectFailureFormatsInServerSource(t *testing.T) {
	dir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/nats-io/nats-server/v2").Output()
	if err != nil {
		t.Skipf("no go command to find the nats-server source: %v", err)
	}
	src := filepath.Join(strings.TrimSpace(string(dir)), "server")
	for _, c := range []struct{ file, text string }{
		{"route.go", strconv.Quote(routeConnErrFmt)},
		{"gateway.go", strconv.Quote(gatewayConnErrFmt)},
		{"leafnode.go", strconv.Quote(leafConnErrFmt)},
		{"route.go", `c.Noticef("` + routeCreatedMsg + `")`},
	} {
		path := filepath.Join(src, c.file)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("the nats-server source: %v", err)
		}
		if !bytes.Contains(b, []byte(c.text)) {
			t.Errorf("%s no longer has %s: match what it logs now in log.go", path, c.text)
		}
	}
}
