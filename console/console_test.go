package console_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/console"
	"github.com/custos-dev/custos/node"
)

// TestHeadersAndCookies: every page forbids framing (frame-ancestors and
// X-Frame-Options) and script, and the session cookie is HttpOnly and
// SameSite=Strict (not Secure here only because this is plaintext on
// loopback; see TestSecureCookieOffLoopback).
func TestHeadersAndCookies(t *testing.T) {
	e := newEnv(t, node.Options{})
	_, admin := e.newTenant("Acme")
	for _, path := range []string{"/ui/signin", "/ui/", "/ui/static/console.css"} {
		res, err := http.Get(e.url + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		csp := res.Header.Get("Content-Security-Policy")
		if csp != console.CSP || !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "script-src") && !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("%s: CSP %q", path, csp)
		}
		if res.Header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: X-Frame-Options %q", path, res.Header.Get("X-Frame-Options"))
		}
	}
	b := e.browser()
	_, _, token := b.get("/ui/signin")
	req, _ := http.NewRequest("POST", e.url+"/ui/signin", strings.NewReader(url.Values{"csrf": {token}, "key": {admin}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := b.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	var found bool
	for _, c := range res.Cookies() {
		if c.Name != "custos_session" {
			continue
		}
		found = true
		if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" {
			t.Errorf("session cookie: %+v", c)
		}
	}
	if !found {
		t.Fatalf("no session cookie set at sign-in: %v", res.Cookies())
	}
}

// TestSignInRefusesBadKeys: a wrong key is refused and recorded like a
// bad bearer key; a sign-in form not from the console (no pre-session
// token) is refused before the key is even tried.
func TestSignInRefusesBadKeys(t *testing.T) {
	e := newEnv(t, node.Options{})
	_, admin := e.newTenant("Acme")
	b := e.browser()
	_, _, token := b.get("/ui/signin")
	if status, _, _ := b.post("/ui/signin", url.Values{"csrf": {token}, "key": {"cst_notakey"}}, nil); status != http.StatusUnauthorized {
		t.Fatalf("bad key: %d", status)
	}
	if b.session() != "" {
		t.Fatal("a session cookie after a failed sign-in")
	}
	// A login-CSRF: another site posts the attacker's key into the form.
	other := e.browser()
	if status, _, _ := other.post("/ui/signin", url.Values{"key": {admin}}, nil); status != http.StatusForbidden {
		t.Fatalf("sign-in without the form's token: %d", status)
	}
	_, _, token = other.get("/ui/signin")
	if status, _, _ := other.post("/ui/signin", url.Values{"csrf": {token}, "key": {admin}}, map[string]string{"Origin": "https://evil.test", "Sec-Fetch-Site": "cross-site"}); status != http.StatusForbidden {
		t.Fatalf("cross-site sign-in: %d", status)
	}
	if other.session() != "" {
		t.Fatal("a cross-site sign-in got a session")
	}
}

// TestCSRF: a signed-in admin's browser posting an approval from another
// site — without the token, with a wrong one, or with the right one but a
// foreign Origin — is refused, the refusal is recorded as a refused
// support.decide, and the request stays pending (checked through the API).
func TestCSRF(t *testing.T) {
	e := newEnv(t, node.Options{})
	tenant, admin := e.newTenant("Acme")
	r, _ := e.supportRequest(tenant, admin, "customer reports bounces")
	b := e.browser()
	b.signIn(admin)
	_, _, token := b.get("/ui/t/" + tenant + "/requests")
	if token == "" {
		t.Fatal("requests page has no CSRF token")
	}
	path := "/ui/t/" + tenant + "/requests/" + r.ID + "/approve"
	for name, c := range map[string]struct {
		form   url.Values
		header map[string]string
	}{
		"no token":         {url.Values{}, nil},
		"wrong token":      {url.Values{"csrf": {token + "x"}}, nil},
		"foreign origin":   {url.Values{"csrf": {token}}, map[string]string{"Origin": "https://evil.test"}},
		"cross-site fetch": {url.Values{"csrf": {token}}, map[string]string{"Sec-Fetch-Site": "cross-site"}},
		"same-site fetch":  {url.Values{"csrf": {token}}, map[string]string{"Sec-Fetch-Site": "same-site"}},
	} {
		size := e.n.Log.Size()
		if status, _, body := b.post(path, c.form, c.header); status != http.StatusForbidden {
			t.Errorf("%s: %d %s", name, status, body)
		}
		waitFor(t, "the refusal's leaf", func() bool { return refused(t, e, size, custos.ActionRequestDecide, tenant) })
	}
	got := pendingRequests(t, e, tenant, admin)
	if len(got) != 1 || got[0] != r.ID {
		t.Fatalf("after refused posts, pending requests %v, want [%s]", got, r.ID)
	}
	// The real form works, after the step-up approving needs.
	b.stepUp(tenant, r.ID, admin)
	if status, loc, body := b.post(path, url.Values{"csrf": {token}}, map[string]string{"Origin": e.url, "Sec-Fetch-Site": "same-origin"}); status != http.StatusSeeOther || !strings.HasSuffix(loc, "/grants") {
		t.Fatalf("approve with the form's token: %d %q %s", status, loc, body)
	}
	if got := pendingRequests(t, e, tenant, admin); len(got) != 0 {
		t.Fatalf("still pending after approval: %v", got)
	}
}

// refused reports whether an entry after index from records a denied
// action on tenant.
func refused(t *testing.T, e *env, from uint64, action custos.Action, tenant string) bool {
	t.Helper()
	size := e.n.Log.Size()
	if size <= from {
		return false
	}
	es, err := e.n.Log.Entries(context.Background(), from, int(size-from))
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range es {
		var l audit.Leaf
		if err := json.Unmarshal(en.Data, &l); err != nil {
			t.Fatal(err)
		}
		if l.Action == string(action) && l.Outcome == audit.OutcomeDenied && l.Tenant == tenant {
			return true
		}
	}
	return false
}

func pendingRequests(t *testing.T, e *env, tenant, admin string) []string {
	t.Helper()
	var out []string
	for x, err := range e.api(admin).AccessRequests(context.Background(), tenant) {
		if err != nil {
			t.Fatal(err)
		}
		if x.Status == custos.RequestPending {
			out = append(out, x.ID)
		}
	}
	return out
}

// TestSessionFixation: a session id planted in the browser before sign-in
// is not the one signed in (a fresh one is issued, the planted one is
// ended), and after sign-out the old cookie opens nothing.
func TestSessionFixation(t *testing.T) {
	e := newEnv(t, node.Options{})
	tenant, admin := e.newTenant("Acme")
	// The attacker signs in to get a real session id, then plants it.
	attacker := e.browser()
	attacker.signIn(admin)
	planted := attacker.session()
	victim := e.browser()
	u, _ := url.Parse(e.url)
	victim.jar.SetCookies(u, []*http.Cookie{{Name: "custos_session", Value: planted, Path: "/"}})
	victim.signIn(admin)
	if s := victim.session(); s == "" || s == planted {
		t.Fatalf("session after sign-in %q, planted %q: not a fresh one", s, planted)
	}
	if status, _, _ := attacker.get("/ui/t/" + tenant); status != http.StatusSeeOther {
		t.Fatalf("the planted session still opens pages after the victim signed in: %d", status)
	}
	if status, _, _ := victim.get("/ui/t/" + tenant); status != http.StatusOK {
		t.Fatalf("victim's overview: %d", status)
	}
	old := victim.session()
	_, _, token := victim.get("/ui/t/" + tenant)
	if status, loc, _ := victim.post("/ui/signout", url.Values{"csrf": {token}}, nil); status != http.StatusSeeOther || loc != "/ui/signin" {
		t.Fatalf("sign-out: %d %q", status, loc)
	}
	replay := e.browser()
	replay.jar.SetCookies(u, []*http.Cookie{{Name: "custos_session", Value: old, Path: "/"}})
	if status, loc, _ := replay.get("/ui/t/" + tenant); status != http.StatusSeeOther || !strings.Contains(loc, "/ui/signin") {
		t.Fatalf("a signed-out session's cookie: %d %q", status, loc)
	}
}

// TestSessionEndsWithItsKey: a session is exactly as alive as the key it
// signed in with — revoking the key ends it on the next request — and an
// idle session times out.
func TestSessionEndsWithItsKey(t *testing.T) {
	e := newEnv(t, node.Options{ConsoleIdle: 300 * time.Millisecond})
	tenant, admin := e.newTenant("Acme")
	second, p := e.principal(custos.KindTenantAdmin, tenant, "ada")
	b := e.browser()
	b.signIn(second)
	if status, _, _ := b.get("/ui/t/" + tenant); status != http.StatusOK {
		t.Fatalf("overview: %d", status)
	}
	ctx := context.Background()
	var keyID string
	for k, err := range e.api(e.operator).Keys(ctx, p.ID) {
		if err != nil {
			t.Fatal(err)
		}
		keyID = k.ID
	}
	if err := e.api(e.operator).RevokeKey(ctx, keyID); err != nil {
		t.Fatal(err)
	}
	if status, loc, _ := b.get("/ui/t/" + tenant); status != http.StatusSeeOther || !strings.Contains(loc, "/ui/signin") {
		t.Fatalf("after the key's revocation: %d %q", status, loc)
	}
	idle := e.browser()
	idle.signIn(admin)
	time.Sleep(400 * time.Millisecond) // past the idle limit; no time is asserted
	if status, loc, _ := idle.get("/ui/t/" + tenant); status != http.StatusSeeOther || !strings.Contains(loc, "/ui/signin") {
		t.Fatalf("an idle session: %d %q", status, loc)
	}
}

// TestOtherTenantsPages: a tenant admin who edits the URL to another
// tenant's id gets a refusal on every page and every action, sees none of
// its data, and the other tenant's request stays pending.
func TestOtherTenantsPages(t *testing.T) {
	e := newEnv(t, node.Options{})
	mine, admin := e.newTenant("Acme")
	theirs, theirAdmin := e.newTenant("Globex")
	if _, err := e.api(theirAdmin).CreateList(context.Background(), theirs, "globex-secret-list"); err != nil {
		t.Fatal(err)
	}
	r, _ := e.supportRequest(theirs, theirAdmin, "globex-private-reason")
	b := e.browser()
	b.signIn(admin)
	_, _, token := b.get("/ui/t/" + mine)
	for _, p := range []string{"", "/requests", "/grants", "/log"} {
		status, body, _ := b.get("/ui/t/" + theirs + p)
		if status != http.StatusForbidden {
			t.Errorf("GET %s: %d", p, status)
		}
		for _, leak := range []string{"globex-secret-list", "globex-private-reason", "Globex", r.ID} {
			if strings.Contains(body, leak) {
				t.Errorf("GET %s shows %q", p, leak)
			}
		}
	}
	for _, p := range []string{"/requests/" + r.ID + "/approve", "/grants/gr_x/revoke"} {
		if status, _, _ := b.post("/ui/t/"+theirs+p, url.Values{"csrf": {token}}, nil); status != http.StatusForbidden {
			t.Errorf("POST %s: %d", p, status)
		}
	}
	if got := pendingRequests(t, e, theirs, theirAdmin); len(got) != 1 || got[0] != r.ID {
		t.Fatalf("other tenant's pending requests: %v", got)
	}
}

// TestMarkupRendersInert: a list name and a request's reason holding
// markup are shown as text, never as markup.
func TestMarkupRendersInert(t *testing.T) {
	e := newEnv(t, node.Options{})
	tenant, admin := e.newTenant("Acme")
	const name = `<img src=x onerror=alert(1)>`
	const reason = `<script>alert("reason")</script> see ticket`
	if _, err := e.api(admin).CreateList(context.Background(), tenant, name); err != nil {
		t.Fatal(err)
	}
	e.supportRequest(tenant, admin, reason)
	b := e.browser()
	b.signIn(admin)
	for _, p := range []string{"", "/requests"} {
		_, body, _ := b.get("/ui/t/" + tenant + p)
		for _, raw := range []string{"<img src=x", "<script>"} {
			if strings.Contains(body, raw) {
				t.Errorf("%s: raw markup %q in the page", p, raw)
			}
		}
	}
	_, body, _ := b.get("/ui/t/" + tenant)
	if !strings.Contains(body, "&lt;img src=x onerror=alert(1)&gt;") {
		t.Errorf("overview does not show the list name as text")
	}
	_, body, _ = b.get("/ui/t/" + tenant + "/requests")
	if !strings.Contains(body, "&lt;script&gt;alert(&#34;reason&#34;)&lt;/script&gt; see ticket") {
		t.Errorf("requests page does not show the reason as text")
	}
}

// TestNoAddressOnAnyPage: with contacts in the tenant and a support
// engineer holding an active grant, neither the staff member nor the
// tenant admin sees an address on any console page; staff reach no tenant
// page at all (the vault refuses, as the API does).
func TestNoAddressOnAnyPage(t *testing.T) {
	e := newEnv(t, node.Options{})
	tenant, admin := e.newTenant("Acme")
	ctx := context.Background()
	l, err := e.api(admin).CreateList(ctx, tenant, "newsletter")
	if err != nil {
		t.Fatal(err)
	}
	addrs := []string{"alice.liddell@wonder.test", "bob.builder@yard.test"}
	var tokens []string
	for _, a := range addrs {
		c, err := e.api(admin).CreateContact(ctx, tenant, l.ID, custos.CreateContactRequest{Email: a})
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, c.Token)
	}
	r, staff := e.supportRequest(tenant, admin, "bounce investigation")
	if _, err := e.api(admin).ApproveAccessRequest(ctx, tenant, r.ID, custos.DecisionRequest{}); err != nil {
		t.Fatal(err)
	}
	// One contact revealed: the grants page shows the reveal (token,
	// reason code, the engineer's words), never the address.
	const why = "customer asked why the bounce happened, ticket SUP-42"
	if _, err := e.api(staff).Reveal(ctx, tenant, tokens[0], custos.RevealRequest{ReasonCode: custos.ReasonCustomerRequest, Reason: why}); err != nil {
		t.Fatal(err)
	}
	ab := e.browser()
	ab.signIn(admin)
	if _, body, _ := ab.get("/ui/t/" + tenant + "/grants"); !strings.Contains(body, tokens[0]) || !strings.Contains(body, why) || !strings.Contains(body, custos.ReasonCustomerRequest) {
		t.Errorf("the grants page does not show the reveal under its grant:\n%s", body)
	}
	pages := []string{"/ui/", "/ui/t/" + tenant, "/ui/t/" + tenant + "/requests", "/ui/t/" + tenant + "/grants", "/ui/t/" + tenant + "/log",
		"/ui/t/" + tenant + "/key", "/ui/t/" + tenant + "/deletion", "/ui/t/" + tenant + "/principals", "/ui/t/" + tenant + "/support", "/ui/log"}
	for who, key := range map[string]string{"staff": staff, "admin": admin} {
		b := e.browser()
		b.signIn(key)
		for _, p := range pages {
			status, body, _ := b.get(p)
			if who == "staff" && strings.HasPrefix(p, "/ui/t/") && status != http.StatusForbidden {
				t.Errorf("staff GET %s: %d, want 403", p, status)
			}
			for _, a := range addrs {
				local := a[:strings.IndexByte(a, '@')]
				if strings.Contains(body, a) || strings.Contains(body, local) {
					t.Errorf("%s GET %s shows an address", who, p)
				}
			}
		}
	}
}

