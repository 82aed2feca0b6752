package console_test

import (
	"context"
	"encoding/json"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/node"
)

// newSSOEnv starts a test identity provider and a node whose console
// signs in through it (console.oidc, the client secret read from a file).
func newSSOEnv(t *testing.T, claim string) (*env, *idp) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := newIDP(t, "http://"+addr+"/ui/oidc/callback")
	secretFile := filepath.Join(t.TempDir(), "oidc-secret")
	if err := os.WriteFile(secretFile, []byte(p.secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, node.Options{}, func(c *node.Config) {
		c.Addr = addr
		c.Console.OIDC = &node.OIDCConfig{Issuer: p.issuer, ClientID: p.clientID, ClientSecretFile: secretFile,
			RedirectURL: "http://" + addr + "/ui/oidc/callback", Scopes: []string{"email"}, Claim: claim, Name: "Test IdP"}
	})
	return e, p
}

// fetch GETs an absolute URL through the browser's jar and returns the
// status, the resolved Location and the body.
var continueLink = regexp.MustCompile(`<a id="continue" href="([^"]+)"`)

// continueURL is where a console page that moves on goes.
func continueURL(body string) string {
	m := continueLink.FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return html.UnescapeString(m[1])
}

// location GETs a console path and returns the status and Location.
func (b *browser) location(path string) (int, string) {
	b.e.t.Helper()
	status, loc, _ := b.fetch(b.e.url + path)
	return status, strings.TrimPrefix(loc, b.e.url)
}

func (b *browser) fetch(u string) (int, string, string) {
	b.e.t.Helper()
	res, err := b.hc.Get(u)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	loc := ""
	if l, err := res.Location(); err == nil {
		loc = l.String()
	}
	return res.StatusCode, loc, string(body)
}

// atIDP follows the provider's redirects from start (its authorization
// URL), logs in as user on its form, and returns the console callback URL
// the provider sends the browser to — not yet visited.
func (b *browser) atIDP(p *idp, start, user string) string {
	b.e.t.Helper()
	u := start
	for range 10 {
		if strings.HasPrefix(u, b.e.url+"/ui/oidc/callback") {
			return u
		}
		pu, _ := url.Parse(u)
		if pu.Path == "/login" {
			res, err := b.hc.PostForm(p.issuer+"/login", url.Values{"id": {pu.Query().Get("id")}, "username": {user}})
			if err != nil {
				b.e.t.Fatal(err)
			}
			res.Body.Close()
			l, err := res.Location()
			if err != nil {
				b.e.t.Fatalf("provider login as %q: %d", user, res.StatusCode)
			}
			u = l.String()
			continue
		}
		status, loc, body := b.fetch(u)
		if loc == "" {
			b.e.t.Fatalf("provider stopped at %s: %d %s", u, status, body)
		}
		u = loc
	}
	b.e.t.Fatal("provider redirected too often")
	return ""
}

// ssoStart begins a sign-in through the provider and returns its
// authorization URL.
func (b *browser) ssoStart() string {
	b.e.t.Helper()
	status, loc, body := b.fetch(b.e.url + "/ui/oidc/signin")
	if status != http.StatusSeeOther || loc == "" {
		b.e.t.Fatalf("start single sign-on: %d %s", status, body)
	}
	return loc
}

// ssoSignIn signs in through the provider as user; it returns the
// callback's status and body.
func (b *browser) ssoSignIn(p *idp, user string) (int, string) {
	b.e.t.Helper()
	status, _, body := b.fetch(b.atIDP(p, b.ssoStart(), user))
	return status, body
}

// link has a browser signed in with key link the provider's account user
// to that key (entering the key again).
func (e *env) link(p *idp, key, principalID, user string) {
	e.t.Helper()
	b := e.browser()
	b.signIn(key)
	_, _, token := b.get("/ui/account")
	status, _, body := b.post("/ui/stepup", url.Values{"csrf": {token}, "action": {"console.sso_link"}, "target": {principalID}, "key": {key}}, nil)
	loc := continueURL(body)
	if status != http.StatusOK || !strings.HasPrefix(loc, p.issuer) {
		e.t.Fatalf("start linking: %d %q %s", status, loc, body)
	}
	if status, _, body := b.fetch(b.atIDP(p, loc, user)); status != http.StatusOK || !strings.Contains(body, `href="/ui/account"`) {
		e.t.Fatalf("link callback: %d %s", status, body)
	}
}

