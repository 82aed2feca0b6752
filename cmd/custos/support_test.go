package main

import (
	"strings"
	"testing"
)

// TestSupportCLI walks support access through the CLI: the tenant turns
// it on, staff ask, the tenant approves, staff see masked data, reveal one
// contact with a reason, are refused export, and the tenant revokes.
func TestSupportCLI(t *testing.T) {
	c, _ := served(t)
	tenant, _ := c.tenant("Acme")
	_, adminKey := c.principal("tenant_admin", tenant, "acme", "acme-admin")
	_, staffKey := c.principal("staff_support", "", "sam", "sam")
	as := c.runAs
	must := c.mustAs
	list := idRE("ls").FindString(must(adminKey, "list", "create", "--tenant", tenant, "news"))
	token := idRE("ct").FindString(must(adminKey, "contact", "add", "--tenant", tenant, "--list", list, "jo.smith@example.test"))

	if _, err := as(staffKey, "support", "request", "--tenant", tenant, "--reason", "bounces", "--ticket", "SUP-1"); err == nil || !strings.Contains(err.Error(), "support access turned off") {
		t.Fatalf("request while off: %v", err)
	}
	must(adminKey, "support", "on", "--tenant", tenant, "--max-grant", "12h")
	req := idRE("ar").FindString(must(staffKey, "support", "request", "--tenant", tenant, "--reason", "bounces", "--ticket", "SUP-1", "--scope", "view_masked+reveal", "--duration", "8h"))
	if !strings.Contains(must(adminKey, "support", "requests", "--tenant", tenant), "SUP-1") {
		t.Fatal("tenant admin does not see the request")
	}
	grant := idRE("gr").FindString(must(adminKey, "support", "approve", req, "--tenant", tenant, "--duration", "2h", "--reveal-budget", "1"))
	if grant == "" {
		t.Fatal("approve printed no grant")
	}
	if one := must(staffKey, "support", "view", token, "--tenant", tenant); !strings.Contains(one, "j***@e***.test") {
		t.Fatalf("masked contact by token:\n%s", one)
	}
	view := must(staffKey, "support", "view", "--tenant", tenant, "--list", list)
	if strings.Contains(view, "jo.smith") || !strings.Contains(view, "j***@e***.test") {
		t.Fatalf("masked view:\n%s", view)
	}
	if out := must(staffKey, "support", "reveal", token, "--tenant", tenant, "--reason-code", "CUSTOMER_REQUEST", "--reason", "SUP-1: wrong address reported"); !strings.Contains(out, "jo.smith@example.test") {
		t.Fatalf("reveal:\n%s", out)
	}
	if _, err := as(staffKey, "export", "--tenant", tenant, "--list", list); err == nil {
		t.Fatal("staff export allowed")
	}
	if out := must(adminKey, "support", "revoke", grant, "--tenant", tenant); !strings.Contains(out, "revoked") {
		t.Fatalf("revoke:\n%s", out)
	}
	if _, err := as(staffKey, "support", "view", "--tenant", tenant, "--list", list); err == nil {
		t.Fatal("masked view after revoke allowed")
	}
	if out := must(adminKey, "support", "reveals", "--tenant", tenant); !strings.Contains(out, token) || !strings.Contains(out, "CUSTOMER_REQUEST") {
		t.Fatalf("the tenant's reveal register:\n%s", out)
	}

	// Break-glass: the tenant allows it; two security staff approve.
	var secKeys []string
	for _, who := range []string{"ana", "ben"} {
		_, key := c.principal("staff_security", "", who, who)
		secKeys = append(secKeys, key)
	}
	if _, err := as(staffKey, "support", "break-glass", "--tenant", tenant, "--reason", "outage", "--ticket", "INC-1"); err == nil {
		t.Fatal("break-glass allowed where the tenant did not allow it")
	}
	must(adminKey, "support", "on", "--tenant", tenant, "--break-glass")

	// The tenant's own identity provider for console step-ups.
	if out := must(adminKey, "support", "sso-issuer", "--tenant", tenant, "https://login.acme.example"); !strings.Contains(out, "https://login.acme.example") {
		t.Fatalf("sso-issuer:\n%s", out)
	}
	for _, bad := range [][]string{{}, {"--none", "https://login.acme.example"}, {"http://login.acme.example"}} {
		if _, err := as(adminKey, append([]string{"support", "sso-issuer", "--tenant", tenant}, bad...)...); err == nil {
			t.Fatalf("sso-issuer %q accepted", bad)
		}
	}
	if _, err := as(staffKey, "support", "sso-issuer", "--tenant", tenant, "--none"); err == nil {
		t.Fatal("staff named the tenant's identity provider")
	}
	if out := must(adminKey, "support", "sso-issuer", "--tenant", tenant, "--none"); !strings.Contains(out, "no identity provider") {
		t.Fatalf("sso-issuer --none:\n%s", out)
	}
	bg := idRE("ar").FindString(must(staffKey, "support", "break-glass", "--tenant", tenant, "--reason", "outage", "--ticket", "INC-1", "--duration", "30m"))
	if out := must(secKeys[1], "support", "break-glass-requests"); !strings.Contains(out, bg) || !strings.Contains(out, "INC-1") || !strings.Contains(out, "none") {
		t.Fatalf("break-glass requests awaiting approval:\n%s", out)
	}
	if _, err := as(staffKey, "support", "break-glass-requests"); err == nil {
		t.Fatal("the requester listed the break-glass requests")
	}
	if out := must(secKeys[0], "support", "approve-break-glass", bg, "--tenant", tenant); !strings.Contains(out, "approval 1 of 2") {
		t.Fatalf("first approval:\n%s", out)
	}
	if out := must(secKeys[1], "support", "approve-break-glass", bg, "--tenant", tenant); idRE("gr").FindString(out) == "" {
		t.Fatalf("second approval opened no grant:\n%s", out)
	}
	must(staffKey, "support", "view", "--tenant", tenant, "--list", list)
}