// TestSecureCookieOffLoopback: reached over TLS, the cookies are Secure
// and __Host- prefixed. (The plaintext-on-loopback relaxation is what the
// other tests run under.)
func TestSecureCookieOffLoopback(t *testing.T) {
	c := console.New(console.Config{})
	rec := httptest.NewRecorder()
	req, _ := http.NewRequest("GET", "https://custos.test/ui/signin", nil)
	req.TLS = &tls.ConnectionState{}
	c.ServeHTTP(rec, req)
	cs := rec.Result().Cookies()
	if len(cs) != 1 || cs[0].Name != "__Host-custos_signin" || !cs[0].Secure || !cs[0].HttpOnly || cs[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("cookies over TLS: %+v", cs)
	}
	if rec.Header().Get("Strict-Transport-Security") == "" {
		t.Error("no HSTS over TLS")
	}
}

// TestDenyThroughForm: denying from the requests page denies the request
// as the API route would (checked through the API), and a second decision
// on it is refused with a conflict page.
func TestDenyThroughForm(t *testing.T) {
	e := newEnv(t, node.Options{})
	tenant, admin := e.newTenant("Acme")
	r, _ := e.supportRequest(tenant, admin, "not today")
	b := e.browser()
	b.signIn(admin)
	_, _, token := b.get("/ui/t/" + tenant + "/requests")
	path := "/ui/t/" + tenant + "/requests/" + r.ID
	if status, loc, body := b.post(path+"/deny", url.Values{"csrf": {token}, "comment": {"use the runbook"}}, nil); status != http.StatusSeeOther || !strings.HasSuffix(loc, "/requests") {
		t.Fatalf("deny: %d %q %s", status, loc, body)
	}
	for x, err := range e.api(admin).AccessRequests(context.Background(), tenant) {
		if err != nil {
			t.Fatal(err)
		}
		if x.ID == r.ID && x.Status != custos.RequestDenied {
			t.Fatalf("request after denying in the console: %s", x.Status)
		}
	}
	b.stepUp(tenant, r.ID, admin)
	if status, _, _ := b.post(path+"/approve", url.Values{"csrf": {token}}, nil); status != http.StatusConflict {
		t.Fatalf("approving a denied request: %d", status)
	}
	if status, _, _ := b.post(path+"/approve", url.Values{"csrf": {token}, "duration": {"soon"}}, nil); status != http.StatusBadRequest {
		t.Fatalf("a malformed duration: %d", status)
	}
}
