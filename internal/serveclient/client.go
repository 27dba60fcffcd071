// Package serveclient is a client of the HTTP API that `snapbpf serve`
// speaks (api/openapi.yaml), over its unix socket or over TCP with a bearer
// token. Errors from the service are *Error values carrying its status and
// message.
package serveclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/snapbpf/snapbpf/api"
)

// Options says where the service is. Exactly one of Socket and URL.
type Options struct {
	// Socket is the path of the service's unix socket.
	Socket string
	// URL is the service's TCP address, as http://HOST:PORT.
	URL string
	// Token is sent as a bearer token (needed on TCP).
	Token string
	// MaxConns bounds the open connections (0: 256); a load generator
	// sends many requests at once.
	MaxConns int
}

// Client talks to one snapbpf serve.
type Client struct {
	hc    *http.Client
	base  string
	token string
	where string // for error messages
}

// New returns a client of the service at opts.Socket or opts.URL.
func New(opts Options) (*Client, error) {
	if (opts.Socket == "") == (opts.URL == "") {
		return nil, errors.New("serve client: give either a unix socket or a URL")
	}
	conns := opts.MaxConns
	if conns <= 0 {
		conns = 256
	}
	tr := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, IdleConnTimeout: 90 * time.Second}
	c := &Client{hc: &http.Client{Transport: tr}, token: opts.Token}
	if opts.Socket != "" {
		sock := opts.Socket
		var d net.Dialer
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", sock)
		}
		// Any host name: the dialer ignores it.
		c.base, c.where = "http://snapbpf", "unix socket "+sock
		return c, nil
	}
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("serve URL %q: want http://HOST:PORT", opts.URL)
	}
	c.base, c.where = strings.TrimSuffix(u.String(), "/"), u.String()
	return c, nil
}

// Close closes idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Error is an error answer of the service.
type Error struct {
	Status  int
	Message string
	// RetryAfter is the service's Retry-After, on 429 and 503.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	return fmt.Sprintf("snapbpf serve: %s (HTTP %d)", msg, e.Status)
}

// StatusOf returns the HTTP status of a service error, or 0 when err is not
// one (the service could not be reached, say).
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// maxBody bounds what the client reads of a response.
const maxBody = 64 << 20

// do sends a request and returns the response with its body read. A status
// other than want becomes an *Error.
func (c *Client) do(ctx context.Context, method, path, ctype string, body []byte, want int) (*http.Response, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, nil, fmt.Errorf("serve request %s %s: %w", method, path, err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("%s %s: %w", method, path, ctx.Err())
		}
		return nil, nil, fmt.Errorf("cannot reach snapbpf serve at %s: %w; start it with `snapbpf serve`, or point --socket or --url at it", c.where, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode != want {
		return resp, data, errorOf(resp, data)
	}
	return resp, data, nil
}

// errorOf turns an error answer into an *Error, keeping the service's
// message ({"error": "..."}) or, when the body is not that, its text.
func errorOf(resp *http.Response, data []byte) *Error {
	e := &Error{Status: resp.StatusCode}
	var body api.ErrorBody
	if json.Unmarshal(data, &body) == nil && body.Error != "" {
		e.Message = body.Error
	} else {
		e.Message = strings.TrimSpace(string(data))
		if len(e.Message) > 200 {
			e.Message = e.Message[:200] + "..."
		}
	}
	if s := resp.Header.Get("Retry-After"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n >= 0 {
			e.RetryAfter = time.Duration(n) * time.Second
		}
	}
	return e
}

func (c *Client) doJSON(ctx context.Context, method, path string, in any, want int, out any) error {
	var body []byte
	var ctype string
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		ctype = "application/json"
	}
	_, data, err := c.do(ctx, method, path, ctype, body, want)
	if err != nil || out == nil {
		return err
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: the service's answer is not the API's JSON (%w); is %s a snapbpf serve of this version?", method, path, err, c.where)
	}
	return nil
}

func fnPath(name string) string { return "/v1/functions/" + url.PathEscape(name) }

