package console_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

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

// TestAskKeyChangeInConsole: a tenant admin asks on the key page for the
// tenant's keys to go under its own KMS key, as PUT .../key does: the
// change waits for a second admin (read back through the API, asked by
// this admin, with the grace period given); a URI custos cannot use, or
// an unreadable grace, is refused with nothing pending; once the tenant's
// key is in force, the page offers going back, which waits too. Staff
// cannot ask.
func TestAskKeyChangeInConsole(t *testing.T) {
	e := newEnv(t, node.Options{})
	ctx := context.Background()
	tenant, first := e.newTenant("Keyed")
	second, _ := e.principal(custos.KindTenantAdmin, tenant, "bea")
	staff, _ := e.principal(custos.KindStaffSupport, "", "sam")
	kms := kmstest.New(t)
	path := "/ui/t/" + tenant + "/key"
	ask := func(b *browser, form url.Values) (int, string) {
		t.Helper()
		_, _, token := b.get(path)
		form.Set("csrf", token)
		status, loc, _ := b.post(path, form, nil)
		return status, loc
	}
	pending := func(key string) *custos.TenantKeyChange {
		t.Helper()
		k, err := e.api(key).TenantKey(ctx, tenant)
		if err != nil {
			t.Fatal(err)
		}
		return k.Pending
	}

	a := e.browser()
	a.signIn(first)
	if _, body, _ := a.get(path); !strings.Contains(body, `id="ask-set"`) || strings.Contains(body, `id="ask-clear"`) {
		t.Fatalf("the key page offers no ask (or a clear with nothing to clear):\n%s", body)
	}
	for _, bad := range []url.Values{
		{"op": {"set"}, "uri": {"https://kms.example/keys/1"}},
		{"op": {"set"}, "uri": {kms.URI("keyed")}, "grace_hours": {"soon"}},
		{"op": {"rotate"}},
	} {
		if status, _ := ask(a, bad); status != http.StatusBadRequest || pending(first) != nil {
			t.Fatalf("asking %v: %d", bad, status)
		}
	}
	s := e.browser()
	s.signIn(staff)
	if status, _ := ask(s, url.Values{"op": {"set"}, "uri": {kms.URI("keyed")}}); status != http.StatusForbidden || pending(first) != nil {
		t.Fatalf("staff asking: %d", status)
	}
	if status, loc := ask(a, url.Values{"op": {"set"}, "uri": {kms.URI("keyed")}, "grace_hours": {"96"}}); status != http.StatusSeeOther || loc != path {
		t.Fatalf("asking: %d %q", status, loc)
	}
	p := pending(first)
	if p == nil || p.Op != custos.KeyChangeSet || p.URI != kms.URI("keyed") || p.RequestedBy != e.whoami(first).ID || p.DueAt.Sub(p.CreatedAt) != 96*time.Hour {
		t.Fatalf("the change asked in the console: %+v", p)
	}
	if _, err := e.api(second).ApproveTenantKeyChange(ctx, tenant, p.ID); err != nil {
		t.Fatal(err)
	}
	if _, body, _ := a.get(path); !strings.Contains(body, `id="ask-clear"`) {
		t.Fatal("the key page does not offer going back to custos's key")
	}
	if status, _ := ask(a, url.Values{"op": {"clear"}}); status != http.StatusSeeOther {
		t.Fatalf("asking to go back: %d", status)
	}
	if p := pending(second); p == nil || p.Op != custos.KeyChangeClear {
		t.Fatalf("the change back: %+v", p)
	}
}
