package vault_test

import (
	"bytes"
	"context"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/internal/smtptest"
	"github.com/custos-dev/custos/notify"
	"github.com/custos-dev/custos/server"
	"github.com/custos-dev/custos/vault"
)

// mailbox is a real SMTP server on 127.0.0.1 behind a dispatcher that has
// only the people sink: what a tenant admin's mail server receives.
type mailbox struct {
	t    *testing.T
	f    *fixture
	sink *smtptest.Sink
	d    *notify.Dispatcher
}

func newMailbox(t *testing.T, f *fixture) *mailbox {
	sink := smtptest.StartSink(t, smtptest.Options{Mode: smtptest.Plain})
	people := &vault.PeopleSink{Vault: f.vault, Mailer: &notify.SMTPMailer{Addr: sink.Addr, From: "custos@vendor.test"}, Link: server.NoticeLink, LinkBase: "https://custos.vendor.test"}
	return &mailbox{t: t, f: f, sink: sink, d: &notify.Dispatcher{DB: f.db.Write, Sinks: []notify.Sink{people}, Now: f.clock.Now}}
}

// take delivers the outbox and returns the mails that arrived since the
// last take, by recipient: subject and body.
func (b *mailbox) take() map[string][]*mail.Message {
	b.t.Helper()
	for range 3 { // a message enqueued by the flush itself is not expected, but cheap to allow
		if _, err := b.d.Flush(context.Background()); err != nil {
			b.t.Fatal(err)
		}
	}
	out := map[string][]*mail.Message{}
	for _, m := range b.sink.Messages() {
		msg, err := mail.ReadMessage(strings.NewReader(string(m.Data)))
		if err != nil {
			b.t.Fatalf("unreadable mail: %v", err)
		}
		for _, to := range m.To {
			out[to] = append(out[to], msg)
		}
	}
	b.sink.Drain()
	return out
}

// expect checks that exactly the people in want got one mail each about
// topic, and nobody else got any mail about it; no mail holds any of
// secrets.
func (b *mailbox) expect(what, topic string, want []string, secrets ...string) {
	b.t.Helper()
	got := b.take()
	for to, ms := range got {
		n := 0
		for _, m := range ms {
			body := new(bytes.Buffer)
			if _, err := body.ReadFrom(m.Body); err != nil {
				b.t.Fatal(err)
			}
			for _, s := range secrets {
				if strings.Contains(strings.ToLower(m.Header.Get("Subject")+body.String()), strings.ToLower(s)) {
					b.t.Errorf("%s: the mail to %s holds %q", what, to, s)
				}
			}
			if strings.HasPrefix(m.Header.Get("Subject"), "[custos] "+topic+" ") {
				n++
				if !strings.Contains(body.String(), "Details: https://custos.vendor.test/v1/") {
					b.t.Errorf("%s: the mail to %s has no link to the object: %q", what, to, body.String())
				}
			}
		}
		wanted := 0
		for _, w := range want {
			if w == to {
				wanted = 1
			}
		}
		if n != wanted {
			b.t.Errorf("%s: %s got %d mails about %s, want %d", what, to, n, topic, wanted)
		}
	}
	for _, w := range want {
		if _, ok := got[w]; !ok {
			b.t.Errorf("%s: %s got no mail about %s", what, w, topic)
		}
	}
}

