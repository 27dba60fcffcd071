package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/snapbpf/snapbpf/api"
	"github.com/snapbpf/snapbpf/internal/bus"
	"github.com/snapbpf/snapbpf/internal/progress"
	"github.com/snapbpf/snapbpf/internal/serveclient"
)

// defaultServeSocket is where snapbpf serve listens unless told otherwise.
func defaultServeSocket() string { return filepath.Join(serveHome(), "snapbpf.sock") }

// serveFlags say where snapbpf serve is: the flags of every client command.
type serveFlags struct {
	socket, url, tokenFile string
}

func (f *serveFlags) add(cmd *cobra.Command) {
	fl := cmd.PersistentFlags()
	fl.StringVar(&f.socket, "socket", "", "snapbpf serve's unix socket (default $SNAPBPF_HOME/serve/snapbpf.sock)")
	fl.StringVar(&f.url, "url", "", "snapbpf serve's TCP address instead of the socket, e.g. http://127.0.0.1:8080 (needs --token-file)")
	fl.StringVar(&f.tokenFile, "token-file", "", "file holding the bearer token of the service's TCP listener")
	cmd.MarkFlagsMutuallyExclusive("socket", "url")
}

// client returns a client of the service the flags name.
func (f *serveFlags) client(maxConns int) (*serveclient.Client, error) {
	opts := serveclient.Options{Socket: f.socket, URL: f.url, MaxConns: maxConns}
	if opts.URL == "" && opts.Socket == "" {
		opts.Socket = defaultServeSocket()
	}
	if f.tokenFile != "" {
		tok, err := readToken(f.tokenFile)
		if err != nil {
			return nil, err
		}
		opts.Token = tok
	}
	return serveclient.New(opts)
}

// run is the RunE of a fn subcommand: it connects to the service the
// flags name, runs do with the client and closes it, so that each
// subcommand holds only its own request.
func (f *serveFlags) run(do func(cmd *cobra.Command, args []string, c *serveclient.Client) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := f.client(0)
		if err != nil {
			return err
		}
		defer c.Close()
		return do(cmd, args, c)
	}
}

// readToken reads a bearer token file: its first line, trimmed.
func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	tok, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if tok = strings.TrimSpace(tok); tok == "" {
		return "", fmt.Errorf("--token-file %s is empty; put the token snapbpf serve was given in it", path)
	}
	return tok, nil
}

func newFnCmd() *cobra.Command {
	var sf serveFlags
	cmd := &cobra.Command{
		Use:   "fn",
		Short: "Manage and invoke the functions of a running snapbpf serve",
		Long: "Client of snapbpf serve's HTTP API (api/openapi.yaml), over its unix socket\n" +
			"($SNAPBPF_HOME/serve/snapbpf.sock) or, with --url and --token-file, over TCP.",
	}
	sf.add(cmd)
	cmd.AddCommand(newFnCreateCmd(&sf), newFnLsCmd(&sf), newFnGetCmd(&sf), newFnRmCmd(&sf), newFnInvokeCmd(&sf))
	return cmd
}

