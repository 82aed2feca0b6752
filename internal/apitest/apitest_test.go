package apitest_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/custos-dev/custos/internal/apitest"
	"github.com/custos-dev/custos/server"
)

// TestHandlerCatchesMismatches runs exchanges that break the document
// through the validating handler over real HTTP, and exchanges that keep
// it, and checks that exactly the first are reported.
func TestHandlerCatchesMismatches(t *testing.T) {
	// The paths come from the document's prefix, as the client's do from
	// its own: this package holds no route of its own.
	v1, err := apitest.New(server.OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	if p := v1.Prefix(); !regexp.MustCompile(`^/v[0-9]+/$`).MatchString(p) {
		t.Fatalf("prefix %q, want the API version's segment", p)
	}
	one, list, nothing, enroll := v1.Prefix()+"tenants/tn_1", v1.Prefix()+"tenants?limit=0", v1.Prefix()+"nothing", v1.Prefix()+"enroll"
	const tenant = `{"id":"tn_1","name":"Acme","created_at":"2026-01-02T03:04:05Z"}`
	const errBody = `{"error":{"code":"not_found","message":"tenant not found"},"request_id":"rq_1"}`
	tests := []struct {
		name, method, path, key, body string
		status                        int
		ctype                         string
		mismatch                      bool
	}{
		{"good tenant", "GET", one, "cst_x", tenant, 200, "application/json", false},
		{"error envelope", "GET", one, "cst_x", errBody, 404, "application/json", false},
		{"field not in the document", "GET", one, "cst_x", `{"id":"tn_1","name":"A","created_at":"2026-01-02T03:04:05Z","extra":1}`, 200, "application/json", true},
		{"required field missing", "GET", one, "cst_x", `{"id":"tn_1","created_at":"2026-01-02T03:04:05Z"}`, 200, "application/json", true},
		{"status not in the document", "GET", one, "cst_x", tenant, 202, "application/json", true},
		{"error without envelope", "GET", one, "cst_x", `{"message":"no"}`, 400, "application/json", true},
		{"wrong media type", "GET", one, "cst_x", tenant, 200, "text/html", true},
		{"no key, yet served", "GET", one, "", tenant, 200, "application/json", true},
		{"no key, refused", "GET", one, "", `{"error":{"code":"unauthorized","message":"m"},"request_id":"r"}`, 401, "application/json", false},
		{"bad query, yet served", "GET", list, "cst_x", `{"items":[]}`, 200, "application/json", true},
		{"undocumented route served", "GET", nothing, "cst_x", `{}`, 200, "application/json", true},
		{"undocumented route, mux 404", "GET", nothing, "cst_x", "404 page not found\n", 404, "text/plain; charset=utf-8", false},
		{"outside /v1 is not checked", "GET", "/healthz", "", "anything", 200, "text/html", false},
		{"enroll needs no key", "POST", enroll, "", `{"key":{"id":"ak_1","principal_id":"pr_1","hint":"h","scopes":["all"],"created_at":"2026-01-02T03:04:05Z"},"secret":"cst_y"}`, 201, "application/json", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := apitest.New(server.OpenAPI())
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(v.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", tt.ctype)
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			})))
			defer srv.Close()
			var body io.Reader
			if tt.method == "POST" {
				body = strings.NewReader(`{"secret":"cse_x"}`)
			}
			req, _ := http.NewRequest(tt.method, srv.URL+tt.path, body)
			if body != nil {
				req.Header.Set("Content-Type", "application/json")
			}
			if tt.key != "" {
				req.Header.Set("Authorization", "Bearer "+tt.key)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			got := v.Mismatches()
			if (len(got) > 0) != tt.mismatch {
				t.Errorf("mismatches %q, want any: %t", got, tt.mismatch)
			}
		})
	}
}

// TestProxyPassesThrough: the proxy forwards to its target and back, for
// clients at once (the crash suite sends from 24 workers).
func TestProxyPassesThrough(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"items":[],"next":"`+r.URL.Query().Get("after")+`x"}`)
	}))
	defer target.Close()
	u := apitest.Proxy(t, target.URL)
	v, err := apitest.New(server.OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	prefix := v.Prefix()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			after := fmt.Sprint("a", i)
			req, _ := http.NewRequest("GET", u+prefix+"tenants?after="+after, nil)
			req.Header.Set("Authorization", "Bearer cst_x")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if want := `{"items":[],"next":"` + after + `x"}`; string(b) != want {
				t.Errorf("body %s, want %s", b, want)
			}
		})
	}
	wg.Wait()
}

// TestPrefixFromDocument: what is checked follows the document's paths,
// not a prefix written into this package.
func TestPrefixFromDocument(t *testing.T) {
	doc := func(paths ...string) []byte {
		var ps []string
		for _, p := range paths {
			ps = append(ps, fmt.Sprintf(`%q:{"get":{"responses":{"200":{"description":"ok","content":{"application/json":{"schema":{"type":"object"}}}}}}}`, p))
		}
		return []byte(`{"openapi":"3.0.3","info":{"title":"t","version":"1"},"paths":{` + strings.Join(ps, ",") + `}}`)
	}
	tests := []struct {
		name       string
		paths      []string
		prefix     string
		get        string
		mismatched bool
	}{
		{"served outside the document's prefix", []string{"/v9/things", "/v9/other"}, "/v9/", "/v8/nothing", false},
		{"served under it, undocumented", []string{"/v9/things", "/v9/other"}, "/v9/", "/v9/nothing", true},
		{"no shared segment: every path checked", []string{"/a/x", "/b/y"}, "/", "/c", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := apitest.New(doc(tt.paths...))
			if err != nil {
				t.Fatal(err)
			}
			if v.Prefix() != tt.prefix {
				t.Errorf("prefix %q, want %q", v.Prefix(), tt.prefix)
			}
			srv := httptest.NewServer(v.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, `{}`)
			})))
			defer srv.Close()
			resp, err := srv.Client().Get(srv.URL + tt.get)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := v.Mismatches(); (len(got) > 0) != tt.mismatched {
				t.Errorf("mismatches %q, want any: %t", got, tt.mismatched)
			}
		})
	}
}
