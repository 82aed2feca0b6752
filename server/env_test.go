package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/internal/apitest"
	"github.com/custos-dev/custos/internal/enrolltest"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/node"
	"github.com/custos-dev/custos/server"
	"github.com/custos-dev/custos/store"
	"github.com/custos-dev/custos/vault"
)

// env is a running custos on 127.0.0.1 over real SQLite, Tink and HTTP.
// Every byte the server logs and every response body is captured; at the
// end of the test, env checks that no address the test used appears in
// any of them, in the metrics, or in any audit leaf (invariant 11).
type env struct {
	t        testing.TB
	db       *store.DB
	log      *audit.Log
	vault    *vault.Vault
	node     *node.Node
	srv      *testServer
	api      *server.Server
	verifier note.Verifier
	operator string // operator API key
	// approvers are keys that may decide enrollments waiting for a second
	// party: tenant admins by tenant, and operator/security keys ("").
	approvers map[string][]string
	tenants   int

	mu     sync.Mutex
	logs   server.LockedBuffer
	bodies bytes.Buffer
	emails []string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, nil)
}

// newEnvWith is newEnv with the server's configuration adjusted by
// configure (limits, timeouts). The stack is node.Open's, as custos serve
// builds it, over storetest's database for the run's engine, serving on
// its own http.Server and connection cap on 127.0.0.1.
func newEnvWith(t testing.TB, configure func(*server.Config)) *env {
	t.Helper()
	return newEnvAudit(t, configure, nil)
}

// newEnvNoMonitor is newEnv with the audit log's own background verifier
// off, for tests that change stored entries on purpose and check that
// another path (the feed, the entry routes) refuses them: with the
// monitor on, it may find the change first and close every audited route
// with 503 log_tampered. The monitor's own findings are audit's tests and
// cmd/custos's TestServerStopsOnTamper.
func newEnvNoMonitor(t testing.TB) *env {
	t.Helper()
	return newEnvAudit(t, nil, func(c *audit.Config) { c.VerifyInterval = -1 })
}

func newEnvAudit(t testing.TB, configure func(*server.Config), auditCfg func(*audit.Config)) *env {
	t.Helper()
	return newEnvNode(t, configure, auditCfg, nil)
}

