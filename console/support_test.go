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
	"github.com/custos-dev/custos/node"
)

// TestSupportSettingsPage: an admin turns support access on with a
// shorter grant and one reason code through the form; a ticket webhook
// set through the API is kept by a save that does not touch it, and
// removed only when asked; turning break-glass on needs a step-up (and
// nothing changes without it); another tenant's admin changes nothing.
// Each outcome is read back through the API.
func TestSupportSettingsPage(t *testing.T) {
	e := newEnv(t, node.Options{})
	ctx := context.Background()
	tenant, admin := e.newTenant("Supported")
	_, other := e.newTenant("Meddler")
	path := "/ui/t/" + tenant + "/support"
	settings := func() *custos.SupportSettings {
		st, err := e.api(admin).SupportSettings(ctx, tenant)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	b := e.browser()
	b.signIn(admin)
	code, _, token := b.get(path)
	if code != 200 || token == "" {
		t.Fatalf("support page: %d", code)
	}
	save := func(br *browser, tok string, f url.Values) int {
		t.Helper()
		f.Set("csrf", tok)
		code, _, _ := br.post(path, f, nil)
		return code
	}
	if code := save(b, token, url.Values{"support_access": {"on"}, "max_grant": {"8h"}, "reason_code": {custos.ReasonCustomerRequest}}); code != http.StatusSeeOther {
		t.Fatalf("save: %d", code)
	}
	if st := settings(); !st.SupportAccess || time.Duration(st.MaxGrant) != 8*time.Hour || len(st.ReasonCodes) != 1 || st.ReasonCodes[0] != custos.ReasonCustomerRequest || st.BreakGlass {
		t.Fatalf("after the save: %+v", st)
	}

	// A webhook set elsewhere survives a save that does not touch it.
	if _, err := e.api(admin).SetSupportSettings(ctx, tenant, custos.SupportSettingsRequest{SupportAccess: true, MaxGrant: "8h",
		TicketPattern: "SUP-[0-9]+", TicketWebhook: "https://tickets.example.com/secret/check"}); err != nil {
		t.Fatal(err)
	}
	if code := save(b, token, url.Values{"support_access": {"on"}, "max_grant": {"4h"}, "ticket_pattern": {"SUP-[0-9]+"}}); code != http.StatusSeeOther {
		t.Fatalf("save keeping the webhook: %d", code)
	}
	if st := settings(); st.TicketWebhook != custos.TicketWebhookKept || time.Duration(st.MaxGrant) != 4*time.Hour {
		t.Fatalf("the webhook after a save that kept it: %+v", st)
	}
	if _, body, _ := b.get(path); strings.Contains(body, "tickets.example.com") {
		t.Error("the page shows the webhook's URL")
	}
	if code := save(b, token, url.Values{"support_access": {"on"}, "max_grant": {"4h"}, "ticket_pattern": {"SUP-[0-9]+"}, "ticket_webhook_remove": {"on"}}); code != http.StatusSeeOther {
		t.Fatalf("save removing the webhook: %d", code)
	}
	if st := settings(); st.TicketWebhook != "" {
		t.Fatalf("the webhook after removing it: %+v", st)
	}

	// Break-glass on: only after a step-up.
	glass := url.Values{"support_access": {"on"}, "max_grant": {"4h"}, "break_glass": {"on"}}
	if code := save(b, token, glass); code != http.StatusForbidden || settings().BreakGlass {
		t.Fatalf("break-glass on without a step-up: %d", code)
	}
	if code, loc, body := b.post("/ui/stepup", url.Values{"csrf": {token}, "action": {string(custos.ActionSupportSettings)}, "tenant": {tenant}, "target": {tenant}, "key": {admin}}, nil); code != http.StatusSeeOther || loc != path {
		t.Fatalf("step-up: %d %q %s", code, loc, body)
	}
	if code := save(b, token, glass); code != http.StatusSeeOther || !settings().BreakGlass {
		t.Fatalf("break-glass on after the step-up: %d", code)
	}

	// Another tenant's admin changes nothing.
	o := e.browser()
	o.signIn(other)
	_, _, otoken := o.get("/ui/")
	if code, _, _ := o.get(path); code != http.StatusForbidden {
		t.Fatalf("another tenant's admin reads the page: %d", code)
	}
	if code := save(o, otoken, url.Values{"max_grant": {"1h"}}); code != http.StatusForbidden || !settings().SupportAccess {
		t.Fatalf("another tenant's admin saves: %d", code)
	}
}

// TestNotificationPrefsPage: a tenant admin mutes one informational topic
// through the form (read back through the API); a security topic posted
// by hand is refused and nothing changes.
func TestNotificationPrefsPage(t *testing.T) {
	e := newEnv(t, node.Options{})
	ctx := context.Background()
	_, admin := e.newTenant("Quiet")
	b := e.browser()
	b.signIn(admin)
	code, body, token := b.get("/ui/account/notifications")
	if code != 200 || !strings.Contains(body, `value="grant.expiring"`) || strings.Contains(body, `value="support.request"`) {
		t.Fatalf("notifications page: %d\n%s", code, body)
	}
	_, account, _ := b.get("/ui/account")
	me := regexp.MustCompile(`Principal <code>(pr_[a-z2-7]{26})</code>`).FindStringSubmatch(account)
	if me == nil {
		t.Fatalf("no principal on the account page:\n%s", account)
	}
	muted := func() []string {
		p, err := e.api(admin).NotificationPrefs(ctx, me[1])
		if err != nil {
			t.Fatal(err)
		}
		return p.Muted
	}
	if code, _, _ := b.post("/ui/account/notifications", url.Values{"csrf": {token}, "mute": {"grant.expiring"}}, nil); code != http.StatusSeeOther {
		t.Fatalf("save: %d", code)
	}
	if m := muted(); len(m) != 1 || m[0] != "grant.expiring" {
		t.Fatalf("muted after the save: %v", m)
	}
	if code, _, _ := b.post("/ui/account/notifications", url.Values{"csrf": {token}, "mute": {"support.request"}}, nil); code != http.StatusBadRequest {
		t.Fatalf("muting a security topic: %d", code)
	}
	if m := muted(); len(m) != 1 || m[0] != "grant.expiring" {
		t.Fatalf("muted after a refused save: %v", m)
	}
}
