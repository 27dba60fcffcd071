package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/snapbpf/snapbpf/internal/atomicfile"
	"github.com/snapbpf/snapbpf/internal/loadgen"
	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/progress"
	"github.com/snapbpf/snapbpf/internal/serveclient"
)

// loadOutput is what load writes to --out and prints with --json: one
// report per run (one, or one per policy with --compare) and the plots.
type loadOutput struct {
	Runs  []*loadgen.Report `json:"runs"`
	Plots []string          `json:"plots,omitempty"`
}

type loadFlags struct {
	sf           serveFlags
	cfg          loadgen.TraceConfig
	seed         uint64
	timeout      time.Duration
	out          string
	asJSON       bool
	compare      []string
	serveArgs    []string
	coldBetween  bool
	readyTimeout time.Duration
}

func newLoadCmd() *cobra.Command {
	var lf loadFlags
	cmd := &cobra.Command{
		Use:   "load --functions F1,F2,... [--rate R] [--duration D] [--skew S] [--seed N] [--out F.json] [--compare lazy,snapbpf]",
		Short: "Send open-loop Poisson load to snapbpf serve and report latency, cold starts, rejections and memory",
		Long: `load sends requests to registered functions at Poisson arrival times (mean --rate
per second) for --duration, picking each arrival's function with a Zipf
popularity skew (--skew s: the k-th function listed gets a share ∝ 1/k^s).
Every arrival is its own request, sent at its time whatever earlier requests
are doing (open loop). It reports throughput, p50/p95/p99 latency, the share
of cold starts (X-Snapbpf-Start), queueing (X-Snapbpf-Queue-Ms), rejections
(429) and errors, and host memory (/proc/meminfo) and the service's metrics
sampled each second; --out F.json writes everything and F.svg/F.png plots it.

--compare lazy,snapbpf starts snapbpf serve --policy P once per policy (on
--socket or the default one, with the same SNAPBPF_HOME, so the functions
are the same), replays the same arrival trace against each, stops it, and
prints a table.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runLoad(cmd, &lf) },
	}
	lf.sf.add(cmd)
	fl := cmd.Flags()
	fl.StringSliceVar(&lf.cfg.Functions, "functions", nil, "registered functions to invoke, most popular first")
	fl.Float64Var(&lf.cfg.Rate, "rate", 2, "mean arrivals per second (Poisson)")
	fl.DurationVar(&lf.cfg.Duration, "duration", time.Minute, "how long arrivals go on")
	fl.Float64Var(&lf.cfg.Skew, "skew", 1, "Zipf exponent of the functions' popularity (0: uniform)")
	fl.IntVar(&lf.cfg.Inputs, "inputs", 1, "each request's input seed is uniform in 1..N")
	fl.Uint64Var(&lf.seed, "seed", 0, "seed of the arrival trace (default: random, recorded in the report)")
	fl.DurationVar(&lf.timeout, "timeout", 5*time.Minute, "give up on a request after this long")
	fl.StringVar(&lf.out, "out", "", "write the report to this JSON file and its plot beside it (.svg, .png)")
	fl.BoolVar(&lf.asJSON, "json", false, `print the report as JSON: {"runs":[...],"plots":[...]}`)
	fl.StringSliceVar(&lf.compare, "compare", nil, "policies to compare side by side on one trace (e.g. lazy,snapbpf): starts snapbpf serve --policy P for each")
	fl.StringArrayVar(&lf.serveArgs, "serve-arg", nil, "with --compare, an extra argument for snapbpf serve (repeat it)")
	fl.BoolVar(&lf.coldBetween, "cold-between", true, "with --compare, evict the functions' memory files from the page cache before each policy's run")
	fl.DurationVar(&lf.readyTimeout, "ready-timeout", 10*time.Minute, "with --compare, how long the service and its functions get to be ready")
	cmd.MarkFlagRequired("functions")
	checkFlags(cmd, func() error {
		for _, p := range lf.compare {
			if !slices.Contains(policy.Names(), p) {
				return fmt.Errorf("--compare %s: unknown policy; want names from %s", p, strings.Join(policy.Names(), ", "))
			}
		}
		if len(lf.compare) > 0 && lf.sf.url != "" {
			return errors.New("--compare starts its own snapbpf serve on a unix socket (--socket, or the default): leave out --url")
		}
		if lf.out != "" {
			if err := checkOutput("--out", lf.out); err != nil {
				return err
			}
		}
		cfg := lf.cfg
		cfg.Seed = 1
		if err := cfg.Validate(); err != nil {
			return fmt.Errorf("%w (--functions, --rate, --duration, --skew, --inputs)", err)
		}
		return nil
	})
	return cmd
}

func runLoad(cmd *cobra.Command, lf *loadFlags) error {
	ctx := cmd.Context()
	cfg := lf.cfg
	cfg.Seed = lf.seed
	if !cmd.Flags().Changed("seed") {
		cfg.Seed = rand.Uint64() >> 11 // fits a JSON number exactly
	}
	trace, err := loadgen.Generate(cfg)
	if err != nil {
		return err
	}
	w := logger(cmd)
	w.Info("load: arrivals", "arrivals", len(trace), "duration", cfg.Duration, "rate_per_s", cfg.Rate, "skew", cfg.Skew, "seed", cfg.Seed, "functions", strings.Join(cfg.Functions, ","))
	lm := &loadMeter{m: meter(cmd)}
	defer lm.done()
	ro := loadgen.RunOptions{Timeout: lf.timeout, Progress: lm.progress}
	var out loadOutput
	if len(lf.compare) == 0 {
		c, err := lf.sf.client(0)
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.Health(ctx); err != nil {
			return fmt.Errorf("load: %w", err)
		}
		lm.start("load")
		r, err := loadgen.Load(ctx, cfg, trace, c, ro, loadgen.Sampler{})
		if err != nil {
			return err
		}
		out.Runs = []*loadgen.Report{r}
	} else {
		s := &serveStarter{lf: lf, log: w}
		out.Runs, err = loadgen.Compare(ctx, cfg, trace, lf.compare, s.start, loadgen.CompareOptions{Run: ro,
			Progress: func(p string) { w.Info("load: starting snapbpf serve", "policy", p); lm.start("load --policy " + p) }})
		if err != nil {
			return err
		}
	}
	if lf.out != "" {
		name := strings.TrimSuffix(filepath.Base(lf.out), ".json")
		if out.Plots, err = loadgen.Plot(filepath.Dir(lf.out), name, out.Runs); err != nil {
			return err
		}
		if err := atomicfile.Write(lf.out, 0o644, func(f io.Writer) error { return writeJSON(f, out) }); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		w.Info("load: wrote", "out", lf.out, "plots", strings.Join(out.Plots, ","))
	}
	if lf.asJSON {
		return writeJSON(cmd.OutOrStdout(), out)
	}
	for _, r := range out.Runs {
		loadgen.WriteSummary(cmd.OutOrStdout(), r)
	}
	if len(out.Runs) > 1 {
		fmt.Fprintln(cmd.OutOrStdout())
		return loadgen.WriteComparison(cmd.OutOrStdout(), out.Runs)
	}
	return nil
}

// serveStarter starts snapbpf serve under one policy for --compare.
type serveStarter struct {
	lf  *loadFlags
	log *slog.Logger
}

func (s *serveStarter) start(ctx context.Context, pol string) (loadgen.Target, func() error, error) {
	c, err := s.lf.sf.client(0)
	if err != nil {
		return nil, nil, err
	}
	if c.Health(ctx) == nil {
		c.Close()
		return nil, nil, fmt.Errorf("a snapbpf serve already answers on %s: stop it first (--compare starts its own, one per policy)", s.socket())
	}
	if s.lf.coldBetween {
		s.dropCaches()
	}
	exe, err := os.Executable()
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("finding snapbpf's own binary: %w", err)
	}
	argv := append([]string{exe, "serve", "--policy", pol, "--socket", s.socket()}, s.lf.serveArgs...)
	logPath := filepath.Join(os.TempDir(), fmt.Sprintf("snapbpf-load-serve-%s-%d.log", pol, os.Getpid()))
	if s.lf.out != "" {
		logPath = strings.TrimSuffix(s.lf.out, ".json") + "-serve-" + pol + ".log"
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("service log: %w", err)
	}
	s.log.Info("load: starting the service", "argv", strings.Join(argv[1:], " "), "log", logPath)
	p, err := loadgen.StartService(ctx, argv, os.Environ(), logFile, c.Health, s.lf.readyTimeout)
	if err != nil {
		logFile.Close()
		c.Close()
		return nil, nil, err
	}
	stop := func() error {
		err := p.Stop(2 * time.Minute)
		logFile.Close()
		c.Close()
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, s.lf.readyTimeout)
	defer cancel()
	for _, fn := range s.lf.cfg.Functions {
		if _, err := c.Wait(wctx, fn, time.Second, nil); err != nil {
			if serveclient.StatusOf(err) == 404 {
				err = fmt.Errorf("function %s is not registered: create it first (snapbpf fn create %s --function F --wait)", fn, fn)
			}
			return nil, nil, errors.Join(err, stop())
		}
	}
	return c, stop, nil
}

// socket is where the started service listens.
func (s *serveStarter) socket() string {
	if s.lf.sf.socket != "" {
		return s.lf.sf.socket
	}
	return defaultServeSocket()
}

// dropCaches evicts the memory files of the service's snapshots from the
// page cache, so each policy's run starts as cold as the first.
func (s *serveStarter) dropCaches() {
	files, _ := filepath.Glob(filepath.Join(homeDir(), "serve", "snapshots", "*", "mem"))
	for _, f := range files {
		if _, err := pagecache.Drop(f); err != nil {
			s.log.Warn("load: evicting a memory file", "err", err)
		}
	}
	s.log.Info("load: memory files evicted from the page cache", "files", len(files))
}

// loadMeter shows a load run as a progress job of ten steps, one per
// tenth of the arrivals sent.
type loadMeter struct {
	m     progress.Meter
	job   progress.Job
	tenth int
}

// start ends the job of the run before and begins the next run's.
func (l *loadMeter) start(name string) {
	l.done()
	l.job, l.tenth = l.m.Start(name, 10), 0
}

// progress is RunOptions.Progress: called each second.
func (l *loadMeter) progress(sent, done, total int) {
	if l.job == nil || total == 0 {
		return
	}
	for ; l.tenth < 10*sent/total; l.tenth++ {
		l.job.Step(fmt.Sprintf("%d/%d sent, %d answered", sent, total, done))
	}
}

func (l *loadMeter) done() {
	if l.job != nil {
		l.job.Done()
		l.job = nil
	}
}
