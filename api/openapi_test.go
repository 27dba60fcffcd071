package api

import (
	"context"
	"net/http"
	"slices"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// contract is the API every client and the service agree on: each path and
// method with the statuses it answers (401: a TCP request without the
// bearer token; 500: the service failed, e.g. a guest crashed).
var contract = []struct {
	method, path string
	statuses     []int
}{
	{http.MethodPost, "/v1/functions", []int{202, 400, 401, 409, 413, 500, 503}},
	{http.MethodGet, "/v1/functions", []int{200, 401, 500}},
	{http.MethodGet, "/v1/functions/{name}", []int{200, 401, 404, 500}},
	{http.MethodDelete, "/v1/functions/{name}", []int{204, 401, 404, 409, 500}},
	{http.MethodPost, "/v1/functions/{name}/invoke", []int{200, 400, 401, 404, 409, 413, 429, 500, 503, 504}},
	{http.MethodGet, "/v1/nodes", []int{200, 401, 500}},
	{http.MethodGet, "/metrics", []int{200, 401}},
	{http.MethodGet, "/healthz", []int{200, 401}},
}

func load(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(OpenAPI)
	if err != nil {
		t.Fatalf("api/openapi.yaml does not parse: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("api/openapi.yaml is not valid OpenAPI 3: %v", err)
	}
	return doc
}

// TestOpenAPIContract: the description parses, is valid OpenAPI 3, has every
// path and method of the contract with its statuses, and nothing else.
func TestOpenAPIContract(t *testing.T) {
	doc := load(t)
	want := map[string]bool{}
	for _, c := range contract {
		want[c.method+" "+c.path] = true
		item := doc.Paths.Find(c.path)
		if item == nil {
			t.Errorf("%s %s: path missing from api/openapi.yaml", c.method, c.path)
			continue
		}
		op := item.GetOperation(c.method)
		if op == nil {
			t.Errorf("%s %s: method missing from api/openapi.yaml", c.method, c.path)
			continue
		}
		for _, s := range c.statuses {
			if op.Responses.Status(s) == nil {
				t.Errorf("%s %s: status %d missing from api/openapi.yaml", c.method, c.path, s)
			}
		}
	}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			if !want[method+" "+path] {
				t.Errorf("api/openapi.yaml has %s %s, which the contract does not", method, path)
			}
		}
	}
}

// TestOpenAPIFunctionFields: the Function object has the contract's fields,
// and the invoke response its timing headers.
func TestOpenAPIFunctionFields(t *testing.T) {
	doc := load(t)
	fn := doc.Components.Schemas["Function"].Value
	for _, f := range []string{"name", "function", "runtime", "memory_mib", "data_mib", "state", "progress", "error",
		"snapshot_id", "wset_pages", "recorded_at", "miss_rate", "rerecords", "instances"} {
		if fn.Properties[f] == nil {
			t.Errorf("Function has no field %q", f)
		}
	}
	var states []string
	for _, e := range fn.Properties["state"].Value.Enum {
		states = append(states, e.(string))
	}
	if !slices.Equal(states, []string{"creating", "recording", "ready", "failed"}) {
		t.Errorf("Function.state enum = %v", states)
	}
	ok := doc.Paths.Find("/v1/functions/{name}/invoke").Post.Responses.Status(200).Value
	for _, h := range []string{"X-Snapbpf-Start", "X-Snapbpf-Restore-Ms", "X-Snapbpf-Prefetch-Bytes", "X-Snapbpf-Queue-Ms", "X-Snapbpf-Total-Ms"} {
		if ok.Headers[h] == nil {
			t.Errorf("invoke 200 has no header %s", h)
		}
	}
	tooMany := doc.Paths.Find("/v1/functions/{name}/invoke").Post.Responses.Status(429).Value
	if tooMany.Headers["Retry-After"] == nil {
		t.Error("invoke 429 has no Retry-After header")
	}
}
