package console_test

import (
	"context"

	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/client"
	"github.com/custos-dev/custos/internal/enrolltest"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/node"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// env is a whole custos node (node.Open, as custos serve builds it) on
// 127.0.0.1 over the run's database engine, with the console mounted.
type env struct {
	t         testing.TB
	n         *node.Node
	url       string
	operator  string
	approvers map[string][]string
}

func newEnv(t testing.TB, opts node.Options, configure ...func(*node.Config)) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{t: t}
	opts.DB = storetest.Open(t)
	cfg := node.DefaultConfig()
	cfg.DataDir, cfg.Addr, cfg.Origin = filepath.Join(t.TempDir(), "data"), "127.0.0.1:0", "custos.test/log"
	var err error
	if e.operator, err = node.Init(ctx, cfg, "operator@vendor.test", opts); err != nil {
		t.Fatal(err)
	}
	if cfg, err = node.ReadFile(cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Detection.Canaries = -1
	for _, f := range configure {
		f(&cfg)
	}
	n, err := node.Open(ctx, cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Listen(cfg.Addr); err != nil {
		n.Close()
		t.Fatal(err)
	}
	e.n, e.url = n, n.URL
	e.approvers = map[string][]string{"": {e.operator}}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("close node: %v", err)
		}
	})
	return e
}

// api is the typed client holding key.
func (e *env) api(key string) *client.Client { return client.New(e.url, client.WithKey(key)) }

// newTenant creates a tenant and enrolls its first admin; it returns the
// tenant's id and the admin's key.
func (e *env) newTenant(name string) (string, string) {
	e.t.Helper()
	ctx := context.Background()
	created, err := e.api(e.operator).CreateTenant(ctx, custos.CreateTenantRequest{Name: name, AdminEmail: "admin-" + strings.ToLower(name) + "@tenant.test"})
	if err != nil {
		e.t.Fatal(err)
	}
	admin := e.enroll(created.AdminEnrollment)
	e.approvers[created.Tenant.ID] = append(e.approvers[created.Tenant.ID], admin)
	return created.Tenant.ID, admin
}

// principal has the operator create a principal, gets its enrollment
// approved by a second party, and enrolls it.
func (e *env) principal(kind custos.Kind, tenant, name string) (string, *custos.Principal) {
	e.t.Helper()
	ctx := context.Background()
	p, err := e.api(e.operator).CreatePrincipal(ctx, custos.CreatePrincipalRequest{Kind: kind, TenantID: tenant, Name: name, Owner: name, Email: name + "@corp.test"})
	if err != nil {
		e.t.Fatal(err)
	}
	if p.Enrollment.Status == custos.EnrollPending {
		group := tenant
		if p.Enrollment.Approval != custos.ApprovalTenantAdmin {
			group = ""
		}
		approved := false
		for i := len(e.approvers[group]) - 1; i >= 0 && !approved; i-- {
			_, err := e.api(e.approvers[group][i]).ApproveEnrollment(ctx, p.Enrollment.ID)
			approved = err == nil
		}
		if !approved {
			e.t.Fatalf("nobody could approve enrollment %s", p.Enrollment.ID)
		}
	}
	key := e.enroll(p.Enrollment)
	if kind == custos.KindStaffSecurity || kind == custos.KindOperator {
		e.approvers[""] = append(e.approvers[""], key)
	}
	return key, p.Principal
}

func (e *env) enroll(en *custos.Enrollment) string {
	e.t.Helper()
	k, err := client.New(e.url).Enroll(context.Background(), custos.EnrollRequest{Secret: enrolltest.Secret(e.t, e.n.Vault, en.ID)})
	if err != nil {
		e.t.Fatal(err)
	}
	return k.Secret
}

// supportRequest turns support access on for tenant and files a request
// from a new support engineer; it returns the request and the staff key.
func (e *env) supportRequest(tenant, admin string, reason string) (*custos.AccessRequest, string) {
	e.t.Helper()
	ctx := context.Background()
	if _, err := e.api(admin).SetSupportSettings(ctx, tenant, custos.SupportSettingsRequest{SupportAccess: true, MaxGrant: "24h"}); err != nil {
		e.t.Fatal(err)
	}
	staff, _ := e.principal(custos.KindStaffSupport, "", "sam"+strings.ToLower(custos.NewID("x"))[2:8])
	r, err := e.api(staff).RequestAccess(ctx, tenant, custos.AccessRequestBody{Reason: reason, Ticket: "SUP-42", Scope: custos.ScopeViewMaskedReveal, Duration: "8h"})
	if err != nil {
		e.t.Fatal(err)
	}
	return r, staff
}

// browser is a cookie-keeping HTTP client for the console: what a
// browser does, without one.
type browser struct {
	e   *env
	hc  *http.Client
	jar *cookiejar.Jar
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{e: e, jar: jar, hc: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// get fetches path and returns the status, body and the page's CSRF token.
func (b *browser) get(path string) (int, string, string) {
	b.e.t.Helper()
	res, err := b.hc.Get(b.e.url + path)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	token := ""
	if m := csrfField.FindStringSubmatch(string(body)); m != nil {
		token = m[1]
	}
	return res.StatusCode, string(body), token
}

// post submits a form with extra headers; it returns the status, the
// Location and the body.
func (b *browser) post(path string, form url.Values, header map[string]string) (int, string, string) {
	b.e.t.Helper()
	req, err := http.NewRequest("POST", b.e.url+path, strings.NewReader(form.Encode()))
	if err != nil {
		b.e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := b.hc.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header.Get("Location"), string(body)
}

// signIn signs in with key through the form and fails the test unless
// it lands on the console.
func (b *browser) signIn(key string) {
	b.e.t.Helper()
	_, _, token := b.get("/ui/signin")
	status, loc, body := b.post("/ui/signin", url.Values{"csrf": {token}, "key": {key}}, nil)
	if status != http.StatusSeeOther || loc != "/ui/" {
		b.e.t.Fatalf("sign-in: %d %q %s", status, loc, body)
	}
}

// session returns the session cookie's value ("" if none).
func (b *browser) session() string {
	u, _ := url.Parse(b.e.url)
	for _, c := range b.jar.Cookies(u) {
		if c.Name == "custos_session" {
			return c.Value
		}
	}
	return ""
}

// waitFor polls cond (the detector and the log's checkpoint run on their
// own goroutines) and fails after a generous bound.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for range 500 {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// stepUp re-enters key for approving request id of tenant: the step-up
// an approval needs (one action, one target, once).
func (b *browser) stepUp(tenant, id, key string) {
	b.e.t.Helper()
	_, _, token := b.get("/ui/t/" + tenant + "/requests")
	status, loc, body := b.post("/ui/stepup", url.Values{"csrf": {token}, "action": {string(custos.ActionRequestDecide)},
		"tenant": {tenant}, "target": {id}, "key": {key}}, nil)
	if status != http.StatusSeeOther || !strings.HasPrefix(loc, "/ui/t/"+tenant+"/requests") {
		b.e.t.Fatalf("step-up: %d %q %s", status, loc, body)
	}
}