func newFnCreateCmd(sf *serveFlags) *cobra.Command {
	var (
		req      api.CreateRequest
		wait     bool
		timeout  time.Duration
		interval time.Duration
		asJSON   bool
	)
	cmd := &cobra.Command{
		Use:   "create NAME [--function F] [--wait]",
		Short: "Register a function: the service snapshots it and records its working set in the background",
		Args:  cobra.ExactArgs(1),
		RunE: sf.run(func(cmd *cobra.Command, args []string, c *serveclient.Client) error {
			req.Name = args[0]
			if req.Function == "" {
				req.Function = req.Name
			}
			ctx := cmd.Context()
			f, err := c.Create(ctx, req)
			if err != nil {
				return fmt.Errorf("fn create %s: %w", req.Name, err)
			}
			if wait {
				ctx, cancel := context.WithTimeout(ctx, timeout)
				defer cancel()
				seen, done := showProgress(meter(cmd), req.Name)
				f, err = c.Wait(ctx, req.Name, interval, seen)
				done()
				if err != nil {
					return fmt.Errorf("fn create %s --wait: %w", req.Name, err)
				}
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), f)
			}
			if wait {
				fmt.Fprintf(cmd.OutOrStdout(), "%s ready: snapshot %s, working set %d pages\n", f.Name, f.SnapshotID, f.WSetPages)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s (follow it with: snapbpf fn get %s)\n", f.Name, f.State, f.Name)
			}
			return nil
		}),
	}
	fl := cmd.Flags()
	fl.StringVar(&req.Function, "function", "", "built-in function to run (snapbpf functions; default NAME)")
	fl.StringVar(&req.Runtime, "runtime", "go", "runtime: go (the agent's functions) or python (its image is built on first use)")
	fl.IntVar(&req.MemMiB, "memory-mib", 0, "guest RAM in MiB (0: the function's default)")
	fl.IntVar(&req.DataMiB, "data-mib", 0, "the function's data size in MiB (0: its default)")
	fl.BoolVar(&wait, "wait", false, "wait until the function is ready, showing progress on stderr")
	fl.DurationVar(&timeout, "timeout", 10*time.Minute, "with --wait, give up after this long")
	fl.DurationVar(&interval, "poll", 500*time.Millisecond, "with --wait, how often to ask")
	fl.BoolVar(&asJSON, "json", false, "print the function as JSON (api/openapi.yaml's Function)")
	return cmd
}

// showProgress returns a callback that follows a function's creation as
// a progress job of the steps the service counts (progress.done of
// progress.total), and how to end the job.
func showProgress(m progress.Meter, name string) (seen func(api.Function), done func()) {
	var (
		job          progress.Job
		total, steps int
	)
	seen = func(f api.Function) {
		if job == nil {
			total = max(f.Progress.Total, 1)
			job = m.Start("fn create "+name, total)
		}
		what := f.State
		if p := f.Progress; p.Step != "" {
			what += ": " + p.Step
		}
		// Step i starts once i-1 steps are done.
		want := f.Progress.Done + 1
		if f.Done() {
			want = total
		}
		for ; steps < min(want, total); steps++ {
			job.Step(what)
		}
	}
	done = func() {
		if job != nil {
			job.Done()
		}
	}
	return seen, done
}