// newEnvNode is newEnvAudit with the node's configuration adjusted by
// nodeCfg (if set) after the data directory's file is read.
func newEnvNode(t testing.TB, configure func(*server.Config), auditCfg func(*audit.Config), nodeCfg func(*node.Config)) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{t: t}
	logger := slog.New(slog.NewJSONHandler(&e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	db := storetest.Open(t)
	e.db = db
	cfg := node.DefaultConfig()
	cfg.DataDir, cfg.Addr, cfg.Origin = filepath.Join(t.TempDir(), "data"), "127.0.0.1:0", "custos.test/log"
	opts := node.Options{Logger: logger, DB: db, Server: configure, Audit: auditCfg,
		Handler: func(h http.Handler) http.Handler { return apitest.Wrap(t, h) }} // every exchange checked against server/openapi.json
	var err error
	if e.operator, err = node.Init(ctx, cfg, "operator@vendor.test", opts); err != nil {
		t.Fatal(err)
	}
	if cfg, err = node.ReadFile(cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Detection.Canaries = -1 // these tests count what they put in lists; canaries are vault's and the detector's tests
	if nodeCfg != nil {
		nodeCfg(&cfg)
	}
	n, err := node.Open(ctx, cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Listen(cfg.Addr); err != nil {
		n.Close()
		t.Fatal(err)
	}
	if err := n.ListenDiagnostics("127.0.0.1:0"); err != nil {
		n.Close()
		t.Fatal(err)
	}
	e.node, e.log, e.vault, e.api, e.verifier = n, n.Log, n.Vault, n.Server, n.Verifier
	e.srv = &testServer{URL: n.URL, client: &http.Client{Transport: &http.Transport{}}}
	e.approvers = map[string][]string{"": {e.operator}}
	t.Cleanup(func() {
		metrics := e.metrics()
		e.srv.client.CloseIdleConnections()
		e.sync()
		if err := n.Close(); err != nil {
			t.Errorf("close node: %v", err)
		}
		e.checkNoPersonalData(string(metrics))
		if _, err := audit.Verify(ctx, db.Read, e.verifier, audit.VerifyOptions{}); err != nil {
			t.Errorf("log verify after test: %v", err)
		}
	})
	return e
}

// metrics scrapes the node's diagnostics listener.
func (e *env) metrics() []byte {
	e.t.Helper()
	resp, err := e.srv.client.Get(e.node.DiagnosticsURL + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		e.t.Fatalf("GET /metrics on the diagnostics listener: %d %v", resp.StatusCode, err)
	}
	return b
}

// testServer is where the env's node serves.
type testServer struct {
	URL    string
	client *http.Client
}

// Client returns a client for the server (its own transport, so that
// idle connections close with the env).
func (s *testServer) Client() *http.Client { return s.client }

// email returns a fresh address and remembers it for the PII check.
func (e *env) email() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	a := fmt.Sprintf("Person.%d@Example-Mail.test", len(e.emails)+1)
	e.emails = append(e.emails, a, strings.ToLower(a), "person."+fmt.Sprint(len(e.emails)/2+1))
	return a
}

func (e *env) checkNoPersonalData(metrics string) {
	t := e.t
	t.Helper()
	var leaves strings.Builder
	for _, b := range storetest.Column[[]byte](t, e.db.Read, `SELECT data FROM audit_leaves ORDER BY idx`) {
		leaves.Write(b)
		leaves.WriteByte('\n')
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	haystacks := map[string]string{"server logs": strings.ToLower(e.logs.String()), "error bodies": strings.ToLower(e.bodies.String()),
		"metrics": strings.ToLower(metrics), "audit leaves": strings.ToLower(leaves.String())}
	for _, a := range e.emails {
		for name, h := range haystacks {
			if strings.Contains(h, strings.ToLower(a)) {
				t.Errorf("personal data %q found in %s", a, name)
			}
		}
	}
	if leaves.Len() == 0 {
		t.Errorf("no audit leaves at all: the PII check saw nothing")
	}
}

// do sends a request and returns the body, failing the test unless the
// status is want. Bodies of error responses are kept for the PII check.
func (e *env) do(key, method, path, contentType string, body io.Reader, want int) []byte {
	e.t.Helper()
	status, b := e.send(key, method, path, contentType, body)
	if status != want {
		e.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, status, want, b)
	}
	return b
}

// send sends a request and returns its status and body.
func (e *env) send(key, method, path, contentType string, body io.Reader) (int, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	if resp.StatusCode >= 400 {
		e.mu.Lock()
		e.bodies.Write(b)
		e.mu.Unlock()
	}
	if resp.Header.Get("X-Request-Id") == "" {
		e.t.Errorf("%s %s: no X-Request-Id", method, path)
	}
	return resp.StatusCode, b
}

func (e *env) get(key, path string, want int) []byte {
	e.t.Helper()
	return e.do(key, "GET", path, "", nil, want)
}

func (e *env) postJSON(key, path string, v any, want int) []byte {
	e.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.do(key, "POST", path, "application/json", bytes.NewReader(b), want)
}

func decode[T any](t testing.TB, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

// errorOf decodes a JSON error body; anything else fails the test.
func errorOf(t *testing.T, b []byte) custos.ErrorBody {
	t.Helper()
	var body custos.ErrorBody
	if err := json.Unmarshal(b, &body); err != nil || body.Error.Code == "" {
		t.Fatalf("not a JSON error body: %s", b)
	}
	return body
}

// tenantFixture is a tenant with a list and keys for each tenant role.
type tenantFixture struct {
	tenant, list           string
	admin, editor, service string
}

func (e *env) newTenant(name string) tenantFixture {
	e.t.Helper()
	var f tenantFixture
	e.tenants++
	created := decode[struct {
		custos.Tenant
		AdminEnrollment custos.Enrollment `json:"admin_enrollment"`
	}](e.t, e.postJSON(e.operator, "/v1/tenants", map[string]string{"name": name, "admin_email": fmt.Sprintf("admin%d@tenant.test", e.tenants)}, 201))
	f.tenant = created.ID
	f.admin = e.enroll(created.AdminEnrollment, nil)
	e.approvers[f.tenant] = append(e.approvers[f.tenant], f.admin)
	f.editor = e.newKey(custos.KindTenantEditor, f.tenant, nil)
	f.service = e.newKey(custos.KindService, f.tenant, []custos.Scope{custos.ScopeTokensRead, custos.ScopeContactsImport, custos.ScopeContactsWrite})
	f.list = decode[custos.List](e.t, e.postJSON(f.admin, "/v1/tenants/"+f.tenant+"/lists", map[string]string{"name": "newsletter"}, 201)).ID
	return f
}

// newKey creates a principal of kind and returns a key for it.
func (e *env) newKey(kind custos.Kind, tenant string, scopes []custos.Scope) string {
	e.t.Helper()
	key, _ := e.principal(kind, tenant, string(kind)+"-1", "team-x", scopes)
	return key
}

// principal has the operator create a principal held by owner@corp.test
// (one owner, one person), gets its enrollment approved where it waits for
// a second party, and enrolls it over HTTP with the secret from its mail.
func (e *env) principal(kind custos.Kind, tenant, name, owner string, scopes []custos.Scope) (string, custos.Principal) {
	e.t.Helper()
	p := decode[struct {
		custos.Principal
		Enrollment custos.Enrollment
	}](e.t, e.postJSON(e.operator, "/v1/principals",
		map[string]string{"kind": string(kind), "tenant_id": tenant, "name": name, "owner": owner, "email": owner + "@corp.test"}, 201))
	if p.Enrollment.Status == custos.EnrollPending {
		approved := false
		group := tenant
		if p.Enrollment.Approval != custos.ApprovalTenantAdmin {
			group = ""
		}
		for i := len(e.approvers[group]) - 1; i >= 0 && !approved; i-- {
			status, _ := e.send(e.approvers[group][i], "POST", "/v1/enrollments/"+p.Enrollment.ID+"/approve", "application/json", strings.NewReader("{}"))
			approved = status == 200
		}
		if !approved {
			e.t.Fatalf("nobody could approve enrollment %s (%s)", p.Enrollment.ID, p.Enrollment.Approval)
		}
		p.Enrollment.Status = custos.EnrollIssued
	}
	key := e.enroll(p.Enrollment, scopes)
	switch kind {
	case custos.KindTenantAdmin:
		e.approvers[tenant] = append(e.approvers[tenant], key)
	case custos.KindOperator, custos.KindStaffSecurity:
		e.approvers[""] = append(e.approvers[""], key)
	}
	return key, p.Principal
}

// enroll reads the enrollment's mail (as its holder would) and sets up a
// key over HTTP.
func (e *env) enroll(en custos.Enrollment, scopes []custos.Scope) string {
	e.t.Helper()
	secret := enrolltest.Secret(e.t, e.vault, en.ID)
	return decode[struct{ Secret string }](e.t, e.postJSON("", "/v1/enroll", map[string]any{"secret": secret, "scopes": scopes}, 201)).Secret
}

// counts returns the number of rows in every table.
func (e *env) counts() map[string]int {
	e.t.Helper()
	e.sync()
	out := map[string]int{}
	for _, tbl := range []string{"tenants", "tenant_keys", "lists", "contacts", "principals", "api_keys", "audit_leaves"} {
		var n int
		if err := e.db.Read.QueryRow(`SELECT count(*) FROM ` + tbl).Scan(&n); err != nil {
			e.t.Fatal(err)
		}
		out[tbl] = n
	}
	return out
}

// lastLeaf returns the newest audit leaf not written by the detector.
func (e *env) lastLeaf() audit.Leaf {
	e.t.Helper()
	e.sync()
	var b []byte
	// The detector runs beside the requests and may append its own entry
	// (an alert) after the request's: that is never the one a test means.
	if err := e.db.Read.QueryRow(`SELECT data FROM audit_leaves WHERE actor <> 'detector' ORDER BY idx DESC LIMIT 1`).Scan(&b); err != nil {
		e.t.Fatal(err)
	}
	return decode[audit.Leaf](e.t, b)
}

// sync waits until every audited request so far is in the tree (queued
// mode integrates in the background).
func (e *env) sync() {
	e.t.Helper()
	if err := e.log.Sync(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}
