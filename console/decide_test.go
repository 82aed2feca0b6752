package console_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/custos-dev/custos/internal/smtptest"
	"github.com/custos-dev/custos/node"
	"github.com/custos-dev/custos/notify"
)

// TestMailLinksToDecision: the mail telling a tenant's admin that a
// support engineer asks for access links straight to the console page
// where the admin decides; following the link signed out lands on the
// sign-in page, not the request; signed in as the admin, it shows the
// request with its approve and deny buttons.
func TestMailLinksToDecision(t *testing.T) {
	sink := smtptest.StartSink(t, smtptest.Options{Mode: smtptest.Plain})
	e := newEnv(t, node.Options{}, func(c *node.Config) {
		c.Mail = node.MailConfig{SMTP: &notify.SMTPMailer{Addr: sink.Addr, From: "custos@vendor.test"}, LinkBase: "https://custos.vendor.test"}
	})
	tenant, admin := e.newTenant("Decides")
	r, _ := e.supportRequest(tenant, admin, "bounces on the newsletter")
	decide := regexp.MustCompile(`Decide \(sign in to the console first\): https://custos\.vendor\.test(/ui/\S+)`)
	var path string
	waitFor(t, "the admin's mail about the request", func() bool {
		for _, m := range sink.Messages() {
			body := string(m.Data)
			if len(m.To) == 1 && m.To[0] == "admin-decides@tenant.test" && strings.Contains(body, "Subject: [custos] support.request") {
				if g := decide.FindStringSubmatch(body); g != nil {
					path = g[1]
					return true
				}
				t.Fatalf("the request's mail has no decision link:\n%s", body)
			}
		}
		return false
	})
	if path != "/ui/t/"+tenant+"/requests" {
		t.Fatalf("decision link %q", path)
	}
	b := e.browser()
	status, body, _ := b.get(path)
	if status == 200 && strings.Contains(body, r.ID) {
		t.Fatalf("the decision page showed the request to a browser that is not signed in")
	}
	b.signIn(admin)
	status, body, _ = b.get(path)
	if status != 200 || !strings.Contains(body, r.ID) || !strings.Contains(body, "/requests/"+r.ID+"/approve") || !strings.Contains(body, "/requests/"+r.ID+"/deny") {
		t.Fatalf("the decision page signed in: %d\n%s", status, body)
	}
}
