package node_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/client"
	"github.com/custos-dev/custos/internal/smtptest"
	"github.com/custos-dev/custos/node"
	"github.com/custos-dev/custos/notify"
)

// TestAdminToldByMail: a node configured with an SMTP mailer mails a
// tenant's admin, at its verified address, when the operator creates a
// principal for its tenant — through the outbox and the people sink the
// node wires, to a real SMTP server on 127.0.0.1.
func TestAdminToldByMail(t *testing.T) {
	ctx := context.Background()
	sink := smtptest.StartSink(t, smtptest.Options{Mode: smtptest.Plain})
	cfg, op := initialisedOp(t)
	cfg.Mail = node.MailConfig{SMTP: &notify.SMTPMailer{Addr: sink.Addr, From: "custos@vendor.test"}, LinkBase: "https://custos.vendor.test"}
	n, err := node.Open(ctx, cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.Listen(cfg.Addr); err != nil {
		t.Fatal(err)
	}
	opc := client.New(n.URL, client.WithKey(op))
	tn, err := opc.CreateTenant(ctx, custos.CreateTenantRequest{Name: "Acme", AdminEmail: "Ada@Acme.test"})
	if err != nil {
		t.Fatal(err)
	}
	// wait returns the first mail to rcpt whose text matches want.
	wait := func(rcpt, want string) string {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			for _, m := range sink.Messages() {
				if len(m.To) == 1 && m.To[0] == rcpt && strings.Contains(string(m.Data), want) {
					return string(m.Data)
				}
			}
		}
		t.Fatalf("no mail to %s with %q", rcpt, want)
		return ""
	}
	secret := custos.FindEnrollmentSecret(wait("ada@acme.test", "custos enroll"))
	if _, err := client.New(n.URL).Enroll(ctx, custos.EnrollRequest{Secret: secret}); err != nil {
		t.Fatal(err)
	}
	if _, err := opc.CreatePrincipal(ctx, custos.CreatePrincipalRequest{Kind: custos.KindTenantEditor, TenantID: tn.ID, Name: "ed", Email: "ed@acme.test"}); err != nil {
		t.Fatal(err)
	}
	mail := wait("ada@acme.test", "Subject: [custos] principal.enrollment on tenant "+tn.ID)
	if !strings.Contains(mail, "Details: https://custos.vendor.test/v1/enrollments") || strings.Contains(mail, "ed@acme.test") {
		t.Errorf("the admin's notice: %s", mail)
	}
}