// whoami is the principal of key.
func (e *env) whoami(key string) *custos.Principal {
	e.t.Helper()
	p, _, err := e.n.Vault.Authenticate(context.Background(), key)
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

func (e *env) sessions() int {
	e.t.Helper()
	var n int
	if err := e.n.DB.Read.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM console_sessions`).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// leaves returns the entries appended after index from.
func leaves(t *testing.T, e *env, from uint64) []audit.Leaf {
	t.Helper()
	size := e.n.Log.Size()
	if size <= from {
		return nil
	}
	es, err := e.n.Log.Entries(context.Background(), from, int(size-from))
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Leaf
	for _, en := range es {
		var l audit.Leaf
		if err := json.Unmarshal(en.Data, &l); err != nil {
			t.Fatal(err)
		}
		out = append(out, l)
	}
	return out
}

// recorded waits (bounded) for an entry after from with action and outcome.
func recorded(t *testing.T, e *env, from uint64, action custos.Action, outcome string) audit.Leaf {
	t.Helper()
	var found audit.Leaf
	waitFor(t, string(action)+" "+outcome, func() bool {
		for _, l := range leaves(t, e, from) {
			if l.Action == string(action) && l.Outcome == outcome {
				found = l
				return true
			}
		}
		return false
	})
	return found
}

// TestSSOSignIn: a tenant admin links its provider account to its key
// (signed in with the key, entering it again), then signs in through the
// provider alone and reaches its tenant. The link and the step-up that
// allowed it are recorded; no entry names the account.
func TestSSOSignIn(t *testing.T) {
	e, p := newSSOEnv(t, "")
	tenant, admin := e.newTenant("Acme")
	me := e.whoami(admin)
	p.user("alice-7f3", "alice@acme.test")
	from := e.n.Log.Size()
	e.link(p, admin, me.ID, "alice-7f3")
	if l := recorded(t, e, from, custos.ActionSSOLink, audit.OutcomeOK); l.Actor != me.ID || l.KeyID == "" {
		t.Fatalf("link entry %+v", l)
	}
	recorded(t, e, from, custos.ActionStepUp, audit.OutcomeOK)

	b := e.browser()
	if status, body := b.ssoSignIn(p, "alice-7f3"); status != http.StatusOK || !strings.Contains(body, `href="/ui/"`) {
		t.Fatalf("sign-in through the provider: %d %s", status, body)
	}
	if status, loc := b.location("/ui/"); status != http.StatusSeeOther || loc != "/ui/t/"+tenant {
		t.Fatalf("home after single sign-on: %d %q", status, loc)
	}
	if status, body, _ := b.get("/ui/t/" + tenant); status != http.StatusOK || !strings.Contains(body, "count-pending") {
		t.Fatalf("overview after single sign-on: %d", status)
	}
	for _, l := range leaves(t, e, from) {
		raw, _ := json.Marshal(l)
		if strings.Contains(string(raw), "alice") {
			t.Fatalf("an entry names the provider account: %s", raw)
		}
	}
	// Unlinking ends the single sign-on session at its next request.
	_, _, token := b.get("/ui/account")
	if status, _, body := b.post("/ui/account/unlink", url.Values{"csrf": {token}}, nil); status != http.StatusSeeOther {
		t.Fatalf("unlink: %d %s", status, body)
	}
	if status, loc := b.location("/ui/t/" + tenant); status != http.StatusSeeOther || loc != "/ui/signin" {
		t.Fatalf("after unlinking, the session still works: %d %q", status, loc)
	}
	if status, _ := e.browser().ssoSignIn(p, "alice-7f3"); status != http.StatusUnauthorized {
		t.Fatalf("sign-in of an unlinked account: %d", status)
	}
}

// TestSSORefused: every answer the console must not trust is refused,
// recorded as a refused authentication, and creates no session.
func TestSSORefused(t *testing.T) {
	e, p := newSSOEnv(t, "")
	_, admin := e.newTenant("Acme")
	me := e.whoami(admin)
	p.user("alice", "alice@acme.test")
	p.user("mallory", "mallory@acme.test")
	e.link(p, admin, me.ID, "alice")
	sec, _ := e.principal(custos.KindStaffSecurity, "", "sec")
	editorKey, editor := e.principal(custos.KindTenantEditor, me.TenantID, "ed")
	p.user("eddie", "ed@acme.test")
	e.link(p, editorKey, editor.ID, "eddie")

	first := true
	for _, c := range []struct {
		name  string
		modes idpModes
		user  string
		setup func()
		// start changes the authorization URL.
		start func(string) string
		// tamper changes the callback URL, or replaces the browser.
		tamper func(b *browser, cb string) (*browser, string)
	}{
		{name: "wrong audience", modes: idpModes{otherClient: true}, user: "alice", start: func(u string) string {
			// The flow is another relying party's at the same provider:
			// the ID token that comes back is for that client.
			pu, _ := url.Parse(u)
			q := pu.Query()
			q.Set("client_id", otherClient)
			pu.RawQuery = q.Encode()
			return pu.String()
		}},
		{name: "expired token", modes: idpModes{lifetime: -time.Hour}, user: "alice"},
		{name: "wrong nonce", modes: idpModes{nonce: "a-nonce-from-another-flow"}, user: "alice"},
		{name: "signed by another key", modes: idpModes{signWithOther: true}, user: "alice"},
		{name: "unbound subject", user: "mallory"},
		{name: "wrong state", user: "alice", tamper: func(b *browser, cb string) (*browser, string) {
			u, _ := url.Parse(cb)
			q := u.Query()
			q.Set("state", strings.Repeat("A", 43))
			u.RawQuery = q.Encode()
			return b, u.String()
		}},
		{name: "callback in another browser (login CSRF)", user: "alice", tamper: func(_ *browser, cb string) (*browser, string) {
			return e.browser(), cb
		}},
		{name: "replayed code", user: "alice", tamper: func(b *browser, cb string) (*browser, string) {
			// The code is used once; a new flow's state with the old code
			// reaches the provider, which refuses it.
			if status, _, body := b.fetch(cb); status != http.StatusOK {
				t.Fatalf("first use of the code: %d %s", status, body)
			}
			b2 := e.browser()
			start, _ := url.Parse(b2.ssoStart())
			u, _ := url.Parse(cb)
			q := u.Query()
			q.Set("state", start.Query().Get("state"))
			u.RawQuery = q.Encode()
			return b2, u.String()
		}},
		{name: "suspended principal", user: "eddie", setup: func() {
			if _, err := e.api(sec).Suspend(context.Background(), editor.ID, "test: suspended before signing in"); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.setup != nil {
				c.setup()
			}
			p.setModes(c.modes)
			defer p.setModes(idpModes{})
			b := e.browser()
			start := b.ssoStart()
			if c.start != nil {
				start = c.start(start)
			}
			cb := b.atIDP(p, start, c.user)
			if c.tamper != nil {
				b, cb = c.tamper(b, cb)
			}
			before, from := e.sessions(), e.n.Log.Size()
			status, _, body := b.fetch(cb)
			if status != http.StatusUnauthorized {
				t.Fatalf("callback: %d %s", status, body)
			}
			if b.session() != "" || e.sessions() != before {
				t.Fatalf("a refused sign-in left a session (cookie %v, rows %d → %d)", b.session() != "", before, e.sessions())
			}
			if first {
				// Anonymous refusals from one source are aggregated after
				// the first (vault.WithRefusals): the first is its own leaf.
				recorded(t, e, from, custos.ActionAuthenticate, audit.OutcomeDenied)
				first = false
			}
		})
	}
}

// TestSSOSuspensionEndsSession: a session signed in through the provider
// is its key's: suspending the principal ends it at the next request.
func TestSSOSuspensionEndsSession(t *testing.T) {
	e, p := newSSOEnv(t, "")
	tenant, admin := e.newTenant("Acme")
	me := e.whoami(admin)
	p.user("alice", "alice@acme.test")
	e.link(p, admin, me.ID, "alice")
	sec, _ := e.principal(custos.KindStaffSecurity, "", "sec")
	b := e.browser()
	if status, body := b.ssoSignIn(p, "alice"); status != http.StatusOK {
		t.Fatalf("sign-in: %d %s", status, body)
	}
	if status, _, _ := b.get("/ui/t/" + tenant); status != http.StatusOK {
		t.Fatalf("overview: %d", status)
	}
	if _, err := e.api(sec).Suspend(context.Background(), me.ID, "test: suspended while signed in"); err != nil {
		t.Fatal(err)
	}
	if status, loc := b.location("/ui/t/" + tenant); status != http.StatusSeeOther || loc != "/ui/signin" {
		t.Fatalf("a suspended principal's session still serves: %d %q", status, loc)
	}
}

// TestSSOInsider is the operator's attack. Holding custos.json, the
// operator points the console at an identity provider of its own whose
// account carries the tenant admin's address, and names the email claim:
// the account is linked to no key, so it signs in as no one. Its own
// account, linked to its own key, signs in as the operator and no more.
// Writing a link row into the database to move its account onto the
// admin's key fails the row's MAC.
func TestSSOInsider(t *testing.T) {
	e, p := newSSOEnv(t, "email")
	tenant, admin := e.newTenant("Acme")
	adminMe, opMe := e.whoami(admin), e.whoami(e.operator)
	p.user("impostor", "admin-acme@tenant.test") // the tenant admin's identity
	p.user("op", "operator@vendor.test")
	before := e.sessions()
	if status, _ := e.browser().ssoSignIn(p, "impostor"); status != http.StatusUnauthorized || e.sessions() != before {
		t.Fatalf("an account with the admin's address signed in: %d", status)
	}
	e.link(p, e.operator, opMe.ID, "op")
	b := e.browser()
	if status, body := b.ssoSignIn(p, "op"); status != http.StatusOK {
		t.Fatalf("operator's own sign-in: %d %s", status, body)
	}
	if status, _, _ := b.get("/ui/t/" + tenant + "/requests"); status != http.StatusForbidden {
		t.Fatalf("the operator reached the tenant's requests: %d", status)
	}
	// A hand in the database moves the operator's link onto the admin's key.
	var adminHash string
	ctx := context.Background()
	ab := e.browser()
	ab.signIn(admin)
	if err := e.n.DB.Read.QueryRowContext(ctx, `SELECT key_hash FROM console_sessions WHERE principal_id = $1 LIMIT 1`, adminMe.ID).Scan(&adminHash); err != nil {
		t.Fatal(err)
	}
	if _, err := e.n.DB.Write.ExecContext(ctx, `UPDATE console_sso_links SET principal_id = $1, key_hash = $2`, adminMe.ID, adminHash); err != nil {
		t.Fatal(err)
	}
	before = e.sessions()
	if status, _ := e.browser().ssoSignIn(p, "op"); status != http.StatusUnauthorized || e.sessions() != before {
		t.Fatalf("a link written into the database signed in: %d", status)
	}
	if status, loc := b.location("/ui/"); status != http.StatusSeeOther || loc != "/ui/signin" {
		t.Fatalf("the session of a tampered link still serves: %d %q", status, loc)
	}
}

// TestStepUpKey: approving a request needs the session's key entered
// again for that request. Without it the approval is refused and the
// request stays pending; a wrong key earns nothing (and is recorded); a
// step-up is for one request, one session, and works once.
func TestStepUpKey(t *testing.T) {
	e := newEnv(t, node.Options{})
	tenant, admin := e.newTenant("Acme")
	r1, _ := e.supportRequest(tenant, admin, "first")
	r2, _ := e.supportRequest(tenant, admin, "second")
	b := e.browser()
	b.signIn(admin)
	_, _, token := b.get("/ui/t/" + tenant + "/requests")
	approve := func(b *browser, id string) (int, string) {
		t.Helper()
		status, _, body := b.post("/ui/t/"+tenant+"/requests/"+id+"/approve", url.Values{"csrf": {token}}, nil)
		return status, body
	}
	if status, body := approve(b, r1.ID); status != http.StatusForbidden || !strings.Contains(body, `id="stepup-key"`) {
		t.Fatalf("approval without a step-up: %d %s", status, body)
	}
	from := e.n.Log.Size()
	status, _, body := b.post("/ui/stepup", url.Values{"csrf": {token}, "action": {string(custos.ActionRequestDecide)}, "tenant": {tenant}, "target": {r1.ID},
		"key": {e.operator}}, nil)
	if status != http.StatusUnauthorized {
		t.Fatalf("step-up with another key: %d %s", status, body)
	}
	recorded(t, e, from, custos.ActionStepUp, audit.OutcomeDenied)
	if status, _ := approve(b, r1.ID); status != http.StatusForbidden {
		t.Fatalf("approval after a failed step-up: %d", status)
	}
	// A step-up with no action it is for, or an action it cannot be for.
	for _, action := range []string{"", string(custos.ActionGrantRevoke), "support.decide/x"} {
		if status, _, _ := b.post("/ui/stepup", url.Values{"csrf": {token}, "action": {action}, "tenant": {tenant}, "target": {r1.ID}, "key": {admin}}, nil); status != http.StatusBadRequest {
			t.Fatalf("step-up for %q: %d", action, status)
		}
	}
	from = e.n.Log.Size()
	b.stepUp(tenant, r1.ID, admin)
	if l := recorded(t, e, from, custos.ActionStepUp, audit.OutcomeOK); l.Detail != string(custos.ActionRequestDecide)+" "+r1.ID || l.Tenant != tenant {
		t.Fatalf("step-up entry %+v", l)
	}
	// Not for another request, nor for another session of the same key.
	if status, _ := approve(b, r2.ID); status != http.StatusForbidden {
		t.Fatalf("a step-up for %s approved %s: %d", r1.ID, r2.ID, status)
	}
	other := e.browser()
	other.signIn(admin)
	_, _, otherToken := other.get("/ui/t/" + tenant + "/requests")
	if status, _, _ := other.post("/ui/t/"+tenant+"/requests/"+r1.ID+"/approve", url.Values{"csrf": {otherToken}}, nil); status != http.StatusForbidden {
		t.Fatalf("another session used the step-up: %d", status)
	}
	if got := pendingRequests(t, e, tenant, admin); len(got) != 2 {
		t.Fatalf("pending after refused approvals: %v", got)
	}
	if status, body := approve(b, r1.ID); status != http.StatusSeeOther {
		t.Fatalf("approval after the step-up: %d %s", status, body)
	}
	if got := pendingRequests(t, e, tenant, admin); len(got) != 1 || got[0] != r2.ID {
		t.Fatalf("pending after approving %s: %v", r1.ID, got)
	}
	// Spent: denying needs none, but approving the same target again
	// (had it been pending) would need a new one.
	if status, body := approve(b, r1.ID); status != http.StatusForbidden {
		t.Fatalf("second use of a step-up: %d %s", status, body)
	}
}

// TestStepUpSSO: a session signed in through a provider its tenant named
// as its own steps up there: prompt=login and max_age=0, the same
// account, and an auth_time within the window. An old authentication or
// another account earns nothing.
func TestStepUpSSO(t *testing.T) {
	e, p := newSSOEnv(t, "")
	tenant, admin := e.newTenant("Acme")
	r, _ := e.supportRequest(tenant, admin, "please")
	if err := e.api(admin).SetSSOIssuer(context.Background(), tenant, p.issuer); err != nil {
		t.Fatal(err)
	}
	p.user("alice", "alice@acme.test")
	p.user("bob", "bob@acme.test")
	e.link(p, admin, e.whoami(admin).ID, "alice")
	editorKey, editor := e.principal(custos.KindTenantEditor, tenant, "bob")
	e.link(p, editorKey, editor.ID, "bob")

	b := e.browser()
	if status, body := b.ssoSignIn(p, "alice"); status != http.StatusOK {
		t.Fatalf("sign-in: %d %s", status, body)
	}
	_, _, token := b.get("/ui/t/" + tenant + "/requests")
	approve := func() (int, string) {
		status, _, body := b.post("/ui/t/"+tenant+"/requests/"+r.ID+"/approve", url.Values{"csrf": {token}}, nil)
		return status, body
	}
	stepUp := func(user string) (int, string) {
		t.Helper()
		status, _, body := b.post("/ui/stepup", url.Values{"csrf": {token}, "action": {string(custos.ActionRequestDecide)}, "tenant": {tenant}, "target": {r.ID}}, nil)
		loc := continueURL(body)
		if status != http.StatusOK || !strings.HasPrefix(loc, p.issuer) {
			t.Fatalf("step-up start: %d %q %s", status, loc, body)
		}
		u, _ := url.Parse(loc)
		if q := u.Query(); q.Get("prompt") != "login" || q.Get("max_age") != "0" || q.Get("code_challenge_method") != "S256" {
			t.Fatalf("step-up authorization request %v", q)
		}
		status, _, body = b.fetch(b.atIDP(p, loc, user))
		return status, body
	}
	if status, body := approve(); status != http.StatusForbidden || !strings.Contains(body, "Sign in again with Test IdP") {
		t.Fatalf("approval without a step-up: %d %s", status, body)
	}
	p.setModes(idpModes{authTimeAgo: 10 * time.Minute})
	if status, _ := stepUp("alice"); status != http.StatusUnauthorized {
		t.Fatalf("step-up with a ten-minute-old authentication: %d", status)
	}
	p.setModes(idpModes{})
	if status, _ := stepUp("bob"); status != http.StatusUnauthorized {
		t.Fatalf("step-up as another account: %d", status)
	}
	if status, _ := approve(); status != http.StatusForbidden {
		t.Fatalf("approval after refused step-ups: %d", status)
	}
	if status, body := stepUp("alice"); status != http.StatusOK || !strings.Contains(body, "/requests?stepped="+r.ID) {
		t.Fatalf("step-up: %d %s", status, body)
	}
	if status, body := approve(); status != http.StatusSeeOther {
		t.Fatalf("approval after the step-up: %d %s", status, body)
	}
	var grant *custos.Grant
	for g, err := range e.api(admin).Grants(context.Background(), tenant) {
		if err != nil {
			t.Fatal(err)
		}
		grant = g
	}
	if grant == nil || grant.RequestID != r.ID || grant.Status != custos.GrantActive {
		t.Fatalf("grant through the API after approving through single sign-on: %+v", grant)
	}
}

// TestBrowserSSOApprove drives chromium through single sign-on: the
// console's button to the provider, its login form, back to the console;
// then an approval, which sends the browser to the provider again for a
// fresh login before the approval goes through. The grant is checked
// through the API.
func TestBrowserSSOApprove(t *testing.T) {
	ctx := chrome(t)
	e, p := newSSOEnv(t, "")
	tenant, admin := e.newTenant("Acme")
	r, _ := e.supportRequest(tenant, admin, "customer reports bounces")
	if err := e.api(admin).SetSSOIssuer(context.Background(), tenant, p.issuer); err != nil {
		t.Fatal(err)
	}
	p.user("alice", "alice@acme.test")
	e.link(p, admin, e.whoami(admin).ID, "alice")
	must := func(steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatal(err)
		}
	}
	idpLogin := []chromedp.Action[chromedp.Void]{chromedp.WaitVisible(chromedp.ID("username")), chromedp.SendKeys(chromedp.ID("username"), "alice"), chromedp.Click(chromedp.ID("idp-login"))}

	must(chromedp.Navigate(e.url+"/ui/signin"), chromedp.WaitVisible(chromedp.ID("sso")))
	screenshot(t, ctx, "signin-sso")
	must(chromedp.Click(chromedp.ID("sso")))
	must(idpLogin...)
	must(chromedp.WaitVisible(chromedp.ID("count-pending")))

	must(chromedp.Navigate(e.url+"/ui/t/"+tenant+"/requests"), chromedp.WaitVisible(chromedp.ID("req-"+r.ID)),
		chromedp.Click(chromedp.CSS("#req-"+r.ID+" button.approve")), chromedp.WaitVisible(chromedp.ID("stepup")))
	must(chromedp.Click(chromedp.ID("stepup")))
	must(idpLogin...)
	must(chromedp.WaitVisible(chromedp.ID("req-"+r.ID)), chromedp.SendKeys(chromedp.ID("dur-"+r.ID), "1h"),
		chromedp.Click(chromedp.CSS("#req-"+r.ID+" button.approve")), chromedp.WaitVisible(chromedp.CSS("button.revoke")))

	var grant *custos.Grant
	for g, err := range e.api(admin).Grants(context.Background(), tenant) {
		if err != nil {
			t.Fatal(err)
		}
		grant = g
	}
	if grant == nil || grant.RequestID != r.ID || grant.Status != custos.GrantActive || grant.ExpiresAt.Sub(grant.StartsAt) != time.Hour {
		t.Fatalf("grant through the API after approving in the browser: %+v", grant)
	}
}
