package serve

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/snapbpf/snapbpf/api"
)

// Request limits.
const (
	// MaxCreateBody bounds a create request's JSON.
	MaxCreateBody = 16 << 10
	// MaxInvokeBody bounds an invocation's input.
	MaxInvokeBody = 1 << 20
	// MaxHeaderBytes bounds a request's headers.
	MaxHeaderBytes = 16 << 10
)

// Handler is the API (see api/openapi.yaml).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/functions", s.handleCreate)
	mux.HandleFunc("GET /v1/functions", s.handleList)
	mux.HandleFunc("GET /v1/functions/{name}", s.handleGet)
	mux.HandleFunc("DELETE /v1/functions/{name}", s.handleDelete)
	mux.HandleFunc("POST /v1/functions/{name}/invoke", s.handleInvoke)
	mux.HandleFunc("GET /v1/nodes", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, api.NodeList{Nodes: s.Nodes()})
	})
	prom := promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		// The functions' memory as it is now, with a budget or without
		// (a few milliseconds): what a load run compares budgets by.
		s.budget.measure()
		prom.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, api.Health{OK: true})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, statusErr(http.StatusNotFound, "no such endpoint: %s %s (see api/openapi.yaml)", r.Method, r.URL.Path))
	})
	return mux
}

// HTTPServer is an http.Server for h with the service's limits: bounded
// headers and the time to send them.
func HTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		MaxHeaderBytes:    MaxHeaderBytes,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
}

// RequireToken wraps h so that every request must carry
// "Authorization: Bearer TOKEN": what a TCP listener serves.
func RequireToken(h http.Handler, token string) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="snapbpf"`)
			writeError(w, statusErr(http.StatusUnauthorized, "missing or wrong bearer token: send Authorization: Bearer <the token in the service's --token-file>"))
			return
		}
		h.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// writeError answers err as {"error": ...} with its status (500 unless it
// says otherwise).
func writeError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	var ae *apiError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &ae):
		status = ae.status
		if ae.retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int((ae.retryAfter+time.Second-1)/time.Second)))
		}
	case errors.As(err, &mbe):
		status = http.StatusRequestEntityTooLarge
		err = fmt.Errorf("request body over %d bytes: send a smaller one", mbe.Limit)
	case errors.Is(err, errNotFound):
		status = http.StatusNotFound
	case errors.Is(err, errConflict):
		status = http.StatusConflict
	}
	writeJSON(w, status, api.ErrorBody{Error: err.Error()})
}

// name is the request's function name, checked: it names files.
func name(r *http.Request) (string, error) {
	n := r.PathValue("name")
	if !nameRE.MatchString(n) {
		return "", statusErr(http.StatusBadRequest, "function name %q: want 1 to 63 of a-z, 0-9 and '-', starting with a letter or digit", truncate(n, 80))
	}
	return n, nil
}

func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, MaxCreateBody)
	// Read whole first: a body over the limit is 413 whatever it holds.
	b, err := io.ReadAll(r.Body)
	if err != nil {
		writeError(w, err)
		return
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var req api.CreateRequest
	if err := dec.Decode(&req); err != nil {
		writeError(w, statusErr(http.StatusBadRequest, "request body: %v: want JSON like {\"name\":\"json1\",\"function\":\"json\",\"runtime\":\"go\",\"memory_mib\":256,\"data_mib\":64}", err))
		return
	}
	if dec.More() {
		writeError(w, statusErr(http.StatusBadRequest, "request body: more than one JSON value"))
		return
	}
	f, err := s.Create(req)
	if err != nil {
		if !errors.Is(err, errConflict) {
			var ae *apiError
			if !errors.As(err, &ae) && !strings.HasPrefix(err.Error(), "serve:") {
				err = statusErr(http.StatusBadRequest, "%v", err)
			}
		}
		writeError(w, err)
		return
	}
	w.Header().Set("Location", "/v1/functions/"+f.Name)
	writeJSON(w, http.StatusAccepted, f)
}

func (s *Server) handleList(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, api.FunctionList{Functions: nonNil(s.List())})
}

func nonNil(f []api.Function) []api.Function {
	if f == nil {
		return []api.Function{}
	}
	return f
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	n, err := name(r)
	if err != nil {
		writeError(w, err)
		return
	}
	f, err := s.Get(n)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, f)
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	n, err := name(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := s.Delete(n); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleInvoke(w http.ResponseWriter, r *http.Request) {
	n, err := name(r)
	if err != nil {
		writeError(w, err)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxInvokeBody)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeError(w, err)
		return
	}
	res, err := s.Invoke(r.Context(), n, body)
	if err != nil {
		slog.Debug("serve: invocation refused or failed", "function", n, "err", err)
		writeError(w, err)
		return
	}
	h := w.Header()
	start := api.StartWarm
	if res.Cold {
		start = api.StartCold
	}
	h.Set("X-Snapbpf-Start", start)
	h.Set("X-Snapbpf-Restore-Ms", fmtMs(res.RestoreMs))
	h.Set("X-Snapbpf-Prefetch-Bytes", strconv.FormatInt(res.PrefetchBytes, 10))
	h.Set("X-Snapbpf-Queue-Ms", fmtMs(res.QueueMs))
	h.Set("X-Snapbpf-Total-Ms", fmtMs(res.TotalMs))
	h.Set("X-Snapbpf-Node", res.Node)
	h.Set("Content-Type", res.ContentType)
	w.WriteHeader(http.StatusOK)
	w.Write(res.Result)
}

func fmtMs(ms float64) string { return strconv.FormatFloat(ms, 'f', 2, 64) }

func sortFunctions(f []api.Function) {
	sort.Slice(f, func(i, j int) bool { return f[i].Name < f[j].Name })
}
