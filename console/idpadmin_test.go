package console_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
)

// TestProviderAdminCannotApprove is the identity provider's administrator
// as the insider (DESIGN.md invariant 12). A tenant's admin linked an
// account at a provider the vendor runs; whoever administers it can sign
// in as that account (the test provider's login takes only a user name,
// which is what a reset password amounts to). Signed in that way, the
// administrator — who is also the support engineer asking for access —
// reaches the tenant's pages but cannot approve their own request: the
// tenant never named that provider as its own, so the approval asks for
// the admin's API key, which the provider does not hold. A step-up flow
// started while the tenant trusted the provider and finished after it
// stopped earns nothing. The admin, entering its key in the same session,
// approves as before.
func TestProviderAdminCannotApprove(t *testing.T) {
	e, p := newSSOEnv(t, "")
	tenant, admin := e.newTenant("Acme")
	r, _ := e.supportRequest(tenant, admin, "customer reports bounces")
	p.user("alice", "alice@acme.test")
	e.link(p, admin, e.whoami(admin).ID, "alice")
	from := e.n.Log.Size()

	b := e.browser() // the provider's administrator, as alice
	if status, body := b.ssoSignIn(p, "alice"); status != http.StatusOK {
		t.Fatalf("sign-in: %d %s", status, body)
	}
	_, _, token := b.get("/ui/t/" + tenant + "/requests")
	approve := func() (int, string) {
		status, _, body := b.post("/ui/t/"+tenant+"/requests/"+r.ID+"/approve", url.Values{"csrf": {token}}, nil)
		return status, body
	}
	stepUp := func(key string) (int, string) {
		status, _, body := b.post("/ui/stepup", url.Values{"csrf": {token}, "action": {string(custos.ActionRequestDecide)}, "tenant": {tenant}, "target": {r.ID}, "key": {key}}, nil)
		return status, body
	}
	status, body := approve()
	if status != http.StatusForbidden || !strings.Contains(body, `id="stepup-key"`) || !strings.Contains(body, `id="stepup-why"`) || strings.Contains(body, "Sign in again with") {
		t.Fatalf("approval without a step-up: %d, want the key's step-up page: %s", status, body)
	}
	// The step-up form without a key does not go to the provider.
	if status, body := stepUp(""); status != http.StatusUnauthorized || strings.HasPrefix(continueURL(body), p.issuer) {
		t.Fatalf("a step-up with no key: %d %q", status, continueURL(body))
	}
	if status, _ := approve(); status != http.StatusForbidden {
		t.Fatalf("approval after a step-up with no key: %d", status)
	}

	// Trusted for a moment: a flow started then, finished after the
	// tenant's admin (by key) stopped trusting the provider.
	ctx := context.Background()
	if err := e.api(admin).SetSSOIssuer(ctx, tenant, p.issuer); err != nil {
		t.Fatal(err)
	}
	status, body = stepUp("")
	loc := continueURL(body)
	if status != http.StatusOK || !strings.HasPrefix(loc, p.issuer) {
		t.Fatalf("step-up at a trusted provider: %d %q", status, loc)
	}
	if err := e.api(admin).SetSSOIssuer(ctx, tenant, ""); err != nil {
		t.Fatal(err)
	}
	if status, _, _ := b.fetch(b.atIDP(p, loc, "alice")); status != http.StatusForbidden {
		t.Fatalf("a step-up finished at a provider no longer trusted: %d", status)
	}
	if status, _ := approve(); status != http.StatusForbidden {
		t.Fatalf("approval after an untrusted step-up: %d", status)
	}
	if got := pendingRequests(t, e, tenant, admin); len(got) != 1 || got[0] != r.ID {
		t.Fatalf("pending requests through the API: %v", got)
	}
	recorded(t, e, from, custos.ActionStepUp, audit.OutcomeDenied)

	// The admin, with its key, in the same kind of session.
	if status, body := stepUp(admin); status != http.StatusSeeOther && status != http.StatusOK {
		t.Fatalf("step-up with the linked key: %d %s", status, body)
	}
	if status, body := approve(); status != http.StatusSeeOther {
		t.Fatalf("approval after the key's step-up: %d %s", status, body)
	}
	if got := pendingRequests(t, e, tenant, admin); len(got) != 0 {
		t.Fatalf("still pending after the approval: %v", got)
	}
}
