// Package servetest is a fake snapbpf serve for tests of its clients: real
// HTTP over a real unix socket (or TCP), speaking api/openapi.yaml, with
// functions that become ready after a few polls and invocations that sleep.
// Every response it sends is checked against the OpenAPI description, so a
// client tested against it is tested against the contract.
package servetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/snapbpf/snapbpf/api"
	"github.com/snapbpf/snapbpf/internal/functions"
)

// Options shapes the fake service.
type Options struct {
	// TCP listens on 127.0.0.1 instead of a unix socket.
	TCP bool
	// Token, when set, is the bearer token every request must carry.
	Token string
	// WarmDelay and ColdDelay are how long a warm and a cold invocation
	// take (defaults 2 ms and 20 ms).
	WarmDelay, ColdDelay time.Duration
	// Polls is how many GETs a new function takes to become ready (one
	// state per poll: creating, recording, ready; default 2).
	Polls int
}

// Server is the fake service.
type Server struct {
	// Socket is the unix socket's path (empty with TCP).
	Socket string
	// URL is the TCP server's http://HOST:PORT (empty on a unix socket).
	URL string

	// Status, when it has an entry for a function, is what invoking that
	// function answers instead of running it (429, 503, 504...).
	Status sync.Map // name → int

	opts    Options
	t       testing.TB
	srv     *httptest.Server
	router  routers.Router
	mu      sync.Mutex
	fns     map[string]*fn
	invokes atomic.Int64
	inputs  map[string][]string // name → the inputs of its invocations
}

type fn struct {
	info  map[string]any
	polls int
	warm  int
	busy  int
}

// New starts the fake service; it stops when the test ends.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.WarmDelay == 0 {
		opts.WarmDelay = 2 * time.Millisecond
	}
	if opts.ColdDelay == 0 {
		opts.ColdDelay = 20 * time.Millisecond
	}
	if opts.Polls == 0 {
		opts.Polls = 2
	}
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI)
	if err != nil {
		t.Fatalf("servetest: api/openapi.yaml: %v", err)
	}
	doc.Servers = nil // match any host: the socket's and 127.0.0.1's
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatalf("servetest: router: %v", err)
	}
	s := &Server{opts: opts, t: t, router: router, fns: map[string]*fn{}, inputs: map[string][]string{}}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.checked))
	if opts.TCP {
		s.srv.Start()
		s.URL = s.srv.URL
	} else {
		s.Socket = filepath.Join(t.TempDir(), "snapbpf.sock")
		l, err := net.Listen("unix", s.Socket)
		if err != nil {
			t.Fatalf("servetest: %v", err)
		}
		s.srv.Listener.Close()
		s.srv.Listener = l
		s.srv.Start()
	}
	t.Cleanup(s.srv.Close)
	return s
}

// Invocations is how many invocations ran a function (not those answered
// with an error).
func (s *Server) Invocations() int64 { return s.invokes.Load() }

// Inputs returns the bodies name's invocations carried, in arrival order.
func (s *Server) Inputs(name string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.inputs[name])
}

// recorder keeps a response so it can be checked before it is sent.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) WriteHeader(status int)      { r.status = status }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }

// checked serves a request and checks the response against the OpenAPI
// description before sending it.
func (s *Server) checked(w http.ResponseWriter, req *http.Request) {
	// Keep the body (up to a little over the bound) to check the request.
	body, _ := io.ReadAll(io.LimitReader(req.Body, maxBody+1))
	req.Body = io.NopCloser(bytes.NewReader(body))
	rec := &recorder{header: http.Header{}, status: http.StatusOK}
	s.serve(rec, req)
	if route, params, err := s.router.FindRoute(req); err == nil {
		reqIn := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
		// A request the fake accepted must be one the description allows
		// (tests send bad ones on purpose, which the fake refuses).
		if rec.status < 300 {
			req.Body = io.NopCloser(bytes.NewReader(body))
			if err := openapi3filter.ValidateRequest(context.Background(), reqIn); err != nil {
				s.t.Errorf("servetest: %s %s was accepted, but api/openapi.yaml does not allow it: %v", req.Method, req.URL.Path, err)
			}
		}
		in := &openapi3filter.ResponseValidationInput{
			RequestValidationInput: reqIn,
			Status:                 rec.status,
			Header:                 rec.header,
			Body:                   io.NopCloser(bytes.NewReader(rec.body.Bytes())),
		}
		if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
			s.t.Errorf("servetest: %s %s answered %d, which api/openapi.yaml does not allow: %v", req.Method, req.URL.Path, rec.status, err)
		}
	}
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.status)
	w.Write(rec.body.Bytes())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, status int, format string, a ...any) {
	writeJSON(w, status, map[string]string{"error": fmt.Sprintf(format, a...)})
}

