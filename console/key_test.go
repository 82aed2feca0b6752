package console_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/internal/kmstest"
	"github.com/custos-dev/custos/internal/smtptest"
	"github.com/custos-dev/custos/node"
	"github.com/custos-dev/custos/notify"
)

// TestSecondAdminApprovesKeyChange: one tenant admin asks (through the
// API) for the tenant's data to go under its own KMS key; the mail to the
// tenant's admins links to the console's key page; the requester cannot
// approve there (even after a step-up); a second admin sees exactly what
// is asked, must step up for this change, and approves it; an admin of
// another tenant sees nothing of it.
func TestSecondAdminApprovesKeyChange(t *testing.T) {
	sink := smtptest.StartSink(t, smtptest.Options{Mode: smtptest.Plain})
	e := newEnv(t, node.Options{}, func(c *node.Config) {
		c.Mail = node.MailConfig{SMTP: &notify.SMTPMailer{Addr: sink.Addr, From: "custos@vendor.test"}, LinkBase: "https://custos.vendor.test"}
	})
	ctx := context.Background()
	tenant, first := e.newTenant("Keyed")
	second, _ := e.principal(custos.KindTenantAdmin, tenant, "bea")
	_, other := e.newTenant("Elsewhere")
	kms := kmstest.New(t)
	ch, err := e.api(first).SetTenantKey(ctx, tenant, custos.TenantKeyRequest{URI: kms.URI("keyed")})
	if err != nil {
		t.Fatal(err)
	}

	link := regexp.MustCompile(`Decide \(sign in to the console first\): https://custos\.vendor\.test(/ui/\S+)`)
	var path string
	waitFor(t, "the second admin's mail about the key change", func() bool {
		for _, m := range sink.Messages() {
			body := string(m.Data)
			if len(m.To) == 1 && m.To[0] == "bea@corp.test" && strings.Contains(body, "Subject: [custos] tenant_key.change_requested") {
				if g := link.FindStringSubmatch(body); g != nil {
					path = g[1]
					return true
				}
				t.Fatalf("the key change's mail has no decision link:\n%s", body)
			}
		}
		return false
	})
	if path != "/ui/t/"+tenant+"/key" {
		t.Fatalf("decision link %q", path)
	}
	pending := func() bool {
		k, err := e.api(first).TenantKey(ctx, tenant)
		if err != nil {
			t.Fatal(err)
		}
		return k.Pending != nil && k.Pending.ID == ch.ID && k.Managed == custos.KeyManagedByCustos
	}
	approve := url.Values{"change": {ch.ID}}
	stepUp := func(b *browser, key string) {
		t.Helper()
		_, _, token := b.get(path)
		status, loc, body := b.post("/ui/stepup", url.Values{"csrf": {token}, "action": {string(custos.ActionTenantKeyApprove)},
			"tenant": {tenant}, "target": {ch.ID}, "key": {key}}, nil)
		if status != http.StatusSeeOther || loc != path {
			t.Fatalf("step-up: %d %q %s", status, loc, body)
		}
	}
	post := func(b *browser, p string, form url.Values) (int, string) {
		t.Helper()
		_, _, token := b.get(path)
		f := url.Values{"csrf": {token}}
		for k, v := range form {
			f[k] = v
		}
		status, loc, _ := b.post(p, f, nil)
		return status, loc
	}

	// The requester: the page shows its change, but approving it is
	// refused, step-up or not.
	a := e.browser()
	a.signIn(first)
	if status, body, _ := a.get(path); status != 200 || !strings.Contains(body, ch.ID) {
		t.Fatalf("the requester's key page: %d", status)
	}
	if status, _ := post(a, path+"/approve", approve); status != http.StatusForbidden {
		t.Fatalf("approve without a step-up: %d", status)
	}
	stepUp(a, first)
	if status, _ := post(a, path+"/approve", approve); status != http.StatusForbidden || !pending() {
		t.Fatalf("the requester approves its own change: %d", status)
	}

	// Another tenant's admin sees nothing and approves nothing.
	o := e.browser()
	o.signIn(other)
	if status, body, _ := o.get(path); status != http.StatusForbidden || strings.Contains(body, ch.ID) || strings.Contains(body, kms.URI("keyed")) {
		t.Fatalf("another tenant's admin on the key page: %d", status)
	}
	if status, _ := post(o, path+"/approve", approve); status != http.StatusForbidden || !pending() {
		t.Fatalf("another tenant's admin approves: %d", status)
	}

	// The second admin sees what is asked, steps up for this change, and
	// approves it.
	b := e.browser()
	b.signIn(second)
	status, body, _ := b.get(path)
	if status != 200 || !strings.Contains(body, ch.ID) || !strings.Contains(body, kms.URI("keyed")) || !strings.Contains(body, "/key/approve") {
		t.Fatalf("the second admin's key page: %d\n%s", status, body)
	}
	if status, _ := post(b, path+"/approve", approve); status != http.StatusForbidden || !pending() {
		t.Fatalf("approve before the step-up: %d", status)
	}
	stepUp(b, second)
	if status, loc := post(b, path+"/approve", approve); status != http.StatusSeeOther || loc != path {
		t.Fatalf("approve after the step-up: %d %q", status, loc)
	}
	k, err := e.api(first).TenantKey(ctx, tenant)
	if err != nil || k.Managed != custos.KeyManagedByTenant || k.Pending != nil {
		t.Fatalf("after the approval: %+v, %v", k, err)
	}
	if _, body, _ := b.get(path); !strings.Contains(body, `id="no-change"`) {
		t.Error("the key page still shows a change waiting")
	}
}
