package console_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/node"
)

// TestBreakGlassPage: security staff see every tenant's break-glass
// requests awaiting approval and approve one there, each after a step-up
// for that one request. One engineer approving twice counts once (the
// vault's rule, refused on the page too); the second engineer's approval
// opens the grant, which the tenant's admin then sees through the API.
// The requester and the tenant's admin cannot reach the page.
func TestBreakGlassPage(t *testing.T) {
	e := newEnv(t, node.Options{})
	ctx := context.Background()
	tenant, admin := e.newTenant("Acme")
	if _, err := e.api(admin).SetSupportSettings(ctx, tenant, custos.SupportSettingsRequest{SupportAccess: true, MaxGrant: "24h", BreakGlass: true}); err != nil {
		t.Fatal(err)
	}
	staff, sp := e.principal(custos.KindStaffSupport, "", "sam")
	r, err := e.api(staff).RequestBreakGlass(ctx, tenant, custos.AccessRequestBody{Reason: "outage: <b>imports</b> failing for every list", Ticket: "INC-7", Scope: custos.ScopeViewMasked, Duration: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	sec1, p1 := e.principal(custos.KindStaffSecurity, "", "sue")
	sec2, _ := e.principal(custos.KindStaffSecurity, "", "ray")

	approve := func(b *browser, key string, stepUp bool) (int, string) {
		t.Helper()
		_, page, token := b.get("/ui/security/break-glass")
		if !strings.Contains(page, `id="bg-`+r.ID+`"`) {
			t.Fatalf("the request is not on the page: %s", page)
		}
		if stepUp {
			status, loc, body := b.post("/ui/stepup", url.Values{"csrf": {token}, "action": {string(custos.ActionBreakGlassOK)}, "tenant": {tenant}, "target": {r.ID}, "key": {key}}, nil)
			if status != http.StatusSeeOther || !strings.HasPrefix(loc, "/ui/security/break-glass") {
				t.Fatalf("step-up: %d %q %s", status, loc, body)
			}
		}
		status, _, body := b.post("/ui/security/break-glass/"+tenant+"/"+r.ID+"/approve", url.Values{"csrf": {token}}, nil)
		return status, body
	}

	b1 := e.browser()
	b1.signIn(sec1)
	status, page, _ := b1.get("/ui/security/break-glass")
	if status != http.StatusOK || !strings.Contains(page, "nobody yet") || !strings.Contains(page, "INC-7") || strings.Contains(page, "<b>imports</b>") {
		t.Fatalf("the page before any approval (the reason inert): %d %s", status, page)
	}
	if status, body := approve(b1, sec1, false); status != http.StatusForbidden || !strings.Contains(body, `id="stepup-key"`) {
		t.Fatalf("an approval without a step-up: %d", status)
	}
	if status, body := approve(b1, sec1, true); status != http.StatusSeeOther {
		t.Fatalf("the first approval: %d %s", status, body)
	}
	if _, page, _ := b1.get("/ui/security/break-glass"); !strings.Contains(page, "<code>"+p1.ID+"</code>") {
		t.Fatalf("the first approval is not shown: %s", page)
	}
	if status, _ := approve(b1, sec1, true); status != http.StatusConflict {
		t.Fatalf("the same engineer approving twice: %d", status)
	}
	for _, g := range grants(t, e, tenant, admin) {
		t.Fatalf("a grant after one approval: %+v", g)
	}

	for _, key := range []string{staff, admin} {
		b := e.browser()
		b.signIn(key)
		if status, _, _ := b.get("/ui/security/break-glass"); status != http.StatusForbidden {
			t.Fatalf("the page for a %s: %d", key[:8], status)
		}
	}

	b2 := e.browser()
	b2.signIn(sec2)
	if status, body := approve(b2, sec2, true); status != http.StatusSeeOther {
		t.Fatalf("the second approval: %d %s", status, body)
	}
	if _, page, _ := b2.get("/ui/security/break-glass"); !strings.Contains(page, `id="no-break-glass"`) {
		t.Fatalf("the approved request is still on the page: %s", page)
	}
	gs := grants(t, e, tenant, admin)
	if len(gs) != 1 || !gs[0].BreakGlass || gs[0].StaffID != sp.ID || gs[0].RequestID != r.ID || gs[0].Status != custos.GrantActive {
		t.Fatalf("grants through the API after two approvals: %+v", gs)
	}
}

func grants(t *testing.T, e *env, tenant, admin string) []*custos.Grant {
	t.Helper()
	var out []*custos.Grant
	for g, err := range e.api(admin).Grants(context.Background(), tenant) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, g)
	}
	return out
}
