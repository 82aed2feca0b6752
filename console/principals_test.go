package console_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/internal/smtptest"
	"github.com/custos-dev/custos/node"
	"github.com/custos-dev/custos/notify"
)

// TestPendingPrincipals: an operator asks for an editor of a tenant's
// data; the tenant's admins get a mail linking to the pending principals;
// the admin sees the enrollment there, cannot approve it without a step-up
// for it, and approves it after one (checked through the API); a denied
// one is denied; another tenant's admin sees and decides nothing.
func TestPendingPrincipals(t *testing.T) {
	sink := smtptest.StartSink(t, smtptest.Options{Mode: smtptest.Plain})
	e := newEnv(t, node.Options{}, func(c *node.Config) {
		c.Mail = node.MailConfig{SMTP: &notify.SMTPMailer{Addr: sink.Addr, From: "custos@vendor.test"}, LinkBase: "https://custos.vendor.test"}
	})
	ctx := context.Background()
	tenant, admin := e.newTenant("Guarded")
	_, other := e.newTenant("Nosy")
	ask := func(name string) *custos.Enrollment {
		t.Helper()
		p, err := e.api(e.operator).CreatePrincipal(ctx, custos.CreatePrincipalRequest{Kind: custos.KindTenantEditor, TenantID: tenant, Name: name, Owner: name, Email: name + "@corp.test"})
		if err != nil {
			t.Fatal(err)
		}
		if p.Enrollment.Status != custos.EnrollPending || p.Enrollment.Approval != custos.ApprovalTenantAdmin {
			t.Fatalf("enrollment: %+v", p.Enrollment)
		}
		return p.Enrollment
	}
	en, denied := ask("eddie"), ask("mallory")
	status := func(id string) string {
		for x, err := range e.api(admin).Enrollments(ctx, "") {
			if err != nil {
				t.Fatal(err)
			}
			if x.ID == id {
				return x.Status
			}
		}
		return ""
	}
	path := "/ui/t/" + tenant + "/principals"
	link := regexp.MustCompile(`Decide \(sign in to the console first\): https://custos\.vendor\.test(/ui/\S+)`)
	waitFor(t, "the admin's mail about the enrollment", func() bool {
		for _, m := range sink.Messages() {
			body := string(m.Data)
			if len(m.To) == 1 && m.To[0] == "admin-guarded@tenant.test" && strings.Contains(body, "Subject: [custos] principal.enrollment ") && strings.Contains(body, en.PrincipalID) {
				if g := link.FindStringSubmatch(body); g == nil || g[1] != path {
					t.Fatalf("the enrollment's mail links to %v:\n%s", g, body)
				}
				return true
			}
		}
		return false
	})

	o := e.browser()
	o.signIn(other)
	_, _, otoken := o.get("/ui/t/" + tenant + "/principals")
	if code, body, _ := o.get(path); code != http.StatusForbidden || strings.Contains(body, en.ID) {
		t.Fatalf("another tenant's admin on the page: %d", code)
	}
	if code, _, _ := o.post(path+"/"+en.ID+"/deny", url.Values{"csrf": {otoken}}, nil); code != http.StatusForbidden || status(en.ID) != custos.EnrollPending {
		t.Fatalf("another tenant's admin denies: %d", code)
	}

	b := e.browser()
	b.signIn(admin)
	code, body, token := b.get(path)
	if code != 200 || !strings.Contains(body, en.ID) || !strings.Contains(body, en.PrincipalID) {
		t.Fatalf("pending principals: %d\n%s", code, body)
	}
	// The admin is told what each would enable: its kind and handle.
	section := func(body, id string) string {
		i := strings.Index(body, `id="enr-`+id+`"`)
		if i < 0 {
			t.Fatalf("no section for %s", id)
		}
		j := strings.Index(body[i:], "</section>")
		return body[i : i+j]
	}
	if s := section(body, en.ID); !strings.Contains(s, "tenant editor — reads and writes") || !strings.Contains(s, "<code>eddie</code>") {
		t.Fatalf("the enrollment does not say what it asks for:\n%s", s)
	}
	for x, err := range e.api(admin).Enrollments(ctx, custos.EnrollPending) {
		if err != nil {
			t.Fatal(err)
		}
		if x.ID == en.ID && (x.PrincipalKind != custos.KindTenantEditor || x.PrincipalName != "eddie") {
			t.Fatalf("the API's pending enrollment: %+v", x)
		}
	}
	// An insider who rewrites the row of the principal awaiting approval
	// (to pass a staff account off as a harmless one, say) breaks its
	// MAC: the page names no kind for it, and says why.
	if _, err := e.n.DB.Write.ExecContext(ctx, `UPDATE principals SET kind = 'service' WHERE id = $1`, denied.PrincipalID); err != nil {
		t.Fatal(err)
	}
	_, body, _ = b.get(path)
	if s := section(body, denied.ID); strings.Contains(s, "service —") || !strings.Contains(s, "failed its integrity check") {
		t.Fatalf("a forged principal row is described:\n%s", s)
	}
	if _, err := e.n.DB.Write.ExecContext(ctx, `UPDATE principals SET kind = 'tenant_editor' WHERE id = $1`, denied.PrincipalID); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := b.post(path+"/"+en.ID+"/approve", url.Values{"csrf": {token}}, nil); code != http.StatusForbidden || status(en.ID) != custos.EnrollPending {
		t.Fatalf("approve without a step-up: %d", code)
	}
	if code, loc, body := b.post("/ui/stepup", url.Values{"csrf": {token}, "action": {string(custos.ActionPrincipalDecide)}, "tenant": {tenant}, "target": {en.ID}, "key": {admin}}, nil); code != http.StatusSeeOther || !strings.HasPrefix(loc, path) {
		t.Fatalf("step-up: %d %q %s", code, loc, body)
	}
	if code, _, _ := b.post(path+"/"+en.ID+"/approve", url.Values{"csrf": {token}}, nil); code != http.StatusSeeOther || status(en.ID) != custos.EnrollIssued {
		t.Fatalf("approve after the step-up: %d, %s", code, status(en.ID))
	}
	if code, _, _ := b.post(path+"/"+denied.ID+"/deny", url.Values{"csrf": {token}}, nil); code != http.StatusSeeOther || status(denied.ID) != custos.EnrollDenied {
		t.Fatalf("deny: %d, %s", code, status(denied.ID))
	}
	if _, body, _ := b.get(path); !strings.Contains(body, `id="no-pending-principals"`) {
		t.Error("decided enrollments still listed")
	}
}
