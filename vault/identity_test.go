package vault_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/internal/enrolltest"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/internal/vaulttest"
	"github.com/custos-dev/custos/keys"
	"github.com/custos-dev/custos/notify"
	"github.com/custos-dev/custos/vault"
)

// Issue 12, "what was found": each test below is one bullet, tried as the
// insider would — with the operator's key and whatever principals it can
// mint — against the vault itself.

// mint creates, as ctx, a principal of kind held by the person at email
// and returns its first enrollment, or the refusal.
func (f *fixture) mint(ctx context.Context, kind custos.Kind, tenant, email string) (*custos.Enrollment, error) {
	return f.vault.CreatePrincipal(ctx, &custos.Principal{Kind: kind, TenantID: tenant, Name: string(kind), Identity: email})
}

// mustMint is mint that fails t on a refusal and checks the enrollment's
// status.
func (f *fixture) mustMint(t *testing.T, ctx context.Context, kind custos.Kind, tenant, email, status string) *custos.Enrollment {
	t.Helper()
	e, err := f.mint(ctx, kind, tenant, email)
	if err != nil {
		t.Fatalf("create %s for %s: %v", kind, email, err)
	}
	if e.Status != status {
		t.Fatalf("create %s for %s: enrollment %s (approval %s), want %s", kind, email, e.Status, e.Approval, status)
	}
	return e
}

// enroll is the holder reading its mail and setting up its key.
func (f *fixture) enroll(t *testing.T, e *custos.Enrollment) context.Context {
	t.Helper()
	return f.as(t, enrolltest.Key(t, f.vault, e.ID, custos.KeyRequest{ExpiresIn: "never"}))
}

// anonymous is a request with no key: how an enrollment secret arrives.
func anonymous() context.Context {
	return custos.NewContext(context.Background(), &custos.Request{ID: custos.NewID(custos.PrefixRequest), Source: "192.0.2.9"})
}

// secondPerson creates the founding security identity, "ivy", a person
// other than the operator: from then on the operator mints no privileged
// principal alone.
func (f *fixture) secondPerson(t *testing.T) context.Context {
	t.Helper()
	ctx, _ := f.principal(t, custos.KindStaffSecurity, "", "ivy")
	return ctx
}

// wantNoMail checks that enrollment id's secret goes nowhere yet.
func wantNoMail(t *testing.T, f *fixture, id string) {
	t.Helper()
	if mail, err := f.vault.EnrollmentMail(context.Background(), id); err != nil || mail != nil {
		t.Fatalf("enrollment %s has a mail to send (%v, %v); want none until its second party approves", id, mail, err)
	}
}

// wantMailTo checks that enrollment id's secret goes to addr and nowhere else.
func wantMailTo(t *testing.T, f *fixture, id, addr string) {
	t.Helper()
	mail, err := f.vault.EnrollmentMail(context.Background(), id)
	if err != nil || mail == nil || mail.To != addr {
		t.Fatalf("enrollment %s's mail: %+v, %v; want it addressed to %s", id, mail, err, addr)
	}
}

// wantDenied checks that the newest leaf of action is a refusal whose
// reason holds reason.
func wantDenied(t *testing.T, f *fixture, action custos.Action, reason string) {
	t.Helper()
	var l audit.Leaf
	if err := json.Unmarshal([]byte(lastLeaf(t, f, action)), &l); err != nil {
		t.Fatal(err)
	}
	if l.Outcome != audit.OutcomeDenied || !strings.Contains(l.Reason, reason) {
		t.Fatalf("newest %s leaf: outcome %q reason %q; want a recorded refusal saying %q", action, l.Outcome, l.Reason, reason)
	}
}

