package console_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/internal/kmstest"
	"github.com/custos-dev/custos/node"
)

// TestBrowserSecurityTriage drives chromium through a security engineer's
// triage: sign in with the key, open the alert a tenant admin's
// self-approval raised, follow its evidence to a proven entry, acknowledge
// the alert; lift a colleague's suspension of a support engineer after a
// step-up; approve a break-glass request after a step-up. Each decision is
// checked through the API.
func TestBrowserSecurityTriage(t *testing.T) {
	ctx := chrome(t)
	e := newEnv(t, node.Options{})
	bg := context.Background()
	tenant, admin := e.newTenant("Watched")
	ana, _ := e.principal(custos.KindStaffSecurity, "", "ana")
	ben, _ := e.principal(custos.KindStaffSecurity, "", "ben")
	kms := kmstest.New(t)
	ch, err := e.api(admin).SetTenantKey(bg, tenant, custos.TenantKeyRequest{URI: kms.URI("watched")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.api(admin).ApproveTenantKeyChange(bg, tenant, ch.ID); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Fatalf("self-approval: %v", err)
	}
	var alert *custos.Alert
	waitFor(t, "the self-approval alert", func() bool {
		for a, err := range e.api(ana).Alerts(bg, custos.AlertOpen) {
			if err != nil {
				t.Fatal(err)
			}
			if a.RuleID == "self-approval-attempt" {
				alert = a
				return true
			}
		}
		return false
	})
	_, sam := e.principal(custos.KindStaffSupport, "", "sam")
	if _, err := e.api(ana).Suspend(bg, sam.ID, "odd hours"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.api(admin).SetSupportSettings(bg, tenant, custos.SupportSettingsRequest{SupportAccess: true, MaxGrant: "24h", BreakGlass: true}); err != nil {
		t.Fatal(err)
	}
	staff, _ := e.principal(custos.KindStaffSupport, "", "sid")
	r, err := e.api(staff).RequestBreakGlass(bg, tenant, custos.AccessRequestBody{Reason: "outage: imports failing", Ticket: "INC-7", Scope: custos.ScopeViewMasked, Duration: "1h"})
	if err != nil {
		t.Fatal(err)
	}

	must, text := steps(t, ctx)

	must(chromedp.Navigate(e.url+"/ui/signin"), chromedp.WaitVisible(chromedp.ID("key")),
		chromedp.SendKeys(chromedp.ID("key"), ben), chromedp.Click(chromedp.ID("signin")), chromedp.WaitVisible(chromedp.ID("alert-"+alert.ID)))
	screenshot(t, ctx, "alerts")
	ev := strconv.FormatUint(alert.Evidence[0], 10)
	waitFor(t, "a checkpoint covering the evidence", func() bool {
		must(chromedp.Navigate(e.url+"/ui/security/alerts"), chromedp.WaitVisible(chromedp.ID("alert-"+alert.ID)),
			chromedp.Click(chromedp.CSS(`#alert-`+alert.ID+` a.entry[href="/ui/security/entries/`+ev+`"]`)), chromedp.WaitVisible(chromedp.CSS("main p")))
		v, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("entry-proven") !== null`))
		return err == nil && v
	})
	if got := text("#entry .action"); got == "" {
		t.Fatal("the evidence entry shows no action")
	}
	screenshot(t, ctx, "entry")
	must(chromedp.Navigate(e.url+"/ui/security/alerts"), chromedp.WaitVisible(chromedp.ID("ack-"+alert.ID)),
		chromedp.SendKeys(chromedp.ID("ack-"+alert.ID), "looking into it"), chromedp.Click(chromedp.CSS("#alert-"+alert.ID+" button.ack")),
		chromedp.WaitNotPresent(chromedp.ID("ack-"+alert.ID)))
	for a, err := range e.api(ana).Alerts(bg, "") {
		if err != nil {
			t.Fatal(err)
		}
		if a.ID == alert.ID && a.Status != custos.AlertAcknowledged {
			t.Fatalf("the alert after acknowledging in the browser: %s", a.Status)
		}
	}

	// Lift Ana's suspension of Sam: a step-up first.
	must(chromedp.Navigate(e.url+"/ui/security/containments"), chromedp.WaitVisible(chromedp.ID("containment-"+sam.ID)),
		chromedp.SendKeys(chromedp.ID("reason-"+sam.ID), "cleared with the manager"), chromedp.Click(chromedp.CSS("#containment-"+sam.ID+" button.lift")),
		chromedp.WaitVisible(chromedp.ID("stepup-key")),
		chromedp.SendKeys(chromedp.ID("stepup-key"), ben), chromedp.Click(chromedp.ID("stepup")), chromedp.WaitVisible(chromedp.ID("containment-"+sam.ID)),
		chromedp.SendKeys(chromedp.ID("reason-"+sam.ID), "cleared with the manager"), chromedp.Click(chromedp.CSS("#containment-"+sam.ID+" button.lift")),
		chromedp.WaitVisible(chromedp.ID("no-containments")))
	for c, err := range e.api(ana).Containments(bg) {
		if err != nil {
			t.Fatal(err)
		}
		if c.Target == sam.ID {
			t.Fatal("still contained after lifting in the browser")
		}
	}

	// Approve the break-glass request: a step-up first.
	must(chromedp.Navigate(e.url+"/ui/security/break-glass"), chromedp.WaitVisible(chromedp.ID("bg-"+r.ID)))
	screenshot(t, ctx, "break-glass")
	must(chromedp.Click(chromedp.CSS("#bg-"+r.ID+" button.approve")), chromedp.WaitVisible(chromedp.ID("stepup-key")),
		chromedp.SendKeys(chromedp.ID("stepup-key"), ben), chromedp.Click(chromedp.ID("stepup")), chromedp.WaitVisible(chromedp.ID("bg-"+r.ID)),
		chromedp.Click(chromedp.CSS("#bg-"+r.ID+" button.approve")), chromedp.WaitVisible(chromedp.CSS("#bg-"+r.ID+" .approvals code")))
	var approved []string
	for x, err := range e.api(ana).PendingBreakGlass(bg) {
		if err != nil {
			t.Fatal(err)
		}
		if x.ID == r.ID {
			approved = x.ApprovedBy
		}
	}
	if len(approved) != 1 || approved[0] != e.whoami(ben).ID {
		t.Fatalf("approvals through the API after approving in the browser: %v", approved)
	}
}
