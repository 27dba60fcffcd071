package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/snapbpf/snapbpf/internal/serveclient"
)

// Process is a service the load started (snapbpf serve --policy P).
type Process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// StartService starts argv with its output going to log and waits until
// ready returns nil (polled every 100 ms) or timeout passes; a service that
// exits or never gets ready is stopped and reported.
func StartService(ctx context.Context, argv []string, env []string, log io.Writer, ready func(context.Context) error, timeout time.Duration) (*Process, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, log, log
	// Its own process group, so a terminal's Ctrl-C reaches the load
	// first and the load stops the service in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %v: %w", argv, err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if last = ready(ctx); last == nil {
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("%v exited before it was ready (%v): see its log", argv, p.err)
		case <-ctx.Done():
			p.Stop(10 * time.Second)
			return nil, fmt.Errorf("%v not ready within %s: %v", argv, timeout, last)
		case <-tick.C:
		}
	}
}

// Stop sends SIGTERM (the service drains), waits up to grace, then kills
// it. It returns how the service exited when that was not cleanly.
func (p *Process) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return p.exitErr()
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.exitErr()
	case <-time.After(grace):
		p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("service pid %d did not stop within %s of SIGTERM: killed", p.cmd.Process.Pid, grace)
	}
}

func (p *Process) exitErr() error {
	var ee *exec.ExitError
	if errors.As(p.err, &ee) && !ee.Exited() {
		return nil // ended by our signal
	}
	return p.err
}

// Target is what one run of a comparison loads.
type Target interface {
	Invoker
	MetricsSource
}

// Spread is a Target that sends each invocation to the next of several
// (the nodes of a cluster, round-robin) and reads the metrics of the
// first.
func Spread(targets ...Target) Target {
	if len(targets) == 1 {
		return targets[0]
	}
	return &spread{ts: targets}
}

type spread struct {
	ts   []Target
	next atomic.Uint64
}

func (s *spread) Invoke(ctx context.Context, name string, input []byte) (*serveclient.Invocation, error) {
	return s.ts[(s.next.Add(1)-1)%uint64(len(s.ts))].Invoke(ctx, name, input)
}

func (s *spread) Metrics(ctx context.Context) ([]byte, error) { return s.ts[0].Metrics(ctx) }

// Starter starts the service under a policy and returns its client and
// how to stop it.
type Starter func(ctx context.Context, policy string) (Target, func() error, error)

// CompareOptions shape a side-by-side run.
type CompareOptions struct {
	Run      RunOptions
	Sampler  Sampler // its Source is set per run
	Progress func(policy string)
}

// Compare replays the same trace against the service started once per
// policy, one after the other, and returns one report per policy.
func Compare(ctx context.Context, cfg TraceConfig, trace []Arrival, policies []string, start Starter, opts CompareOptions) ([]*Report, error) {
	var reports []*Report
	for _, pol := range policies {
		if opts.Progress != nil {
			opts.Progress(pol)
		}
		tgt, stop, err := start(ctx, pol)
		if err != nil {
			return reports, fmt.Errorf("policy %s: %w", pol, err)
		}
		r, err := Load(ctx, cfg, trace, tgt, opts.Run, opts.Sampler)
		if serr := stop(); serr != nil && err == nil {
			err = fmt.Errorf("stopping the service: %w", serr)
		}
		if r != nil {
			r.Policy = pol
			reports = append(reports, r)
		}
		if err != nil {
			return reports, fmt.Errorf("policy %s: %w", pol, err)
		}
	}
	return reports, nil
}

// Load runs the trace against tgt while sampling memory and metrics, and
// analyses the run.
func Load(ctx context.Context, cfg TraceConfig, trace []Arrival, tgt Target, ro RunOptions, smp Sampler) (*Report, error) {
	smp.Source = tgt
	sctx, stop := context.WithCancel(ctx)
	start := time.Now()
	samples := make(chan []Sample, 1)
	go func() { samples <- smp.Run(sctx, start) }()
	reqs, elapsed, err := Run(ctx, tgt, trace, ro)
	stop()
	return Analyze(cfg, start, elapsed, reqs, <-samples), err
}