// TestReviewCLI: the access review flags a key without expiry and a
// principal without owner, and bulk revocation by flag takes only those.
func TestReviewCLI(t *testing.T) {
	c, _ := served(t)
	tenant, admin := c.tenant("Acme")
	// The tenant's admin creates its services (no approval needed: it is
	// the tenant's own decision); their holders enroll.
	c.env["CUSTOS_KEY"] = admin
	svc := idRE("pr").FindString(c.must("principal", "create", "--kind", "service", "--tenant", tenant, "--email", "ingest@corp.test", "ingest"))
	c.enroll("ingest@corp.test", "--expires-in", "never")
	owned := idRE("pr").FindString(c.must("principal", "create", "--kind", "service", "--tenant", tenant, "--email", "crm@corp.test", "crm"))
	c.enroll("crm@corp.test")
	orphan := idRE("pr").FindString(c.must("principal", "create", "--kind", "service", "--tenant", tenant, "--email", "gone@corp.test", "never-enrolled"))
	c.env["CUSTOS_KEY"] = c.op
	forever := idRE("ak").FindString(c.must("key", "ls", "--principal", svc))
	kept := idRE("ak").FindString(c.must("key", "ls", "--principal", owned))

	out := c.must("review")
	for _, want := range []string{svc, forever, "no_expiry", "no_owner", orphan, kept} {
		if !strings.Contains(out, want) {
			t.Fatalf("review lacks %s:\n%s", want, out)
		}
	}
	if out := c.must("review", "--flag", "no_expiry"); strings.Contains(out, kept) {
		t.Fatalf("review --flag no_expiry shows an unflagged key:\n%s", out)
	}
	if out := c.must("review", "--flag", "no_expiry", "--revoke"); !strings.Contains(out, "would revoke") || !strings.Contains(out, forever) {
		t.Fatalf("dry run:\n%s", out)
	}
	if out := c.must("review", "--flag", "no_expiry", "--revoke", "--yes"); !strings.Contains(out, "revoked 1 keys") {
		t.Fatalf("bulk revoke:\n%s", out)
	}
	out = c.must("review", "--json")
	if !strings.Contains(out, `"principals"`) || strings.Contains(c.must("review", "--flag", "no_expiry"), forever+" ") {
		t.Fatalf("after the revoke:\n%s", out)
	}
}
