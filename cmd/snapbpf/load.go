package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/snapbpf/snapbpf/api"
	"github.com/snapbpf/snapbpf/internal/atomicfile"
	"github.com/snapbpf/snapbpf/internal/funcvm"
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
	// HalfBudget is --budget-half's outcome (its runs are in Runs too).
	HalfBudget *halfBudget `json:"half_budget,omitempty"`
}

// halfBudget is what --budget-half found: the unconstrained runs' peak of
// the functions' memory as the service measured it, the budget it set at
// half of that, and how each policy fared under it.
type halfBudget struct {
	UnconstrainedPeakMiB map[string]float64 `json:"unconstrained_peak_mib"`
	BudgetMiB            int64              `json:"budget_mib"`
	// Failed are, by policy, the requests of the budgeted run that were
	// refused (429) or failed: none may fail for lack of memory.
	Failed    map[string]int `json:"failed"`
	Evictions map[string]int `json:"evictions"`
	// BudgetWaits are, by policy, the cold starts that queued for memory
	// with nothing idle to evict: a refusal is for lack of memory only if
	// there were some.
	BudgetWaits map[string]int `json:"budget_waits"`
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
	soak         bool
	soakWarmup   time.Duration
	verify       bool
	budgetHalf   bool
	spread       []string
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
prints a table. --budget-half then runs the same trace again, each service
under --memory-budget at half the largest peak of the functions' memory
(page cache of their memory files plus their instances' private memory, as
the service measured it) of those runs, and reports the requests refused or
failed and the evictions under it.

Every result is checked against the function run on this host (go
functions; --verify=false does not); a wrong one counts as "wrong". The service process's open
descriptors and resident memory are sampled through its pidfile
($SNAPBPF_HOME/serve/serve.pid).

--soak (with --compare) judges each run as a soak and exits non-zero naming
what broke: the service's descriptors or resident memory grew more than 10%
from the first tenth of the samples after --soak-warmup to the last tenth,
a VMM outlived the service once it stopped (a process whose command line
names a socket under $SNAPBPF_HOME/run: give the soak a home of its own), or an arrival was not
answered with a verified result.`,
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
	fl.BoolVar(&lf.budgetHalf, "budget-half", false, "with --compare, run again under --memory-budget at half the functions' peak memory of the first runs (as the service measured it)")
	fl.StringSliceVar(&lf.spread, "spread", nil, "also send to these nodes' TCP APIs (URLs, comma-separated; the same --token-file), round-robin with --url or --socket: a cluster under one load")
	fl.BoolVar(&lf.verify, "verify", true, "check each result against the function run on this host")
	fl.BoolVar(&lf.soak, "soak", false, "with --compare, fail unless the service's fds and memory held steady, no VMM outlived it and every result was verified")
	fl.DurationVar(&lf.soakWarmup, "soak-warmup", 0, "with --soak, the time before the fds and memory baseline is taken (default: a tenth of --duration)")
	cmd.MarkFlagRequired("functions")
	checkFlags(cmd, func() error {
		for _, p := range lf.compare {
			if !slices.Contains(policy.Names(), p) {
				return fmt.Errorf("--compare %s: unknown policy; want names from %s", p, strings.Join(policy.Names(), ", "))
			}
		}
		if lf.soak && !lf.verify {
			return errors.New("--soak needs every result verified: leave out --verify=false")
		}
		if lf.budgetHalf {
			switch {
			case len(lf.compare) == 0:
				return errors.New("--budget-half needs --compare POLICY[,POLICY]: it starts the service twice per policy, without and with a budget")
			case lf.soak:
				return errors.New("--budget-half and --soak: run them apart (a soak is one steady run)")
			case slices.ContainsFunc(lf.serveArgs, func(a string) bool { return strings.HasPrefix(a, "--memory-budget") }):
				return errors.New("--budget-half sets --memory-budget itself: leave it out of --serve-arg")
			}
		}
		if lf.soak && len(lf.compare) == 0 {
			return errors.New("--soak needs --compare POLICY[,POLICY]: the load starts and stops the service itself to check that no VMM outlives it")
		}
		if lf.soakWarmup < 0 || lf.soakWarmup >= lf.cfg.Duration && lf.soak {
			return fmt.Errorf("--soak-warmup %s: want less than --duration %s", lf.soakWarmup, lf.cfg.Duration)
		}
		if len(lf.compare) > 0 && len(lf.spread) > 0 {
			return errors.New("--spread loads running nodes; --compare starts its own service: use one")
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
	v := &resultVerifier{fns: map[string]api.Function{}, log: w}
	ro := loadgen.RunOptions{Timeout: lf.timeout, Progress: lm.progress}
	if lf.verify {
		ro.Verify = v.verify
	}
	smp := loadgen.Sampler{}
	if lf.sf.url == "" {
		smp.Pidfile = filepath.Join(serveHome(), "serve.pid")
	}
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
		for _, fn := range cfg.Functions {
			// A function the service does not know is an error answer
			// per request, counted in the report.
			if f, err := c.Get(ctx, fn); err == nil {
				v.add(f)
			}
		}
		targets := []loadgen.Target{c}
		for _, u := range lf.spread {
			sf := lf.sf
			sf.socket, sf.url = "", u
			cu, err := sf.client(0)
			if err != nil {
				return err
			}
			defer cu.Close()
			if err := cu.Health(ctx); err != nil {
				return fmt.Errorf("load --spread %s: %w", u, err)
			}
			targets = append(targets, cu)
		}
		lm.start("load")
		r, err := loadgen.Load(ctx, cfg, trace, loadgen.Spread(targets...), ro, smp)
		if err != nil {
			return err
		}
		out.Runs = []*loadgen.Report{r}
	} else {
		s := &serveStarter{lf: lf, log: w, verifier: v, vmmsLeft: map[string][]int{}}
		co := loadgen.CompareOptions{Run: ro, Sampler: smp,
			Progress: func(p string) { w.Info("load: starting snapbpf serve", "policy", p); lm.start("load --policy " + p) }}
		out.Runs, err = loadgen.Compare(ctx, cfg, trace, lf.compare, s.start, co)
		if err != nil {
			return err
		}
		if lf.budgetHalf {
			if out.HalfBudget, err = s.halfBudget(ctx, cfg, trace, co, &out); err != nil {
				return err
			}
		}
		if lf.soak {
			warmup := lf.soakWarmup
			if warmup == 0 {
				warmup = cfg.Duration / 10
			}
			for _, r := range out.Runs {
				r.Soak = loadgen.CheckSoak(r, warmup, s.vmmsLeft[r.Policy])
			}
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
		if err := writeJSON(cmd.OutOrStdout(), out); err != nil {
			return err
		}
		return soakVerdict(out.Runs)
	}
	for _, r := range out.Runs {
		loadgen.WriteSummary(cmd.OutOrStdout(), r)
	}
	if len(out.Runs) > 1 {
		fmt.Fprintln(cmd.OutOrStdout())
		if err := loadgen.WriteComparison(cmd.OutOrStdout(), out.Runs); err != nil {
			return err
		}
	}
	if hb := out.HalfBudget; hb != nil {
		fmt.Fprintf(cmd.OutOrStdout(), "\nhalf budget: %d MiB, half the functions' peak of the unconstrained runs (as the service measured it:", hb.BudgetMiB)
		for _, p := range lf.compare {
			fmt.Fprintf(cmd.OutOrStdout(), " %s %.0f MiB", p, hb.UnconstrainedPeakMiB[p])
		}
		fmt.Fprintln(cmd.OutOrStdout(), ")")
		for _, p := range lf.compare {
			fmt.Fprintf(cmd.OutOrStdout(), "  %s under it: %d requests refused or failed, %d evictions, %d waits for memory with nothing to evict\n", p, hb.Failed[p], hb.Evictions[p], hb.BudgetWaits[p])
		}
	}
	return soakVerdict(out.Runs)
}

// halfBudget runs the trace again with the service under --memory-budget
// at half the largest peak of the functions' memory that the runs in out
// reached, appends those runs to out and says how they fared.
func (s *serveStarter) halfBudget(ctx context.Context, cfg loadgen.TraceConfig, trace []loadgen.Arrival, co loadgen.CompareOptions, out *loadOutput) (*halfBudget, error) {
	hb := &halfBudget{UnconstrainedPeakMiB: map[string]float64{}, Failed: map[string]int{}, Evictions: map[string]int{}, BudgetWaits: map[string]int{}}
	var peak float64
	for _, r := range out.Runs {
		hb.UnconstrainedPeakMiB[r.Policy] = r.Summary.PeakServiceMemMiB
		peak = max(peak, r.Summary.PeakServiceMemMiB)
	}
	if peak < 2 {
		return nil, fmt.Errorf("--budget-half: the service measured %.1f MiB of function memory at most (snapbpf_memory_used_bytes): too little to halve; is the service one that measures it at each scrape?", peak)
	}
	hb.BudgetMiB = int64(peak / 2)
	s.log.Info("load: running again under half the peak memory", "peak_mib", peak, "memory_budget_mib", hb.BudgetMiB)
	s.extraArgs = []string{fmt.Sprintf("--memory-budget=%d", hb.BudgetMiB)}
	defer func() { s.extraArgs = nil }()
	runs, err := loadgen.Compare(ctx, cfg, trace, s.lf.compare, s.start, co)
	for _, r := range runs {
		r.MemoryBudgetMiB = hb.BudgetMiB
		hb.Failed[r.Policy] = r.Summary.Rejected + r.Summary.Errors + r.Summary.Wrong
		hb.Evictions[r.Policy] = r.Summary.Evictions
		hb.BudgetWaits[r.Policy] = r.Summary.BudgetWaits
	}
	out.Runs = append(out.Runs, runs...)
	return hb, err
}

// soakVerdict is the error of the runs whose soak failed, naming what broke.
func soakVerdict(runs []*loadgen.Report) error {
	var errs []error
	for _, r := range runs {
		if r.Soak != nil && !r.Soak.OK() {
			errs = append(errs, fmt.Errorf("soak of policy %s failed: %s", r.Policy, strings.Join(r.Soak.Failures, "; ")))
		}
	}
	return errors.Join(errs...)
}

// resultVerifier checks each result against the function run on this
// host: RunOptions.Verify.
type resultVerifier struct {
	log *slog.Logger
	mu  sync.Mutex
	fns map[string]api.Function
}

// add makes the verifier know a registered function.
func (v *resultVerifier) add(f api.Function) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.fns[f.Name] = f
}

func (v *resultVerifier) verify(a loadgen.Arrival, result []byte) (bool, error) {
	v.mu.Lock()
	f, ok := v.fns[a.Function]
	v.mu.Unlock()
	if !ok || f.Runtime != api.RuntimeGo {
		return false, nil
	}
	seed := uint64(1)
	if in := strings.TrimSpace(a.Input); in != "" {
		n, err := strconv.ParseUint(in, 10, 64)
		if err != nil {
			return false, nil
		}
		seed = n
	}
	want, err := funcvm.Expect(f.Function, f.DataMiB, seed)
	if err != nil {
		v.log.Warn("load: cannot compute the expected result", "function", a.Function, "input", seed, "err", err)
		return false, nil
	}
	var got struct {
		Checksum string `json:"checksum"`
	}
	if err := json.Unmarshal(result, &got); err != nil {
		return true, fmt.Errorf("%s input %d: result %.80q is not JSON: %v", a.Function, seed, result, err)
	}
	if got.Checksum != want {
		return true, fmt.Errorf("%s input %d: checksum %s, want %s (%s computed on this host)", a.Function, seed, got.Checksum, want, f.Function)
	}
	return true, nil
}

// serveStarter starts snapbpf serve under one policy for --compare.
type serveStarter struct {
	lf       *loadFlags
	log      *slog.Logger
	verifier *resultVerifier
	// vmmsLeft are, by policy, the VMMs still running once that policy's
	// service had stopped.
	vmmsLeft map[string][]int
	// extraArgs are more arguments for the service (--budget-half's budget).
	extraArgs []string
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
	argv = append(argv, s.extraArgs...)
	logPath := filepath.Join(os.TempDir(), fmt.Sprintf("snapbpf-load-serve-%s-%d.log", pol, os.Getpid()))
	if s.lf.out != "" {
		logPath = strings.TrimSuffix(s.lf.out, ".json") + "-serve-" + pol + ".log"
		if len(s.extraArgs) > 0 {
			logPath = strings.TrimSuffix(s.lf.out, ".json") + "-serve-" + pol + "-budget.log"
		}
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
		left, lerr := s.vmmsAfterStop()
		s.vmmsLeft[pol] = left
		if len(left) > 0 {
			s.log.Error("load: VMMs outlived the service", "policy", pol, "pids", fmt.Sprint(left))
		}
		return errors.Join(err, lerr)
	}
	wctx, cancel := context.WithTimeout(ctx, s.lf.readyTimeout)
	defer cancel()
	for _, fn := range s.lf.cfg.Functions {
		f, err := c.Wait(wctx, fn, time.Second, nil)
		if err == nil {
			s.verifier.add(f)
		}
		if err != nil {
			if serveclient.StatusOf(err) == 404 {
				err = fmt.Errorf("function %s is not registered: create it first (snapbpf fn create %s --function F --wait)", fn, fn)
			}
			return nil, nil, errors.Join(err, stop())
		}
	}
	return c, stop, nil
}

// vmmsAfterStop lists the VMMs of this home still running after the
// service stopped, giving those that are exiting up to 5 s.
func (s *serveStarter) vmmsAfterStop() ([]int, error) {
	dir := runDir()
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		left, err := loadgen.ProcessesUsing(dir)
		if err != nil || len(left) == 0 || time.Now().After(end) {
			return left, err
		}
	}
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