// maxBody is the fake's bound on request bodies.
const maxBody = 1 << 20

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

func (s *Server) serve(w http.ResponseWriter, req *http.Request) {
	if s.opts.Token != "" && req.Header.Get("Authorization") != "Bearer "+s.opts.Token {
		fail(w, http.StatusUnauthorized, "missing or wrong bearer token; give the token of --token-file")
		return
	}
	path := req.URL.Path
	switch {
	case path == "/healthz" && req.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	case path == "/metrics" && req.Method == http.MethodGet:
		s.metrics(w)
	case path == "/v1/functions" && req.Method == http.MethodGet:
		s.list(w)
	case path == "/v1/functions" && req.Method == http.MethodPost:
		s.create(w, req)
	case strings.HasPrefix(path, "/v1/functions/"):
		rest := strings.TrimPrefix(path, "/v1/functions/")
		name, invoke := strings.CutSuffix(rest, "/invoke")
		switch {
		case strings.Contains(name, "/"):
			fail(w, http.StatusNotFound, "no such path %s", path)
		case invoke && req.Method == http.MethodPost:
			s.invoke(w, req, name)
		case !invoke && req.Method == http.MethodGet:
			s.get(w, name)
		case !invoke && req.Method == http.MethodDelete:
			s.delete(w, name)
		default:
			fail(w, http.StatusMethodNotAllowed, "%s %s: method not allowed", req.Method, path)
		}
	default:
		fail(w, http.StatusNotFound, "no such path %s", path)
	}
}

func (s *Server) metrics(w http.ResponseWriter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	warm, busy := 0, 0
	for _, f := range s.fns {
		warm, busy = warm+f.warm, busy+f.busy
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprintf(w, "# HELP snapbpf_instances Instances by state.\n# TYPE snapbpf_instances gauge\n")
	fmt.Fprintf(w, "snapbpf_instances{state=\"warm\"} %d\nsnapbpf_instances{state=\"busy\"} %d\n", warm, busy)
	fmt.Fprintf(w, "# TYPE snapbpf_memory_used_bytes gauge\nsnapbpf_memory_used_bytes{kind=\"cache\"} %d\nsnapbpf_memory_used_bytes{kind=\"private\"} %d\n", len(s.fns)*32<<20, (warm+busy)*16<<20)
	fmt.Fprintf(w, "# TYPE snapbpf_invocations_total counter\nsnapbpf_invocations_total{outcome=\"ok\"} %d\n", s.invokes.Load())
}

func (s *Server) list(w http.ResponseWriter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.fns))
	for n := range s.fns {
		names = append(names, n)
	}
	slices.Sort(names)
	l := []map[string]any{}
	for _, n := range names {
		l = append(l, s.fns[n].view())
	}
	writeJSON(w, http.StatusOK, map[string]any{"functions": l})
}

func (f *fn) view() map[string]any {
	v := map[string]any{}
	for k, x := range f.info {
		v[k] = x
	}
	v["instances"] = map[string]int{"warm": f.warm, "busy": f.busy}
	return v
}

func (s *Server) create(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(nil, req.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			fail(w, http.StatusRequestEntityTooLarge, "request body over %d bytes; send a function's registration only", maxBody)
			return
		}
		fail(w, http.StatusBadRequest, "reading the body: %v", err)
		return
	}
	var c api.CreateRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		fail(w, http.StatusBadRequest, "malformed JSON: %v; send {\"name\":...,\"function\":...}", err)
		return
	}
	if !nameRE.MatchString(c.Name) {
		fail(w, http.StatusBadRequest, "name %q: want [a-z0-9][a-z0-9-]{0,62}", c.Name)
		return
	}
	if c.Function != "broken" && !slices.Contains(functions.Names(), c.Function) {
		fail(w, http.StatusBadRequest, "function %q: want one of %s", c.Function, strings.Join(functions.Names(), ", "))
		return
	}
	if c.Runtime == "" {
		c.Runtime = "go"
	}
	if c.Runtime != "go" {
		fail(w, http.StatusBadRequest, "runtime %q: want go", c.Runtime)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.fns[c.Name]; ok {
		fail(w, http.StatusConflict, "function %s exists; delete it first or pick another name", c.Name)
		return
	}
	f := &fn{info: map[string]any{"name": c.Name, "function": c.Function, "runtime": c.Runtime,
		"memory_mib": c.MemMiB, "data_mib": c.DataMiB, "state": "creating",
		"progress": map[string]any{"step": "snapshot", "done": 0, "total": 1}}}
	s.fns[c.Name] = f
	writeJSON(w, http.StatusAccepted, f.view())
}