func newFnLsCmd(sf *serveFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the registered functions",
		Args:  cobra.NoArgs,
		RunE: sf.run(func(cmd *cobra.Command, _ []string, c *serveclient.Client) error {
			l, err := c.List(cmd.Context())
			if err != nil {
				return fmt.Errorf("fn ls: %w", err)
			}
			if asJSON {
				// The API's own shape (GET /v1/functions), never null.
				if l == nil {
					l = []api.Function{}
				}
				return writeJSON(cmd.OutOrStdout(), api.FunctionList{Functions: l})
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tFUNCTION\tRUNTIME\tSTATE\tWSET_PAGES\tMISS_RATE\tWARM\tBUSY\tNODE\tREADY_ON")
			for _, f := range l {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%.3f\t%d\t%d\t%s\t%s\n", f.Name, f.Function, f.Runtime, stateOf(f),
					f.WSetPages, f.MissRate, f.Instances.Warm, f.Instances.Busy, f.Node, orDash(strings.Join(f.ReadyOn, ",")))
			}
			return tw.Flush()
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"functions":[...]}, the body of GET /v1/functions (api/openapi.yaml's FunctionList)`)
	return cmd
}

// stateOf is a function's state with its creation step while not done.
func stateOf(f api.Function) string {
	if f.Done() || f.Progress.Step == "" {
		return f.State
	}
	return f.State + " (" + f.Progress.Step + ")"
}

func newFnGetCmd(sf *serveFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "get NAME",
		Short: "Show one function: state, snapshot, working set, miss rate, instances",
		Args:  cobra.ExactArgs(1),
		RunE: sf.run(func(cmd *cobra.Command, args []string, c *serveclient.Client) error {
			f, err := c.Get(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("fn get %s: %w", args[0], err)
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), f)
			}
			printFunction(cmd.OutOrStdout(), f)
			return nil
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the function as JSON (api/openapi.yaml's Function)")
	return cmd
}

func printFunction(w io.Writer, f api.Function) {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s:\t"+format+"\n", append([]any{k}, a...)...) }
	row("name", "%s", f.Name)
	row("function", "%s (runtime %s, memory %d MiB, data %d MiB)", f.Function, f.Runtime, f.MemMiB, f.DataMiB)
	row("state", "%s", stateOf(f))
	if f.Progress.Total > 0 && !f.Done() {
		row("progress", "%d/%d", f.Progress.Done, f.Progress.Total)
	}
	if f.Error != "" {
		row("error", "%s", f.Error)
	}
	if f.SnapshotID != "" {
		row("snapshot", "%s", f.SnapshotID)
	}
	if f.RecordedAt != nil {
		row("working set", "%d pages, recorded %s", f.WSetPages, f.RecordedAt.Format(time.RFC3339))
	}
	if p := f.Publication; p != nil {
		row("published", "%s", publication(f))
	}
	row("miss rate", "%.3f", f.MissRate)
	for _, r := range f.Rerecords {
		row("re-recorded", "%s: %s", r.At.Format(time.RFC3339), r.Reason)
	}
	row("instances", "%d warm, %d busy", f.Instances.Warm, f.Instances.Busy)
	if f.Node != "" {
		row("node", "%s (made its snapshot)", f.Node)
	}
	row("ready on", "%s", strings.Join(f.ReadyOn, ", "))
	tw.Flush()
}

// publication says where f's snapshot stands in the snapshot store.
func publication(f api.Function) string {
	p := f.Publication
	have := "not yet"
	if p.WSetVersion > 0 {
		have = fmt.Sprintf("working set version %d", p.WSetVersion)
		if p.At != nil {
			have += " at " + p.At.Format(time.RFC3339)
		}
	}
	switch {
	case f.Published():
		return have
	case p.Error != "":
		at := ""
		if p.RetryAt != nil {
			at = ", next at " + p.RetryAt.Format(time.RFC3339)
		}
		return fmt.Sprintf("%s; publishing version %d failed %d time(s)%s: %s", have, f.WSetVersion, p.Attempts, at, p.Error)
	}
	return fmt.Sprintf("%s; publishing version %d", have, f.WSetVersion)
}

func newFnRmCmd(sf *serveFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "rm NAME...",
		Short: "Delete functions, their instances and snapshots",
		Args:  cobra.MinimumNArgs(1),
		RunE: sf.run(func(cmd *cobra.Command, args []string, c *serveclient.Client) error {
			for _, name := range args {
				if err := c.Delete(cmd.Context(), name); err != nil {
					return fmt.Errorf("fn rm %s: %w", name, err)
				}
				if !asJSON {
					fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", name)
				}
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), map[string][]string{"deleted": args})
			}
			return nil
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"deleted":[NAME...]}`)
	return cmd
}

// invokeOutput is fn invoke --json.
type invokeOutput struct {
	Name          string          `json:"name"`
	Result        json.RawMessage `json:"result"`
	Start         string          `json:"start"`
	RestoreMs     float64         `json:"restore_ms"`
	PrefetchBytes int64           `json:"prefetch_bytes"`
	QueueMs       float64         `json:"queue_ms"`
	TotalMs       float64         `json:"total_ms"`
	ClientMs      float64         `json:"client_ms"`
}

func newFnInvokeCmd(sf *serveFlags) *cobra.Command {
	var (
		input, inputFile string
		asJSON           bool
	)
	cmd := &cobra.Command{
		Use:   "invoke NAME [--input SEED | --input-file F]",
		Short: "Invoke a function: prints its result on stdout and the timing on stderr",
		Args:  cobra.ExactArgs(1),
		RunE: sf.run(func(cmd *cobra.Command, args []string, c *serveclient.Client) error {
			body := []byte(input)
			if inputFile != "" {
				var err error
				if inputFile == "-" {
					body, err = io.ReadAll(cmd.InOrStdin())
				} else {
					body, err = os.ReadFile(inputFile)
				}
				if err != nil {
					return fmt.Errorf("fn invoke --input-file: %w", err)
				}
			}
			t0 := time.Now()
			inv, err := c.Invoke(cmd.Context(), args[0], body)
			if err != nil {
				return fmt.Errorf("fn invoke %s: %w", args[0], err)
			}
			clientMs := float64(time.Since(t0).Microseconds()) / 1000
			if asJSON {
				res := json.RawMessage(inv.Result)
				if !json.Valid(res) {
					// A result that is not JSON is kept as a JSON string.
					res, _ = json.Marshal(string(inv.Result))
				}
				return writeJSON(cmd.OutOrStdout(), invokeOutput{Name: args[0], Result: res, Start: inv.Start,
					RestoreMs: inv.RestoreMs, PrefetchBytes: inv.PrefetchBytes, QueueMs: inv.QueueMs,
					TotalMs: inv.TotalMs, ClientMs: clientMs})
			}
			out := cmd.OutOrStdout()
			out.Write(inv.Result)
			if len(inv.Result) > 0 && inv.Result[len(inv.Result)-1] != '\n' {
				fmt.Fprintln(out)
			}
			logger(cmd).Info("fn invoke", "name", args[0], "start", inv.Start, "restore_ms", inv.RestoreMs, "prefetch_mib", float64(inv.PrefetchBytes)/(1<<20),
				"queue_ms", inv.QueueMs, "service_ms", inv.TotalMs, "client_ms", clientMs)
			return nil
		}),
	}
	cmd.Flags().StringVar(&input, "input", "", "the function's input (runtime go: the input seed, e.g. 4; empty means 1)")
	cmd.Flags().StringVar(&inputFile, "input-file", "", "send this file's bytes as the input (- for stdin): a python function's payload")
	cmd.MarkFlagsMutuallyExclusive("input", "input-file")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print {name, result, start, restore_ms, prefetch_bytes, queue_ms, total_ms, client_ms}")
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newNodesCmd() *cobra.Command {
	var (
		sf     serveFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "nodes",
		Short: "List the nodes of the cluster: their functions, instances and memory (from their heartbeats)",
		Long: `nodes asks a snapbpf serve (the local one by default) for the nodes whose
heartbeat is current: each node puts its status in the JetStream key-value
bucket snapbpf-nodes every second; one silent for 3 s is left out.`,
		Args: cobra.NoArgs,
		RunE: sf.run(func(cmd *cobra.Command, _ []string, c *serveclient.Client) error {
			l, err := c.Nodes(cmd.Context())
			if err != nil {
				return fmt.Errorf("nodes: %w", err)
			}
			if l == nil {
				l = []api.Node{}
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), api.NodeList{Nodes: l})
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "NODE\tADDRESS\tFUNCTIONS\tWARM\tBUSY\tMEMORY_MIB\tBUDGET_MIB\tSTATE")
			for _, n := range l {
				state := "up"
				if n.Draining {
					state = "draining"
				}
				budget := "-"
				if n.MemoryBudgetBytes > 0 {
					budget = fmt.Sprint(n.MemoryBudgetBytes >> 20)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", n.Node, orDash(n.Address), orDash(strings.Join(n.Functions, ",")),
					n.Instances.Warm, n.Instances.Busy, n.MemoryUsedBytes>>20, budget, state)
			}
			return tw.Flush()
		}),
	}
	sf.add(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"nodes":[...]}, the body of GET /v1/nodes (api/openapi.yaml's NodeList)`)
	cmd.AddCommand(newNodesNkeyCmd())
	return cmd
}

func newNodesNkeyCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "nkey --out FILE",
		Short: "Make a node's NATS identity: an nkey user seed in FILE (mode 0600); prints its public key",
		Long: `nkey writes a new nkey user seed (SU...) to FILE, for serve --nats-creds,
and prints its public key (U...), for the other nodes' --cluster-users.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			seed, pub, err := bus.NewUserSeed()
			if err != nil {
				return err
			}
			f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return fmt.Errorf("nodes nkey: %w (it never overwrites a seed)", err)
			}
			if _, err := f.Write(append(seed, '\n')); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), pub)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "file to write the seed to (must not exist)")
	cmd.MarkFlagRequired("out")
	return cmd
}