// Create registers a function; its creation goes on in the background
// (see Wait).
func (c *Client) Create(ctx context.Context, req api.CreateRequest) (api.Function, error) {
	var f api.Function
	err := c.doJSON(ctx, http.MethodPost, "/v1/functions", req, http.StatusAccepted, &f)
	return f, err
}

// List returns every registered function.
func (c *Client) List(ctx context.Context) ([]api.Function, error) {
	var l api.FunctionList
	err := c.doJSON(ctx, http.MethodGet, "/v1/functions", nil, http.StatusOK, &l)
	return l.Functions, err
}

// Nodes returns the nodes whose heartbeat is current.
func (c *Client) Nodes(ctx context.Context) ([]api.Node, error) {
	var l api.NodeList
	err := c.doJSON(ctx, http.MethodGet, "/v1/nodes", nil, http.StatusOK, &l)
	return l.Nodes, err
}

// Get returns one function.
func (c *Client) Get(ctx context.Context, name string) (api.Function, error) {
	var f api.Function
	err := c.doJSON(ctx, http.MethodGet, fnPath(name), nil, http.StatusOK, &f)
	return f, err
}

// Delete deletes a function.
func (c *Client) Delete(ctx context.Context, name string) error {
	return c.doJSON(ctx, http.MethodDelete, fnPath(name), nil, http.StatusNoContent, nil)
}

// Wait polls a function every interval until its creation is done (ready
// or failed), calling seen with each state it gets. A failed function is
// returned with an error carrying its reason.
func (c *Client) Wait(ctx context.Context, name string, interval time.Duration, seen func(api.Function)) (api.Function, error) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		f, err := c.Get(ctx, name)
		if err != nil {
			return f, err
		}
		if seen != nil {
			seen(f)
		}
		switch f.State {
		case api.StateReady:
			return f, nil
		case api.StateFailed:
			return f, fmt.Errorf("function %s failed: %s", name, f.Error)
		}
		select {
		case <-ctx.Done():
			return f, fmt.Errorf("waiting for function %s (state %s): %w", name, f.State, ctx.Err())
		case <-t.C:
		}
	}
}

// Invoke invokes a function with input as its body (for runtime go, the
// input seed as decimal text; empty means 1).
func (c *Client) Invoke(ctx context.Context, name string, input []byte) (*Invocation, error) {
	if input == nil {
		input = []byte{}
	}
	resp, data, err := c.do(ctx, http.MethodPost, fnPath(name)+"/invoke", "text/plain", input, http.StatusOK)
	if err != nil {
		return nil, err
	}
	h := resp.Header
	inv := &Invocation{Result: data, Start: h.Get("X-Snapbpf-Start")}
	inv.RestoreMs = headerFloat(h, "X-Snapbpf-Restore-Ms")
	inv.PrefetchBytes = int64(headerFloat(h, "X-Snapbpf-Prefetch-Bytes"))
	inv.QueueMs = headerFloat(h, "X-Snapbpf-Queue-Ms")
	inv.TotalMs = headerFloat(h, "X-Snapbpf-Total-Ms")
	inv.Node = h.Get("X-Snapbpf-Node")
	return inv, nil
}

// headerFloat reads a numeric header; a missing or malformed one is 0.
func headerFloat(h http.Header, key string) float64 {
	v, err := strconv.ParseFloat(h.Get(key), 64)
	if err != nil {
		return 0
	}
	return v
}

// Health checks that the service answers /healthz.
func (c *Client) Health(ctx context.Context) error {
	var h api.Health
	if err := c.doJSON(ctx, http.MethodGet, "/healthz", nil, http.StatusOK, &h); err != nil {
		return err
	}
	if !h.OK {
		return fmt.Errorf("snapbpf serve at %s says it is not healthy", c.where)
	}
	return nil
}

// Metrics returns the service's Prometheus metrics, as text.
func (c *Client) Metrics(ctx context.Context) ([]byte, error) {
	_, data, err := c.do(ctx, http.MethodGet, "/metrics", "", nil, http.StatusOK)
	return data, err
}