// advance moves a function one poll towards ready (or failed).
func (s *Server) advance(f *fn) {
	if f.info["state"] == "ready" || f.info["state"] == "failed" {
		return
	}
	f.polls++
	switch {
	case f.info["function"] == "broken":
		f.info["state"], f.info["error"] = "failed", "snapshot validation: memory file truncated; delete and create the function again"
	case f.polls >= s.opts.Polls:
		f.info["state"] = "ready"
		f.info["progress"] = map[string]any{"step": "done", "done": 8, "total": 8}
		f.info["snapshot_id"] = "snap-" + f.info["name"].(string)
		f.info["wset_pages"] = 4242
		f.info["recorded_at"] = "2026-12-01T23:00:00Z"
		f.info["miss_rate"] = 0.01
		f.info["rerecords"] = []map[string]string{}
	default:
		f.info["state"] = "recording"
		f.info["progress"] = map[string]any{"step": "record", "done": f.polls, "total": 8}
	}
}

func (s *Server) get(w http.ResponseWriter, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.fns[name]
	if !ok {
		fail(w, http.StatusNotFound, "no function %s; list them with GET /v1/functions", name)
		return
	}
	s.advance(f)
	writeJSON(w, http.StatusOK, f.view())
}

func (s *Server) delete(w http.ResponseWriter, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.fns[name]; !ok {
		fail(w, http.StatusNotFound, "no function %s; list them with GET /v1/functions", name)
		return
	}
	delete(s.fns, name)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) invoke(w http.ResponseWriter, req *http.Request, name string) {
	body, err := io.ReadAll(http.MaxBytesReader(nil, req.Body, maxBody))
	if err != nil {
		fail(w, http.StatusRequestEntityTooLarge, "input over %d bytes", maxBody)
		return
	}
	input := strings.TrimSpace(string(body))
	if input == "" {
		input = "1"
	}
	if _, err := strconv.ParseUint(input, 10, 53); err != nil {
		fail(w, http.StatusBadRequest, "input %q: want the input seed as decimal text, e.g. 4", input)
		return
	}
	if v, ok := s.Status.Load(name); ok {
		status := v.(int)
		if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		fail(w, status, "function %s: scripted answer %d", name, status)
		return
	}
	s.mu.Lock()
	f, ok := s.fns[name]
	if !ok {
		s.mu.Unlock()
		fail(w, http.StatusNotFound, "no function %s; create it with POST /v1/functions", name)
		return
	}
	if f.info["state"] != "ready" {
		s.mu.Unlock()
		fail(w, http.StatusConflict, "function %s is %s, not ready; wait for it", name, f.info["state"])
		return
	}
	start, delay := "warm", s.opts.WarmDelay
	if f.warm > 0 {
		f.warm--
	} else {
		start, delay = "cold", s.opts.ColdDelay+s.opts.WarmDelay
	}
	f.busy++
	s.inputs[name] = append(s.inputs[name], input)
	s.mu.Unlock()
	t0 := time.Now()
	time.Sleep(delay)
	s.invokes.Add(1)
	s.mu.Lock()
	f.busy--
	f.warm++
	s.mu.Unlock()
	h := w.Header()
	h.Set("X-Snapbpf-Start", start)
	restore, prefetch := 0.0, 0
	if start == "cold" {
		restore, prefetch = float64(s.opts.ColdDelay.Milliseconds()), 9<<20
	}
	h.Set("X-Snapbpf-Restore-Ms", strconv.FormatFloat(restore, 'f', 1, 64))
	h.Set("X-Snapbpf-Prefetch-Bytes", strconv.Itoa(prefetch))
	h.Set("X-Snapbpf-Queue-Ms", "0.5")
	h.Set("X-Snapbpf-Total-Ms", strconv.FormatFloat(float64(time.Since(t0).Microseconds())/1000, 'f', 1, 64))
	writeJSON(w, http.StatusOK, map[string]any{"checksum": "sum-" + input, "guest_fn_ms": float64(s.opts.WarmDelay.Milliseconds())})
}
