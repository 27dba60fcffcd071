package serveclient_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/api"
	"github.com/snapbpf/snapbpf/internal/serveclient"
	"github.com/snapbpf/snapbpf/internal/serveclient/servetest"
)

func newClient(t *testing.T, opts serveclient.Options) *serveclient.Client {
	t.Helper()
	c, err := serveclient.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// TestLifecycle: create, wait through the states, list, get, invoke cold
// then warm with the timing headers, delete, over the unix socket.
func TestLifecycle(t *testing.T) {
	srv := servetest.New(t, servetest.Options{Polls: 3})
	c := newClient(t, serveclient.Options{Socket: srv.Socket})
	ctx := context.Background()
	if err := c.Health(ctx); err != nil {
		t.Fatal(err)
	}
	f, err := c.Create(ctx, api.CreateRequest{Name: "json1", Function: "json", Runtime: "go", MemMiB: 256, DataMiB: 64})
	if err != nil {
		t.Fatal(err)
	}
	if f.State != api.StateCreating || f.MemMiB != 256 {
		t.Errorf("created %+v", f)
	}
	var states []string
	f, err = c.Wait(ctx, "json1", time.Millisecond, func(f api.Function) { states = append(states, f.State) })
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(states, ",") != "recording,recording,ready" || f.WSetPages != 4242 || f.RecordedAt == nil {
		t.Errorf("states %v, ready %+v", states, f)
	}
	l, err := c.List(ctx)
	if err != nil || len(l) != 1 || l[0].Name != "json1" {
		t.Fatalf("list %+v, %v", l, err)
	}
	for i, want := range []string{api.StartCold, api.StartWarm} {
		inv, err := c.Invoke(ctx, "json1", []byte("4"))
		if err != nil {
			t.Fatal(err)
		}
		if inv.Start != want || !strings.Contains(string(inv.Result), "sum-4") || inv.QueueMs != 0.5 || inv.TotalMs <= 0 {
			t.Errorf("invocation %d: %+v", i, inv)
		}
		if want == api.StartCold && (inv.RestoreMs <= 0 || inv.PrefetchBytes != 9<<20) {
			t.Errorf("cold invocation without restore timing: %+v", inv)
		}
	}
	if _, err := c.Invoke(ctx, "json1", nil); err != nil {
		t.Fatal(err)
	}
	if got := srv.Inputs("json1"); strings.Join(got, ",") != "4,4,1" {
		t.Errorf("inputs the service saw: %v", got)
	}
	if err := c.Delete(ctx, "json1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "json1"); serveclient.StatusOf(err) != http.StatusNotFound {
		t.Errorf("get after delete: %v", err)
	}
}

// TestErrors: each error answer becomes an *Error with the service's
// status and message.
func TestErrors(t *testing.T) {
	srv := servetest.New(t, servetest.Options{Polls: 1})
	c := newClient(t, serveclient.Options{Socket: srv.Socket})
	ctx := context.Background()
	if _, err := c.Create(ctx, api.CreateRequest{Name: "a", Function: "json"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, api.CreateRequest{Name: "bad", Function: "broken"}); err != nil {
		t.Fatal(err)
	}
	srv.Status.Store("busy", http.StatusTooManyRequests)
	for _, tc := range []struct {
		name   string
		call   func() error
		status int
		msg    string
	}{
		{"exists", func() error {
			_, err := c.Create(ctx, api.CreateRequest{Name: "a", Function: "json"})
			return err
		}, 409, "exists"},
		{"bad name", func() error {
			_, err := c.Create(ctx, api.CreateRequest{Name: "../x", Function: "json"})
			return err
		}, 400, "want [a-z0-9]"},
		{"unknown function", func() error {
			_, err := c.Create(ctx, api.CreateRequest{Name: "b", Function: "nope"})
			return err
		}, 400, "want one of"},
		{"get unknown", func() error { _, err := c.Get(ctx, "zzz"); return err }, 404, "no function zzz"},
		{"delete unknown", func() error { return c.Delete(ctx, "zzz") }, 404, "no function zzz"},
		{"invoke unknown", func() error { _, err := c.Invoke(ctx, "zzz", nil); return err }, 404, "no function zzz"},
		{"invoke not ready", func() error { _, err := c.Invoke(ctx, "a", nil); return err }, 409, "not ready"},
		{"bad input", func() error { _, err := c.Invoke(ctx, "a", []byte("x")); return err }, 400, "decimal"},
		{"too big", func() error { _, err := c.Invoke(ctx, "a", make([]byte, 2<<20)); return err }, 413, "over"},
		{"rejected", func() error { _, err := c.Invoke(ctx, "busy", nil); return err }, 429, "scripted"},
		{"failed", func() error {
			_, err := c.Wait(ctx, "bad", time.Millisecond, nil)
			return err
		}, 0, "function bad failed: snapshot validation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if err == nil {
				t.Fatal("no error")
			}
			if got := serveclient.StatusOf(err); got != tc.status {
				t.Errorf("status %d, want %d (%v)", got, tc.status, err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not say %q", err, tc.msg)
			}
			var e *serveclient.Error
			if tc.status == 429 && (!errors.As(err, &e) || e.RetryAfter != time.Second) {
				t.Errorf("429 without Retry-After: %#v", err)
			}
		})
	}
}

// TestToken: on TCP the token is sent as a bearer token; without it the
// service's 401 comes back as an error.
func TestToken(t *testing.T) {
	srv := servetest.New(t, servetest.Options{TCP: true, Token: "s3cret"})
	ctx := context.Background()
	if err := newClient(t, serveclient.Options{URL: srv.URL, Token: "s3cret"}).Health(ctx); err != nil {
		t.Fatal(err)
	}
	err := newClient(t, serveclient.Options{URL: srv.URL, Token: "wrong"}).Health(ctx)
	if serveclient.StatusOf(err) != http.StatusUnauthorized || !strings.Contains(err.Error(), "bearer token") {
		t.Errorf("wrong token: %v", err)
	}
	m, err := newClient(t, serveclient.Options{URL: srv.URL, Token: "s3cret"}).Metrics(ctx)
	if err != nil || !strings.Contains(string(m), "snapbpf_instances") {
		t.Errorf("metrics %q, %v", m, err)
	}
}

// TestUnreachable: no service at the socket says how to start one.
func TestUnreachable(t *testing.T) {
	c := newClient(t, serveclient.Options{Socket: t.TempDir() + "/none.sock"})
	err := c.Health(context.Background())
	if err == nil || !strings.Contains(err.Error(), "snapbpf serve") || serveclient.StatusOf(err) != 0 {
		t.Errorf("unreachable: %v", err)
	}
	for _, o := range []serveclient.Options{{}, {Socket: "x", URL: "http://y"}, {URL: "ftp://x"}, {URL: "127.0.0.1:80"}} {
		if _, err := serveclient.New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
}
