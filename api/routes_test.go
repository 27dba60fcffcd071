package api

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// serveDir is the service's package, whose routes must be the contract's.
const serveDir = "../internal/serve"

// inspectDir calls fn, as ast.Inspect does, on every node of the non-test
// Go files in dir.
func inspectDir(t *testing.T, dir string, fn func(fset *token.FileSet, n ast.Node) bool) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool { return fn(fset, n) })
	}
}

// serveRoutes finds the "METHOD /path" patterns the service registers on
// its mux (Handle and HandleFunc calls with a string literal pattern).
func serveRoutes(t *testing.T, dir string) []string {
	t.Helper()
	var routes []string
	inspectDir(t, dir, func(_ *token.FileSet, n ast.Node) bool {
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

// structFields returns the JSON names of the fields of every struct type,
// named or not, declared in the non-test files of dir, by where it is.
func structFields(t *testing.T, dir string) map[string][]string {
	t.Helper()
	structs := map[string][]string{}
	inspectDir(t, dir, func(fset *token.FileSet, n ast.Node) bool {
		st, ok := n.(*ast.StructType)
		if !ok {
			return true
		}
		var fields []string
		for _, fl := range st.Fields.List {
			if fl.Tag == nil {
				continue
			}
			tag, _ := strconv.Unquote(fl.Tag.Value)
			js, _, _ := strings.Cut(reflect.StructTag(tag).Get("json"), ",")
			if js != "" && js != "-" {
				fields = append(fields, js)
			}
		}
		if len(fields) > 0 {
			slices.Sort(fields)
			structs[fset.Position(st.Pos()).String()] = fields
		}
		return true
	})
	return structs
}

// schemaTypes are the Go types of api/openapi.yaml's schemas; the health
// answer's schema is inline, under its own name here.
var schemaTypes = map[string]reflect.Type{
	"CreateFunction": reflect.TypeFor[CreateRequest](),
	"Function":       reflect.TypeFor[Function](),
	"Progress":       reflect.TypeFor[Progress](),
	"Rerecord":       reflect.TypeFor[Rerecord](),
	"Instances":      reflect.TypeFor[Instances](),
	"FunctionList":   reflect.TypeFor[FunctionList](),
	"Node":           reflect.TypeFor[Node](),
	"NodeList":       reflect.TypeFor[NodeList](),
	"Error":          reflect.TypeFor[ErrorBody](),
	"healthz":        reflect.TypeFor[Health](),
}

// schema returns the schema a Go type stands for.
func schema(doc *openapi3.T, name string) *openapi3.Schema {
	if name == "healthz" {
		return doc.Paths.Find("/healthz").Get.Responses.Status(200).Value.Content.Get("application/json").Schema.Value
	}
	return doc.Components.Schemas[name].Value
}

// goFields returns the JSON names of typ's fields, and those a zero value
// leaves out (omitempty).
func goFields(typ reflect.Type) (names []string, omitted map[string]bool) {
	omitted = map[string]bool{}
	for f := range typ.Fields() {
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		names = append(names, name)
		if slices.Contains(strings.Split(opts, ","), "omitempty") {
			omitted[name] = true
		}
	}
	slices.Sort(names)
	return names, omitted
}

// TestTypesMatchOpenAPI: the Go types the service and the client share
// carry exactly the fields of their api/openapi.yaml schemas, and none the
// schema requires is left out when zero.
func TestTypesMatchOpenAPI(t *testing.T) {
	doc := load(t)
	for name, typ := range schemaTypes {
		s := schema(doc, name)
		var want []string
		for p := range s.Properties {
			want = append(want, p)
		}
		slices.Sort(want)
		got, omitted := goFields(typ)
		if !slices.Equal(got, want) {
			t.Errorf("%s has JSON fields %v; api/openapi.yaml's %s has %v", typ, got, name, want)
		}
		for _, r := range s.Required {
			if omitted[r] {
				t.Errorf("%s.%s is omitempty, but api/openapi.yaml's %s requires it", typ, r, name)
			}
		}
	}
}

// TestNoCopiesOfTypes: neither the service nor the client (nor its fake)
// declares a struct with the fields of one of the shared types: a copy
// would drift from the contract unseen by TestTypesMatchOpenAPI.
func TestNoCopiesOfTypes(t *testing.T) {
	shared := map[string]reflect.Type{}
	for _, typ := range schemaTypes {
		names, _ := goFields(typ)
		shared[strings.Join(names, " ")] = typ
	}
	for _, dir := range []string{needServe(t), "../internal/serveclient", "../internal/serveclient/servetest"} {
		for at, fields := range structFields(t, dir) {
			if typ, ok := shared[strings.Join(fields, " ")]; ok {
				t.Errorf("%s: a struct with the fields of %s; use that type", at, typ)
			}
		}
	}
}
