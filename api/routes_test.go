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

// needServe returns the service's package directory, or skips the test
// while there is none (SNAPBPF_SERVE_DIR points elsewhere, for a branch).
func needServe(t *testing.T) string {
	t.Helper()
	dir := serveDir
	if d := os.Getenv("SNAPBPF_SERVE_DIR"); d != "" {
		dir = d
	}
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("no service package at %s yet: %v", dir, err)
	}
	return dir
}

// TestServeRoutesMatchOpenAPI: the service registers exactly the paths
// and methods api/openapi.yaml describes.
func TestServeRoutesMatchOpenAPI(t *testing.T) {
	dir := needServe(t)
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

// jsonFields returns the JSON names of the fields of the struct type name
// declared in dir.
func jsonFields(t *testing.T, dir, name string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	fset := token.NewFileSet()
	var fields []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok || ts.Name.Name != name {
				return true
			}
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				return true
			}
			for _, fl := range st.Fields.List {
				if fl.Tag == nil {
					continue
				}
				tag, _ := strconv.Unquote(fl.Tag.Value)
				js, _, _ := strings.Cut(reflectTag(tag, "json"), ",")
				if js != "" && js != "-" {
					fields = append(fields, js)
				}
			}
			return false
		})
	}
	slices.Sort(fields)
	return fields
}

// reflectTag is reflect.StructTag.Get on a tag string.
func reflectTag(tag, key string) string {
	for _, part := range strings.Fields(tag) {
		if k, v, ok := strings.Cut(part, ":"); ok && k == key {
			s, _ := strconv.Unquote(v)
			return s
		}
	}
	return ""
}

// TestServeTypesMatchOpenAPI: the service's Function and CreateRequest
// carry exactly the fields of api/openapi.yaml's Function and
// CreateFunction.
func TestServeTypesMatchOpenAPI(t *testing.T) {
	checkTypes(t, needServe(t))
}

// TestClientTypesMatchOpenAPI: so do the client's.
func TestClientTypesMatchOpenAPI(t *testing.T) {
	checkTypes(t, "../internal/serveclient")
}

func checkTypes(t *testing.T, dir string) {
	doc := load(t)
	for goType, schema := range map[string]string{"Function": "Function", "CreateRequest": "CreateFunction"} {
		var want []string
		for p := range doc.Components.Schemas[schema].Value.Properties {
			want = append(want, p)
		}
		slices.Sort(want)
		got := jsonFields(t, dir, goType)
		if !slices.Equal(got, want) {
			t.Errorf("%s: %s has JSON fields %v; api/openapi.yaml's %s has %v", dir, goType, got, schema, want)
		}
	}
}
