package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/custos-dev/custos/internal/apitest"
	"github.com/custos-dev/custos/server"
)

// wildcard is a path wildcard of a ServeMux pattern ({name} or {name...}).
var wildcard = regexp.MustCompile(`\{([a-z]+)(\.\.\.)?\}`)

// TestOpenAPIRoutes checks the document against the router, both ways:
// every /v1 route is an operation of the document with each of its path
// parameters declared, and every operation is a route.
func TestOpenAPIRoutes(t *testing.T) {
	doc, err := apitest.Load(context.Background(), server.OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range routeProblems(doc, server.New(server.Config{}).Routes()) {
		t.Error(p)
	}
}

// routeProblems returns what does not match between doc and routes.
func routeProblems(doc *openapi3.T, routes []server.Route) []string {
	var out []string
	errorf := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	seen := map[string]bool{}
	for _, rt := range routes {
		if !strings.HasPrefix(rt.Pattern, "/v1/") {
			continue
		}
		path := wildcard.ReplaceAllString(rt.Pattern, "{$1}")
		key := rt.Method + " " + path
		seen[key] = true
		item := doc.Paths.Value(path)
		if item == nil {
			errorf("route %s: path %s is not in the document", rt.Method+" "+rt.Pattern, path)
			continue
		}
		op := item.GetOperation(rt.Method)
		if op == nil {
			errorf("route %s: the document's %s has no %s", key, path, rt.Method)
			continue
		}
		declared := map[string]bool{}
		for _, p := range slices.Concat(item.Parameters, op.Parameters) {
			if p.Value != nil && p.Value.In == openapi3.ParameterInPath {
				declared[p.Value.Name] = true
			}
		}
		for _, m := range wildcard.FindAllStringSubmatch(rt.Pattern, -1) {
			if !declared[m[1]] {
				errorf("route %s: path parameter %s is not declared", key, m[1])
			}
		}
		if !rt.Auth && (op.Security == nil || len(*op.Security) != 0) {
			errorf("route %s needs no key, but the document asks for one (give it security: [])", key)
		}
		if rt.Auth && op.Security != nil && len(*op.Security) == 0 {
			errorf("route %s needs a key, but the document says it needs none", key)
		}
	}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			if !seen[method+" "+path] {
				errorf("the document's %s %s is no route", method, path)
			}
		}
	}
	return out
}

// TestOpenAPIRoutesCatchDrift: a document missing a route fails the check.
func TestOpenAPIRoutesCatchDrift(t *testing.T) {
	routes := server.New(server.Config{}).Routes()
	for _, drop := range []string{"/v1/enroll", "/v1/tenants/{tenant}/lists/{list}/import"} {
		doc, err := apitest.Load(context.Background(), server.OpenAPI())
		if err != nil {
			t.Fatal(err)
		}
		doc.Paths.Delete(drop)
		if len(routeProblems(doc, routes)) == 0 {
			t.Errorf("a document without %s passed the route check", drop)
		}
	}
}

// TestOpenAPIServed: GET /v1/openapi.json answers the document, without
// a key, as JSON.
func TestOpenAPIServed(t *testing.T) {
	e := newEnv(t)
	b := e.get("", "/v1/openapi.json", http.StatusOK)
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if doc["openapi"] != "3.1.0" {
		t.Errorf("openapi = %v, want 3.1.0", doc["openapi"])
	}
	if string(b) != string(server.OpenAPI()) {
		t.Errorf("served document differs from the embedded one")
	}
}