// leaves returns every entry's body, oldest first.
func leaves(t *testing.T, f *fixture) []audit.Leaf {
	t.Helper()
	ctx := context.Background()
	f.log.Sync(ctx)
	var out []audit.Leaf
	for i := range f.log.Size() {
		data, err := f.log.Entry(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		var l audit.Leaf
		if err := json.Unmarshal(data, &l); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		out = append(out, l)
	}
	return out
}

// told reports whether the outbox holds a message of topic about tenant
// for recipient to, at least as severe as high when high is set.
func told(t *testing.T, f *fixture, topic, tenant, to string, high bool) bool {
	t.Helper()
	for _, m := range outbox(t, f) {
		if m.Topic != topic || m.TenantID != tenant || !contains(m.To, to) {
			continue
		}
		if high && m.Severity != notify.SeverityHigh && m.Severity != notify.SeverityCritical {
			continue
		}
		return true
	}
	return false
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// contain does what the detector does when a canary read raises an alert:
// in one transaction, an alert naming principals and tenants, the
// principals suspended with their grants ended, the tenants frozen, and
// what was done recorded on the alert.
func (f *fixture) contain(t *testing.T, principals, tenants []string) string {
	t.Helper()
	ctx := context.Background()
	a := &custos.Alert{ID: custos.NewID(custos.PrefixAlert), RuleID: "canary-read", Title: "canary read", Severity: "critical",
		DedupKey: "test/" + custos.NewID(custos.PrefixAlert), Principals: principals, Tenants: tenants, CreatedAt: f.clock.Now()}
	tx, err := f.db.Write.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if err := vault.InsertAlert(ctx, tx, a); err != nil {
		t.Fatal(err)
	}
	done, err := vault.Contain(ctx, tx, f.vault.Rows(), []string{string(custos.ContainSuspend), string(custos.ContainEndGrants), string(custos.ContainFreeze)}, principals, tenants, a.ID, f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := vault.SetAlertActions(ctx, tx, a.ID, done); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return a.ID
}

func supportOn(t *testing.T, f *fixture, admin context.Context, tenant string, breakGlass bool) {
	t.Helper()
	if err := f.vault.SetSupportSettings(admin, tenant, &custos.SupportSettings{SupportAccess: true, BreakGlass: breakGlass, MaxGrant: custos.Duration(24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
}

func addContact(t *testing.T, f *fixture, admin context.Context, tenant, list string) *custos.Contact {
	t.Helper()
	c := &custos.Contact{TenantID: tenant, ListID: list, Email: "jane.doe@gmail.com"}
	if err := f.vault.CreateContact(admin, c); err != nil {
		t.Fatal(err)
	}
	return c
}

func exportCount(ctx context.Context, f *fixture, tenant, list string) (int, error) {
	n := 0
	err := f.vault.Export(ctx, tenant, list, "csv", func(*custos.Contact) error { n++; return nil })
	return n, err
}

// With only the operator key: mint a tenant_admin principal + key for any
// tenant and export its list. Now the principal waits for one of the
// tenant's admins, its secret goes nowhere until then and then only to the
// holder's address, no other door yields a key, and the tenant is told.
func TestOperatorAloneCannotMintTenantAdminAndExport(t *testing.T) {
	f := newFixture(t)
	admin, tenant, list := f.admin(t)
	addContact(t, f, admin, tenant, list)

	e := f.mustMint(t, f.ctx, custos.KindTenantAdmin, tenant, "mallory@evil.test", custos.EnrollPending)
	if e.Approval != custos.ApprovalTenantAdmin {
		t.Fatalf("approval %s, want %s", e.Approval, custos.ApprovalTenantAdmin)
	}
	wantNoMail(t, f, e.ID)
	if !told(t, f, "principal.enrollment", tenant, notify.ToTenantAdmins, true) || !told(t, f, "principal.enrollment", tenant, notify.ToStaffSecurity, true) {
		t.Fatalf("the tenant and security were not told of the pending admin: %v", outbox(t, f))
	}

	// Every other door stays shut, and each attempt is on the record.
	_, _, err := f.vault.CreateKey(f.ctx, e.PrincipalID, custos.KeyRequest{})
	wantCode(t, "operator creating the new admin's key", err, custos.EFORBIDDEN)
	wantDenied(t, f, custos.ActionKeyCreate, "enrollment")
	_, err = f.vault.DecideEnrollment(f.ctx, e.ID, true)
	wantCode(t, "operator approving its own tenant admin", err, custos.EFORBIDDEN)
	wantDenied(t, f, custos.ActionPrincipalDecide, "tenant's admins")
	_, _, err = f.vault.Enroll(anonymous(), custos.EnrollmentSecret(e.ID, make([]byte, 20)), custos.KeyRequest{})
	wantCode(t, "a guessed enrollment secret", err, custos.EUNAUTHORIZED)
	_, err = exportCount(f.ctx, f, tenant, list)
	wantCode(t, "operator exporting", err, custos.EFORBIDDEN)

	// With the tenant's admin as the second party it goes through — to the
	// holder's mailbox, not the operator's.
	d, err := f.vault.DecideEnrollment(admin, e.ID, true)
	if err != nil || d.Status != custos.EnrollIssued {
		t.Fatalf("the tenant's admin approving: %+v, %v", d, err)
	}
	wantMailTo(t, f, e.ID, "mallory@evil.test")
	n, err := exportCount(f.enroll(t, e), f, tenant, list)
	if err != nil || n == 0 {
		t.Fatalf("the approved admin exporting: %d, %v", n, err)
	}
}

// With only the operator key: issue a new key for the tenant's existing
// admin and export. Now a re-key is an enrollment like any other: it waits
// for another of the tenant's admins (or, for its only admin, a recovery),
// the admin itself is no second party to its own re-key, and the secret
// goes to the admin's address.
func TestOperatorCannotRekeyExistingAdmin(t *testing.T) {
	f := newFixture(t)
	admin, tenant, list := f.admin(t)
	addContact(t, f, admin, tenant, list)
	ap := custos.PrincipalFromContext(admin)

	_, _, err := f.vault.CreateKey(f.ctx, ap.ID, custos.KeyRequest{})
	wantCode(t, "operator creating a key for the admin", err, custos.EFORBIDDEN)
	wantDenied(t, f, custos.ActionKeyCreate, "enrollment")

	// The tenant's only admin: only a recovery could re-key it.
	e, err := f.vault.Rekey(f.ctx, ap.ID)
	if err != nil || e.Status != custos.EnrollPending || e.Approval != custos.ApprovalRecovery {
		t.Fatalf("re-keying the only admin: %+v, %v; want a pending recovery", e, err)
	}
	wantNoMail(t, f, e.ID)
	_, err = f.vault.DecideEnrollment(f.ctx, e.ID, true)
	wantCode(t, "operator approving its own re-key", err, custos.EFORBIDDEN)

	// With a second admin (one the first did not mint: that one would be
	// no second party to it), the re-key waits for it.
	e2 := f.mustMint(t, f.ctx, custos.KindTenantAdmin, tenant, "second.admin@acme.test", custos.EnrollPending)
	f.approvers.Settle(t, e2)
	a2 := f.enroll(t, e2)
	e, err = f.vault.Rekey(f.ctx, ap.ID)
	if err != nil || e.Status != custos.EnrollPending || e.Approval != custos.ApprovalTenantAdmin {
		t.Fatalf("re-keying an admin: %+v, %v; want it pending for another admin", e, err)
	}
	if b, _ := json.Marshal(e); strings.Contains(string(b), "cse_") {
		t.Fatalf("the re-key's response holds a secret: %s", b)
	}
	wantNoMail(t, f, e.ID)
	_, err = f.vault.DecideEnrollment(admin, e.ID, true)
	wantCode(t, "the admin approving its own re-key", err, custos.EFORBIDDEN)
	wantDenied(t, f, custos.ActionPrincipalDecide, "same person")
	if d, err := f.vault.DecideEnrollment(a2, e.ID, true); err != nil || d.Status != custos.EnrollIssued {
		t.Fatalf("the other admin approving: %+v, %v", d, err)
	}
	wantMailTo(t, f, e.ID, addressOf(t, f, ap))
}

// With only the operator key: issue a new key for a staff principal that
// holds a live grant and use the grant. Now nobody creates a key for
// another principal; a re-key's secret goes to the staff member's address;
// and the operator's own principals hold no grant.
func TestOperatorCannotKeyStaffHoldingGrant(t *testing.T) {
	f := newFixture(t)
	_, staff, tenant, list, tokens, _ := grantedStaff(t, f, custos.ScopeViewMaskedReveal, 5)
	sp := custos.PrincipalFromContext(staff)

	_, _, err := f.vault.CreateKey(f.ctx, sp.ID, custos.KeyRequest{})
	wantCode(t, "operator creating a key for the granted staff member", err, custos.EFORBIDDEN)
	wantDenied(t, f, custos.ActionKeyCreate, "enrollment")

	e, err := f.vault.Rekey(f.ctx, sp.ID)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(e); strings.Contains(string(b), "cse_") || strings.Contains(string(b), "@") {
		t.Fatalf("the re-key's response holds a secret or an address: %s", b)
	}
	wantMailTo(t, f, e.ID, addressOf(t, f, sp))
	if !told(t, f, "principal.enrollment", "", notify.ToStaffSecurity, false) {
		t.Fatal("security was not told of the re-key")
	}

	// The operator's own routes to the data: none.
	_, err = f.vault.Reveal(f.ctx, tenant, tokens[0], custos.ReasonDebugging, "x: checking the reported bounce")
	wantCode(t, "operator revealing", err, custos.EFORBIDDEN)
	// A support principal at the operator's own mailbox is its own
	// principal, holding no grant.
	mine := f.enroll(t, f.mustMint(t, f.ctx, custos.KindStaffSupport, "", "op+support@vendor.test", custos.EnrollIssued))
	_, err = f.vault.Reveal(mine, tenant, tokens[0], custos.ReasonDebugging, "x: checking the reported bounce")
	wantCode(t, "the operator's staff principal revealing", err, custos.EFORBIDDEN)
	_, err = f.vault.SupportContacts(mine, tenant, list, "", 10)
	wantCode(t, "the operator's staff principal paging", err, custos.EFORBIDDEN)
}

// With only the operator key: mint a tenant_editor and page the contacts
// in clear. Now editors and services wait for the tenant's admin too.
func TestOperatorCannotMintEditorAndPage(t *testing.T) {
	f := newFixture(t)
	admin, tenant, list := f.admin(t)
	addContact(t, f, admin, tenant, list)
	var editor *custos.Enrollment
	for _, kind := range []custos.Kind{custos.KindTenantEditor, custos.KindService} {
		e := f.mustMint(t, f.ctx, kind, tenant, "mallory@evil.test", custos.EnrollPending)
		if e.Approval != custos.ApprovalTenantAdmin {
			t.Fatalf("%s: approval %s, want %s", kind, e.Approval, custos.ApprovalTenantAdmin)
		}
		wantNoMail(t, f, e.ID)
		_, _, err := f.vault.CreateKey(f.ctx, e.PrincipalID, custos.KeyRequest{})
		wantCode(t, "operator creating a key for its "+string(kind), err, custos.EFORBIDDEN)
		if kind == custos.KindTenantEditor {
			editor = e
		}
	}
	_, err := f.vault.Contacts(f.ctx, tenant, list, "", 50)
	wantCode(t, "operator paging contacts", err, custos.EFORBIDDEN)

	if _, err := f.vault.DecideEnrollment(admin, editor.ID, true); err != nil {
		t.Fatal(err)
	}
	p, err := f.vault.Contacts(f.enroll(t, editor), tenant, list, "", 50)
	if err != nil || len(p.Items) == 0 {
		t.Fatalf("the approved editor paging: %v", err)
	}
}

// Two-person rules rested on owner, a free-text label. Now they compare
// identities: principals with different owner labels, and addresses in
// another letter case or with a +tag, are one person, who approves
// nothing they asked for.
func TestOwnerLabelsDoNotMakeSecondPerson(t *testing.T) {
	f := newFixture(t)
	admin, tenant, _ := f.admin(t)
	supportOn(t, f, admin, tenant, false)
	sp := &custos.Principal{Kind: custos.KindStaffSupport, Name: "dana", Owner: "support-team", Identity: "dana@corp.test"}
	e, err := f.vault.CreatePrincipal(f.ctx, sp)
	if err != nil {
		t.Fatal(err)
	}
	staff := f.enroll(t, e)
	r := &custos.AccessRequest{TenantID: tenant, Reason: "bounces", Ticket: "SUP-9", Scope: custos.ScopeViewMasked, Duration: custos.Duration(time.Hour)}
	if err := f.vault.RequestAccess(staff, r); err != nil {
		t.Fatal(err)
	}
	var dana string // the pseudonym the three spellings share
	for _, c := range []struct{ owner, email string }{
		{"Dana Jones", "Dana@Corp.TEST"},
		{"tenant-ops", "dana+acme@corp.test"},
		{"DANA", "  DANA+Admin@CORP.test "},
	} {
		p := &custos.Principal{Kind: custos.KindTenantAdmin, TenantID: tenant, Name: "dana", Owner: c.owner, Identity: c.email}
		e, err := f.vault.CreatePrincipal(f.ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if dana == "" {
			dana = p.Identity
		}
		if p.Identity != dana || !strings.HasPrefix(p.Identity, "pe_") {
			t.Fatalf("%q stored as %q, want the one person's pseudonym %q", c.email, p.Identity, dana)
		}
		f.approvers.Settle(t, e) // the tenant's admin approves, not knowing
		wantMailTo(t, f, e.ID, "dana@corp.test")
		dana := f.enroll(t, e)
		_, err = f.vault.DecideRequest(dana, tenant, r.ID, vault.Decision{Approve: true})
		wantCode(t, "approval by "+c.email+" (owner "+c.owner+")", err, custos.EFORBIDDEN)
		wantDenied(t, f, custos.ActionRequestDecide, "same person")
		err = f.vault.CreateGrant(dana, &custos.Grant{TenantID: tenant, StaffID: sp.ID, Scope: custos.ScopeViewMasked}, time.Hour)
		wantCode(t, "direct grant by "+c.email, err, custos.EFORBIDDEN)
		wantDenied(t, f, custos.ActionGrantCreate, "same person")
	}
	if _, err := f.vault.DecideRequest(admin, tenant, r.ID, vault.Decision{Approve: true}); err != nil {
		t.Fatalf("another person approving: %v", err)
	}
}

// One operator approves his own support request through principals he
// minted. Now a principal at his own address is him, and one minted
// through it at another address is "created by" him: neither decides.
func TestOperatorCannotApproveOwnSupportRequest(t *testing.T) {
	f := newFixture(t)
	admin, tenant, _ := f.admin(t)
	supportOn(t, f, admin, tenant, false)
	staff := f.enroll(t, f.mustMint(t, f.ctx, custos.KindStaffSupport, "", "op+support@vendor.test", custos.EnrollIssued))
	sp := custos.PrincipalFromContext(staff)
	r := &custos.AccessRequest{TenantID: tenant, Reason: "bounces", Ticket: "SUP-10", Scope: custos.ScopeViewMasked, Duration: custos.Duration(time.Hour)}
	if err := f.vault.RequestAccess(staff, r); err != nil {
		t.Fatal(err)
	}

	// His tenant admin principal (the tenant's admin approved it, not knowing).
	e := f.mustMint(t, f.ctx, custos.KindTenantAdmin, tenant, "OP+acme@vendor.test", custos.EnrollPending)
	f.approvers.Settle(t, e)
	opAdmin := f.enroll(t, e)
	_, err := f.vault.DecideRequest(opAdmin, tenant, r.ID, vault.Decision{Approve: true})
	wantCode(t, "the operator approving his own request", err, custos.EFORBIDDEN)
	wantDenied(t, f, custos.ActionRequestDecide, "same person")

	// Through it, an admin at a mailbox nobody links to him.
	sock := f.enroll(t, f.mustMint(t, opAdmin, custos.KindTenantAdmin, tenant, "sock@elsewhere.test", custos.EnrollIssued))
	_, err = f.vault.DecideRequest(sock, tenant, r.ID, vault.Decision{Approve: true})
	wantCode(t, "a principal the requester minted approving", err, custos.EFORBIDDEN)
	wantDenied(t, f, custos.ActionRequestDecide, "approver was created by")
	err = f.vault.CreateGrant(sock, &custos.Grant{TenantID: tenant, StaffID: sp.ID, Scope: custos.ScopeViewMasked}, time.Hour)
	wantCode(t, "a principal the staff member minted granting", err, custos.EFORBIDDEN)

	if _, err := f.vault.DecideRequest(admin, tenant, r.ID, vault.Decision{Approve: true}); err != nil {
		t.Fatalf("the tenant's own admin approving: %v", err)
	}
}

// One operator opens break-glass with two "security staff" he created
// himself. Now the one privileged principal an operator may mint alone is
// the first (bootstrap) — even before it enrolls — so the second security
// identity, and so break-glass's second approval, needs someone else.
func TestBreakGlassNeedsTwoIndependentSecurityIdentities(t *testing.T) {
	f := newFixture(t)
	admin, tenant, list := f.admin(t)
	c := addContact(t, f, admin, tenant, list)
	supportOn(t, f, admin, tenant, true)
	staff, _ := f.principal(t, custos.KindStaffSupport, "", "sam")

	a := f.mustMint(t, f.ctx, custos.KindStaffSecurity, "", "ana@corp.test", custos.EnrollIssued)
	if a.Approval != vault.ApprovalBootstrap {
		t.Fatalf("the first security principal: approval %s, want %s", a.Approval, vault.ApprovalBootstrap)
	}
	// Ana has not enrolled yet: the exception is spent all the same.
	b := f.mustMint(t, f.ctx, custos.KindStaffSecurity, "", "ben@corp.test", custos.EnrollPending)
	if b.Approval != custos.ApprovalPrivileged {
		t.Fatalf("the second security principal: approval %s, want %s", b.Approval, custos.ApprovalPrivileged)
	}
	wantNoMail(t, f, b.ID)
	f.mustMint(t, f.ctx, custos.KindOperator, "", "otto@corp.test", custos.EnrollPending)
	f.mustMint(t, f.ctx, custos.KindStaffSecurity, "", "op+sec@vendor.test", custos.EnrollPending)
	_, err := f.vault.DecideEnrollment(f.ctx, b.ID, true)
	wantCode(t, "the operator approving his own security principal", err, custos.EFORBIDDEN)
	wantDenied(t, f, custos.ActionPrincipalDecide, "same person")

	ana := f.enroll(t, a)
	r := &custos.AccessRequest{TenantID: tenant, Reason: "outage", Ticket: "INC-1", Scope: custos.ScopeViewMaskedReveal, Duration: custos.Duration(time.Hour)}
	if err := f.vault.RequestBreakGlass(staff, r); err != nil {
		t.Fatal(err)
	}
	if _, g, err := f.vault.ApproveBreakGlass(ana, tenant, r.ID); err != nil || g != nil {
		t.Fatalf("one security approval: grant %v, %v; want none yet", g, err)
	}
	_, err = f.vault.Reveal(staff, tenant, c.Token, custos.ReasonDebugging, "INC-1: checking the reported bounce")
	wantCode(t, "reveal after one approval", err, custos.EFORBIDDEN)

	// With a second person's approval, Ben exists; with his, break-glass opens.
	if _, err := f.vault.DecideEnrollment(ana, b.ID, true); err != nil {
		t.Fatalf("ana approving ben: %v", err)
	}
	if _, g, err := f.vault.ApproveBreakGlass(f.enroll(t, b), tenant, r.ID); err != nil || g == nil {
		t.Fatalf("second security approval: grant %v, %v", g, err)
	}
	if _, err := f.vault.Reveal(staff, tenant, c.Token, custos.ReasonDebugging, "INC-1: checking the reported bounce"); err != nil {
		t.Fatalf("reveal under break-glass: %v", err)
	}
}

// After a canary alert contains him, he mints a security principal and
// lifts the containment. Now that principal waits for a second operator
// or security identity; and even approved, a lifter who is the contained
// person or its creator lifts nothing, resolves no alert, unfreezes no
// tenant. An independent security identity can.
func TestContainedOperatorCannotMintLifter(t *testing.T) {
	f := newFixture(t)
	ivy := f.secondPerson(t)
	admin, tenant, list := f.admin(t)
	c := addContact(t, f, admin, tenant, list)
	supportOn(t, f, admin, tenant, false)
	// The operator's support principal, at a mailbox of his own.
	staff := f.enroll(t, f.mustMint(t, f.ctx, custos.KindStaffSupport, "", "mal@elsewhere.test", custos.EnrollIssued))
	sp := custos.PrincipalFromContext(staff)
	if err := f.vault.CreateGrant(admin, &custos.Grant{TenantID: tenant, StaffID: sp.ID, Scope: custos.ScopeViewMaskedReveal, RevealBudget: 5}, time.Hour); err != nil {
		t.Fatal(err)
	}
	alert := f.contain(t, []string{sp.ID}, []string{tenant})

	// Alone, the lifter he mints never gets a key.
	asHim := f.mustMint(t, f.ctx, custos.KindStaffSecurity, "", "mal+sec@elsewhere.test", custos.EnrollPending)
	asOp := f.mustMint(t, f.ctx, custos.KindStaffSecurity, "", "op+sec@vendor.test", custos.EnrollPending)
	for _, e := range []*custos.Enrollment{asHim, asOp} {
		wantNoMail(t, f, e.ID)
		_, err := f.vault.DecideEnrollment(f.ctx, e.ID, true)
		wantCode(t, "the operator approving his lifter", err, custos.EFORBIDDEN)
	}

	// Approved by ivy, who did not know: the contained person's own
	// security principal, and one held by the contained principal's
	// creator, still lift nothing.
	for _, e := range []*custos.Enrollment{asHim, asOp} {
		f.approvers.Settle(t, e)
		lifter := f.enroll(t, e)
		who := custos.PrincipalFromContext(lifter).Identity
		wantCode(t, who+" lifting the suspension", f.vault.SetSuspended(lifter, sp.ID, false, "false positive"), custos.EFORBIDDEN)
		wantDenied(t, f, custos.ActionLift, "")
		wantCode(t, who+" lifting the freeze", f.vault.SetFrozen(lifter, tenant, false, "false positive"), custos.EFORBIDDEN)
		_, err := f.vault.UpdateAlert(lifter, alert, custos.AlertResolved, "false positive")
		wantCode(t, who+" resolving the alert", err, custos.EFORBIDDEN)
	}
	_, err := f.vault.Reveal(staff, tenant, c.Token, custos.ReasonDebugging, "x: checking the reported bounce")
	wantCode(t, "the contained principal revealing", err, custos.EFORBIDDEN)

	// An independent security identity lifts all three.
	if err := f.vault.SetSuspended(ivy, sp.ID, false, "reviewed"); err != nil {
		t.Fatalf("ivy lifting the suspension: %v", err)
	}
	if err := f.vault.SetFrozen(ivy, tenant, false, "reviewed"); err != nil {
		t.Fatalf("ivy lifting the freeze: %v", err)
	}
	if _, err := f.vault.UpdateAlert(ivy, alert, custos.AlertResolved, "reviewed"); err != nil {
		t.Fatalf("ivy resolving the alert: %v", err)
	}
}

// An enrollment secret works once, before it expires, for its own
// enrollment only; every refusal is a recorded entry that holds no secret.
func TestEnrollmentSecretRefusals(t *testing.T) {
	f := newFixture(t)
	e1 := f.mustMint(t, f.ctx, custos.KindStaffSupport, "", "sam@corp.test", custos.EnrollIssued)
	e2 := f.mustMint(t, f.ctx, custos.KindStaffSupport, "", "sue@corp.test", custos.EnrollIssued)
	s1, s2 := enrolltest.Secret(t, f.vault, e1.ID), enrolltest.Secret(t, f.vault, e2.ID)
	_, tag1, err := custos.ParseEnrollmentSecret(s1)
	if err != nil {
		t.Fatal(err)
	}
	flip := map[byte]byte{'a': 'b'}[s1[len(s1)-1]]
	if flip == 0 {
		flip = 'a'
	}
	refused := []struct{ name, secret string }{
		{"wrong tag", s1[:len(s1)-1] + string(flip)},
		{"another enrollment's tag", "cse_" + e2.ID + "_" + tag1},
		{"malformed", "cse_" + e1.ID},
	}
	for _, c := range refused {
		_, _, err := f.vault.Enroll(anonymous(), c.secret, custos.KeyRequest{})
		wantCode(t, c.name, err, custos.EUNAUTHORIZED)
		wantDenied(t, f, custos.ActionEnroll, "enrollment secret")
	}
	if _, _, err := f.vault.Enroll(anonymous(), s1, custos.KeyRequest{}); err != nil {
		t.Fatalf("the right secret: %v", err)
	}
	_, _, err = f.vault.Enroll(anonymous(), s1, custos.KeyRequest{})
	wantCode(t, "the secret a second time", err, custos.EUNAUTHORIZED)
	wantDenied(t, f, custos.ActionEnroll, "used")
	wantNoMail(t, f, e1.ID) // used: nothing to send again

	f.clock.Advance(vault.EnrollmentLifetime)
	_, _, err = f.vault.Enroll(anonymous(), s2, custos.KeyRequest{})
	wantCode(t, "an expired secret", err, custos.EUNAUTHORIZED)
	wantDenied(t, f, custos.ActionEnroll, "expired")
	wantNoMail(t, f, e2.ID)

	var denied, ok int
	for _, l := range leaves(t, f) {
		if l.Action != string(custos.ActionEnroll) {
			continue
		}
		if l.Outcome == audit.OutcomeOK {
			ok++
		} else {
			denied++
		}
	}
	if ok != 1 || denied != len(refused)+2 {
		t.Fatalf("enroll entries: %d ok, %d refused; want 1 and %d", ok, denied, len(refused)+2)
	}
}

// A database reader cannot get an enrollment secret: none is stored (not
// the secret, not its tag), and the key it is derived from is stored only
// wrapped — a vault over the same database with another KEK cannot
// compute it.
func TestDatabaseHoldsNoEnrollmentSecret(t *testing.T) {
	f := newFixture(t)
	admin, tenant, _ := f.admin(t)
	issued := f.mustMint(t, f.ctx, custos.KindStaffSupport, "", "sam@corp.test", custos.EnrollIssued)
	used := f.mustMint(t, admin, custos.KindTenantEditor, tenant, "ed@acme.test", custos.EnrollIssued)
	var secrets []string
	for _, e := range []*custos.Enrollment{issued, used} {
		secrets = append(secrets, enrolltest.Secret(t, f.vault, e.ID))
	}
	key := enrolltest.Key(t, f.vault, used.ID, custos.KeyRequest{})

	thief := vault.New(f.db.Read, f.db.Write, f.log, keys.NewKeyring(vaulttest.KEK(t)), vault.Options{Placeholders: f.db.Placeholders, Now: f.clock.Now})
	if mail, err := thief.EnrollmentMail(context.Background(), issued.ID); err == nil && mail != nil && strings.Contains(mail.Body, secrets[0]) {
		t.Fatal("a vault without the KEK computed the enrollment secret from the database")
	}

	f.log.Sync(context.Background())
	raw := storetest.Dump(t, f.db)
	for _, s := range secrets {
		_, tag, _ := custos.ParseEnrollmentSecret(s)
		if strings.Contains(raw, s) || strings.Contains(raw, tag) {
			t.Errorf("the database holds enrollment secret %s (or its tag)", s)
		}
	}
	if strings.Contains(raw, key) {
		t.Error("the database holds the enrolled key's secret")
	}
}

// A tenant with no admin left recovers only with a second operator, after
// RecoveryWait, the tenant told when it starts and when it is decided.
func TestTenantAdminRecovery(t *testing.T) {
	f := newFixture(t)
	ivy := f.secondPerson(t)
	otto, _ := f.principal(t, custos.KindOperator, "", "otto")
	_, tenant, _ := f.admin(t)
	var ap *custos.Principal
	for _, p := range mustPrincipals(t, f) {
		if p.TenantID == tenant && p.Kind == custos.KindTenantAdmin {
			ap = p
		}
	}
	if err := f.vault.SetSuspended(ivy, ap.ID, true, "lost laptop"); err != nil {
		t.Fatal(err)
	}

	_, err := f.mint(f.ctx, custos.KindTenantEditor, tenant, "ed@acme.test")
	wantCode(t, "an editor for a tenant without admin", err, custos.ECONFLICT)
	e := f.mustMint(t, f.ctx, custos.KindTenantAdmin, tenant, "new.admin@acme.test", custos.EnrollPending)
	if e.Approval != custos.ApprovalRecovery || e.NotBefore == nil || e.NotBefore.Sub(f.clock.Now()) < vault.RecoveryWait-time.Second {
		t.Fatalf("recovery enrollment %+v: want approval recovery, not before now + %s", e, vault.RecoveryWait)
	}
	if !told(t, f, "principal.enrollment", tenant, notify.ToTenantAdmins, true) {
		t.Fatal("the tenant was not told when the recovery started")
	}
	wantNoMail(t, f, e.ID)

	_, err = f.vault.DecideEnrollment(otto, e.ID, true)
	wantCode(t, "a second operator before the wait", err, custos.EFORBIDDEN)
	wantDenied(t, f, custos.ActionPrincipalDecide, "waiting period")
	f.clock.Advance(vault.RecoveryWait)
	_, err = f.vault.DecideEnrollment(f.ctx, e.ID, true)
	wantCode(t, "the requesting operator after the wait", err, custos.EFORBIDDEN)
	wantDenied(t, f, custos.ActionPrincipalDecide, "same person")
	_, err = f.vault.DecideEnrollment(ivy, e.ID, true)
	wantCode(t, "security staff deciding a recovery", err, custos.EFORBIDDEN)
	wantNoMail(t, f, e.ID)

	d, err := f.vault.DecideEnrollment(otto, e.ID, true)
	if err != nil || d.Status != custos.EnrollIssued {
		t.Fatalf("a second operator after the wait: %+v, %v", d, err)
	}
	if !told(t, f, "principal.enrollment.issued", tenant, notify.ToTenantAdmins, true) {
		t.Fatal("the tenant was not told of the recovery's approval")
	}
	wantMailTo(t, f, e.ID, "new.admin@acme.test")
	if _, err := f.vault.Lists(f.enroll(t, e), tenant); err != nil {
		t.Fatalf("the recovered admin: %v", err)
	}
}

func mustPrincipals(t *testing.T, f *fixture) []*custos.Principal {
	t.Helper()
	ps, err := f.vault.Principals(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// Neither what the creator gets back nor any audit entry or notification
// holds a usable secret or a holder's address — refusals of malformed
// addresses included.
func TestNoSecretOrAddressOutsideTheMail(t *testing.T) {
	f := newFixture(t)
	admin, tenant, _ := f.admin(t)
	addrs := []string{"op@vendor.test", "admin1@acme.test"}
	var es []*custos.Enrollment
	for _, c := range []struct {
		ctx   context.Context
		kind  custos.Kind
		tn    string
		email string
	}{
		{f.ctx, custos.KindStaffSupport, "", "sam.staff@corp.test"},
		{f.ctx, custos.KindStaffSecurity, "", "ivy.sec@corp.test"},
		{f.ctx, custos.KindTenantAdmin, tenant, "mallory@evil.test"},
		{admin, custos.KindService, tenant, "pipeline-team@acme.test"},
	} {
		e, err := f.mint(c.ctx, c.kind, c.tn, c.email)
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
		addrs = append(addrs, c.email)
	}
	for _, bad := range []string{"jane doe@gmail.com", "<jane@gmail.com>", "jane@gmail"} {
		_, err := f.mint(f.ctx, custos.KindStaffSupport, "", bad)
		wantCode(t, "a malformed address", err, custos.EINVALID)
	}
	addrs = append(addrs, "jane doe@gmail.com", "jane@gmail")
	rk, err := f.vault.Rekey(f.ctx, es[0].PrincipalID)
	if err != nil {
		t.Fatal(err)
	}
	es = append(es, rk)
	var secrets []string
	for _, e := range es {
		if b, _ := json.Marshal(e); strings.Contains(string(b), "cse_") || strings.Contains(string(b), "@") {
			t.Errorf("an enrollment response holds a secret or an address: %s", b)
		}
		if e.Status == custos.EnrollIssued {
			secrets = append(secrets, enrolltest.Secret(t, f.vault, e.ID))
		}
	}
	f.enroll(t, es[0])
	if len(secrets) < 3 {
		t.Fatalf("only %d issued enrollments to look for", len(secrets))
	}
	check := func(where, s string) {
		t.Helper()
		if strings.Contains(s, "cse_") {
			t.Errorf("%s holds an enrollment secret: %s", where, s)
		}
		for _, a := range addrs {
			if strings.Contains(strings.ToLower(s), a) {
				t.Errorf("%s holds the address %s: %s", where, a, s)
			}
		}
	}
	for i, l := range leaves(t, f) {
		b, _ := json.Marshal(l)
		check("audit entry "+string(rune('0'+i%10)), string(b))
	}
	for _, m := range outbox(t, f) {
		b, _ := json.Marshal(m)
		check("notification "+m.Topic, string(b))
	}
}

// addressOf is the address p's mails go to (its sealed identity, opened).
func addressOf(t *testing.T, f *fixture, p *custos.Principal) string {
	t.Helper()
	a, err := f.vault.AddressOf(context.Background(), p)
	if err != nil {
		t.Fatalf("address of %s: %v", p.ID, err)
	}
	return a
}