// TestAdminsMailedByName: each event a tenant's admins must hear about
// mails each of that tenant's admins once, at its verified address, and
// no admin of another tenant; no mail carries contact data, and no audit
// entry carries an admin's address.
func TestAdminsMailedByName(t *testing.T) {
	f := newFixture(t)
	admin, tenant, list := f.admin(t) // admin1@acme.test
	secrets := []string{"jane.doe", "gmail.com", "Zebedee"}
	if err := f.vault.CreateContact(admin, &custos.Contact{TenantID: tenant, ListID: list, Email: "jane.doe@gmail.com", Attributes: []byte(`{"first_name":"Zebedee"}`)}); err != nil {
		t.Fatal(err)
	}
	f.enroll(t, f.mustMint(t, admin, custos.KindTenantAdmin, tenant, "second.admin@acme.test", custos.EnrollIssued))
	otherAdmin, other, _ := f.admin(t) // admin2@acme.test: must hear nothing of tenant's events
	_ = otherAdmin
	admins := []string{"admin1@acme.test", "second.admin@acme.test"}
	box := newMailbox(t, f)
	box.take() // the set-up's own notices

	f.mustMint(t, admin, custos.KindTenantEditor, tenant, "ed@acme.test", custos.EnrollIssued)
	box.expect("a principal created for the tenant", "principal.enrollment", admins, secrets...)

	staff, sp := f.principal(t, custos.KindStaffSupport, "", "sam")
	if err := f.vault.SetSupportSettings(admin, tenant, &custos.SupportSettings{SupportAccess: true, BreakGlass: true, MaxGrant: custos.Duration(24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	box.take()
	r := &custos.AccessRequest{TenantID: tenant, Reason: "bounces", Ticket: "SUP-1", Scope: custos.ScopeViewMaskedReveal, Duration: custos.Duration(4 * time.Hour)}
	if err := f.vault.RequestAccess(staff, r); err != nil {
		t.Fatal(err)
	}
	box.expect("staff asking for access", "support.request", admins, secrets...)

	if _, err := f.vault.DecideRequest(admin, tenant, r.ID, vault.Decision{Approve: true, RevealBudget: 2}); err != nil {
		t.Fatal(err)
	}
	box.expect("the request approved (the staff member is told, not the admins)", "support.decision", []string{"sam@corp.test"}, secrets...)
	for i := range 2 {
		if _, err := f.vault.SupportContacts(staff, tenant, list, "", 10); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			box.expect("the grant's first use", vault.TopicGrantFirstUse, admins, secrets...)
		} else {
			box.expect("the grant's second use", vault.TopicGrantFirstUse, nil, secrets...)
		}
	}
	_ = sp

	sec1, _ := f.principal(t, custos.KindStaffSecurity, "", "ana")
	sec2, _ := f.principal(t, custos.KindStaffSecurity, "", "ben")
	box.take()
	bg := &custos.AccessRequest{TenantID: tenant, Reason: "outage", Ticket: "INC-1", Scope: custos.ScopeViewMasked, Duration: custos.Duration(time.Hour)}
	if err := f.vault.RequestBreakGlass(staff, bg); err != nil {
		t.Fatal(err)
	}
	box.take()
	if _, _, err := f.vault.ApproveBreakGlass(sec1, tenant, bg.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.vault.ApproveBreakGlass(sec2, tenant, bg.ID); err != nil {
		t.Fatal(err)
	}
	box.expect("break-glass opened", "break_glass.granted", append([]string{"sam@corp.test"}, admins...), secrets...)

	if err := f.vault.SetFrozen(sec1, tenant, true, "investigating"); err != nil {
		t.Fatal(err)
	}
	box.expect("the tenant contained by security staff", "containment", admins, secrets...)

	if _, err := f.vault.RequestTenantDeletion(admin, tenant, &custos.DeletionRequest{}); err != nil {
		t.Fatal(err)
	}
	box.expect("a deletion scheduled", "deletion.scheduled", admins, secrets...)

	// The other tenant's own event reaches its admin only.
	f.mustMint(t, otherAdmin, custos.KindTenantEditor, other, "ed2@acme.test", custos.EnrollIssued)
	box.expect("another tenant's principal", "principal.enrollment", []string{"admin2@acme.test"}, secrets...)

	// No audit entry names an admin, the staff member or a contact.
	f.log.Sync(context.Background())
	rows, err := f.db.Read.Query(`SELECT data FROM audit_leaves`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var data string
		if err := rows.Scan(&data); err != nil {
			t.Fatal(err)
		}
		for _, s := range append(secrets, "acme.test", "corp.test", "vendor.test") {
			if strings.Contains(data, s) {
				t.Errorf("an audit entry holds %q: %s", s, data)
			}
		}
	}
}

// TestMutingIsForInformationalTopicsOnly: a muted informational topic is
// not mailed; a security topic is mailed even with a muted row planted in
// the database behind custos's back.
func TestMutingIsForInformationalTopicsOnly(t *testing.T) {
	f := newFixture(t)
	admin, tenant, _ := f.admin(t)
	me := custos.PrincipalFromContext(admin)
	if _, err := f.vault.SetNotificationPrefs(admin, me.ID, []string{"support.request"}); custos.ErrorCode(err) != custos.EINVALID {
		t.Fatalf("muting a security topic: %v, want EINVALID", err)
	}
	prefs, err := f.vault.SetNotificationPrefs(admin, me.ID, []string{vault.TopicGrantExpiring})
	if err != nil || len(prefs.Muted) != 1 || len(prefs.Mutable) == 0 {
		t.Fatalf("muting grant.expiring: %+v, %v", prefs, err)
	}
	other, _ := f.principal(t, custos.KindStaffSupport, "", "sam")
	if _, err := f.vault.SetNotificationPrefs(other, me.ID, nil); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Fatalf("someone else changing the admin's preferences: %v, want EFORBIDDEN", err)
	}
	f.exec(t, `INSERT INTO notify_muted (principal_id, topic) VALUES ($1, $2)`, me.ID, "deletion.scheduled")

	box := newMailbox(t, f)
	box.take()
	staff, _ := f.principal(t, custos.KindStaffSupport, "", "sue")
	if err := f.vault.SetSupportSettings(admin, tenant, &custos.SupportSettings{SupportAccess: true, MaxGrant: custos.Duration(24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	r := &custos.AccessRequest{TenantID: tenant, Reason: "bounces", Ticket: "SUP-2", Scope: custos.ScopeViewMasked, Duration: custos.Duration(4 * time.Hour)}
	if err := f.vault.RequestAccess(staff, r); err != nil {
		t.Fatal(err)
	}
	if _, err := f.vault.DecideRequest(admin, tenant, r.ID, vault.Decision{Approve: true}); err != nil {
		t.Fatal(err)
	}
	box.take()
	f.clock.Advance(3*time.Hour + 30*time.Minute)
	if n, err := f.vault.RunExpiry(context.Background(), f.clock.Now(), 0); err != nil || n != 1 {
		t.Fatalf("expiry check: %d, %v; want the grant announced", n, err)
	}
	box.expect("a grant expiring, muted by the admin", vault.TopicGrantExpiring, []string{"sue@corp.test"})
	if _, err := f.vault.RequestTenantDeletion(admin, tenant, &custos.DeletionRequest{}); err != nil {
		t.Fatal(err)
	}
	box.expect("a deletion, 'muted' behind custos's back", "deletion.scheduled", []string{"admin1@acme.test"})
}
