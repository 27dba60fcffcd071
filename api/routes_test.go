package api

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// serveDir is the service's package, whose routes must be the contract's.
const serveDir = "../internal/serve"

// serveRoutes finds the "METHOD /path" patterns the service registers on
// its mux (Handle and HandleFunc calls with a string literal pattern).
func serveRoutes(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var routes []string
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) < 2 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || (sel.Sel.Name != "Handle" && sel.Sel.Name != "HandleFunc") {
				return true
			}
			lit, ok := call.Args[0].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			pat, err := strconv.Unquote(lit.Value)
			if err != nil {
				return true
			}
			// Only method patterns are routes; a bare "/" is the
			// service's answer to everything else (404, 405).
			if method, path, ok := strings.Cut(pat, " "); ok && method == strings.ToUpper(method) {
				routes = append(routes, method+" "+path)
			}
			return true
		})
	}
	slices.Sort(routes)
	return routes
}

// TestServeRoutesMatchOpenAPI: the service registers exactly the paths
// and methods api/openapi.yaml describes.
func TestServeRoutesMatchOpenAPI(t *testing.T) {
	dir := serveDir
	if d := os.Getenv("SNAPBPF_SERVE_DIR"); d != "" {
		dir = d
	}
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("no service package at %s yet: %v", dir, err)
	}
	got := serveRoutes(t, dir)
	if len(got) == 0 {
		t.Fatalf("found no routes in %s: does it still register \"METHOD /path\" patterns with Handle or HandleFunc?", dir)
	}
	var want []string
	doc := load(t)
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			want = append(want, method+" "+path)
		}
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("the service's routes differ from api/openapi.yaml's\nservice: %v\nopenapi: %v", got, want)
	}
}
