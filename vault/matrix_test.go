package vault_test

import (
	"context"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/internal/lanes"
	"github.com/custos-dev/custos/notify"
	"github.com/custos-dev/custos/vault"
)

// world is an installation past bootstrap: two operators (op, otto), two
// security identities (ivy, ben), a tenant with its admin, a contact,
// support access and break-glass on, and a support staff member (sam).
type world struct {
	f                  *fixture
	op, otto, ivy, ben context.Context
	admin, staff       context.Context
	tenant, list       string
	contact            *custos.Contact
	sp, ap             *custos.Principal
	// before is the outbox's length when the action under test began.
	before int
}

// mark notes where the action under test begins: what a row's "told"
// column names must be announced after it, not by the row's setup.
func (w *world) mark(t *testing.T) {
	t.Helper()
	w.before = len(outbox(t, w.f))
}

func newWorld(t *testing.T) *world {
	t.Helper()
	f := newFixture(t)
	w := &world{f: f, op: f.ctx}
	w.ivy = f.secondPerson(t)
	w.otto, _ = f.principal(t, custos.KindOperator, "", "otto")
	w.ben, _ = f.principal(t, custos.KindStaffSecurity, "", "ben")
	w.admin, w.tenant, w.list = f.admin(t)
	w.ap = custos.PrincipalFromContext(w.admin)
	w.contact = addContact(t, f, w.admin, w.tenant, w.list)
	supportOn(t, f, w.admin, w.tenant, true)
	w.staff, w.sp = f.principal(t, custos.KindStaffSupport, "", "sam")
	return w
}

func (w *world) request() *custos.AccessRequest {
	return &custos.AccessRequest{TenantID: w.tenant, Reason: "bounces", Ticket: "SUP-1", Scope: custos.ScopeViewMaskedReveal, Duration: custos.Duration(time.Hour)}
}

// pending fails t unless e is waiting for a second party and its secret
// has gone nowhere.
func pending(t *testing.T, w *world, e *custos.Enrollment, err error) *custos.Enrollment {
	t.Helper()
	if err != nil || e.Status != custos.EnrollPending {
		t.Fatalf("enrollment %+v, %v: want it pending", e, err)
	}
	wantNoMail(t, w.f, e.ID)
	return e
}

// mintPending creates, as ctx, a principal that must wait for a second party.
func (w *world) mintPending(t *testing.T, ctx context.Context, kind custos.Kind, tenant, email string) *custos.Enrollment {
	t.Helper()
	e, err := w.f.mint(ctx, kind, tenant, email)
	return pending(t, w, e, err)
}

func refused(t *testing.T, what string, err error) {
	t.Helper()
	if c := custos.ErrorCode(err); c != custos.EFORBIDDEN && c != custos.EUNAUTHORIZED && c != custos.ECONFLICT {
		t.Fatalf("%s: err = %v, want a refusal", what, err)
	}
}

func ok(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// toldAll fails t unless the outbox, past w.before,
// holds a message for each recipient the row's "told" column names:
// "tenant admins", "security", and "the requester" or "the staff member"
// (a principal). A column starting with "—" or "as for" names none itself.
func toldAll(t *testing.T, w *world, told string) {
	t.Helper()
	if strings.HasPrefix(told, "—") || strings.HasPrefix(told, "as for") {
		return
	}
	got := map[string]bool{}
	ms := outbox(t, w.f)
	for _, m := range ms[min(w.before, len(ms)):] {
		for _, r := range m.To {
			got[r] = true
			if strings.HasPrefix(r, "principal:") {
				got["principal"] = true
			}
		}
	}
	for word, to := range map[string]string{"tenant admins": notify.ToTenantAdmins, "security": notify.ToStaffSecurity, "the requester": "principal", "the staff member": "principal"} {
		if strings.Contains(told, word) && !got[to] {
			t.Fatalf("%s not told (told %v)", word, got)
		}
	}
}

// matrix is the table of docs/design.md, "Who may do what, and who else
// must agree", row for row: the first four columns are the document's
// text, and TestNoSinglePersonMatrix fails if the two differ. alone is the
// insider trying it without the second party: it must be refused or left
// pending. with is the same action with the second party the row names
// (or by the one the row allows): it must succeed, and the row's "told"
// recipients must have a message.
var matrix = []struct {
	action, who, second, told string
	alone, with               func(t *testing.T, w *world)
}{
	{"create a tenant admin, editor or service (operator)", "operator", "one of the tenant's active admins approves", "tenant admins, security",
		func(t *testing.T, w *world) {
			for _, k := range []custos.Kind{custos.KindTenantAdmin, custos.KindTenantEditor, custos.KindService} {
				e := w.mintPending(t, w.op, k, w.tenant, "mallory@evil.test")
				_, err := w.f.vault.DecideEnrollment(w.op, e.ID, true)
				refused(t, "operator approving its own "+string(k), err)
			}
		},
		func(t *testing.T, w *world) {
			e := w.mintPending(t, w.op, custos.KindTenantEditor, w.tenant, "ed@acme.test")
			_, err := w.f.vault.DecideEnrollment(w.admin, e.ID, true)
			ok(t, "the tenant's admin approving", err)
		}},
	{"create a tenant admin, editor or service (tenant admin)", "a tenant admin, its own tenant only", "none: the tenant's admin is the tenant's consent; what it mints is never a second party to it", "tenant admins, security",
		func(t *testing.T, w *world) {
			f := w.f
			other, _, _ := f.admin(t)
			_, err := f.mint(other, custos.KindTenantEditor, w.tenant, "ed@acme.test")
			refused(t, "another tenant's admin", err)
			// What the admin mints does not approve for the admin.
			mine := f.enroll(t, f.mustMint(t, w.admin, custos.KindTenantAdmin, w.tenant, "sock@elsewhere.test", custos.EnrollIssued))
			e := w.mintPending(t, w.op, custos.KindTenantAdmin, w.tenant, "admin1+x@acme.test")
			_, err = f.vault.DecideEnrollment(mine, e.ID, true)
			refused(t, "a principal the beneficiary minted approving", err)
		},
		func(t *testing.T, w *world) {
			w.f.mustMint(t, w.admin, custos.KindTenantEditor, w.tenant, "ed@acme.test", custos.EnrollIssued)
		}},
	{"recover a tenant's admin (no active admin left)", "operator", "a second operator, after 72 h", "tenant admins, security",
		func(t *testing.T, w *world) {
			ok(t, "suspend the only admin", w.f.vault.SetSuspended(w.ivy, w.ap.ID, true, "left the company"))
			e := w.mintPending(t, w.op, custos.KindTenantAdmin, w.tenant, "new.admin@acme.test")
			_, err := w.f.vault.DecideEnrollment(w.otto, e.ID, true)
			refused(t, "a second operator before the wait", err)
			w.f.clock.Advance(vault.RecoveryWait)
			_, err = w.f.vault.DecideEnrollment(w.op, e.ID, true)
			refused(t, "the requesting operator", err)
		},
		func(t *testing.T, w *world) {
			ok(t, "suspend the only admin", w.f.vault.SetSuspended(w.ivy, w.ap.ID, true, "left the company"))
			w.mark(t)
			e := w.mintPending(t, w.op, custos.KindTenantAdmin, w.tenant, "new.admin@acme.test")
			w.f.clock.Advance(vault.RecoveryWait)
			_, err := w.f.vault.DecideEnrollment(w.otto, e.ID, true)
			ok(t, "a second operator after the wait", err)
		}},
	{"create an operator or security principal", "operator", "a second operator or security identity (only the very first, at bootstrap, is issued without one, announced high)", "security",
		func(t *testing.T, w *world) {
			for _, k := range []custos.Kind{custos.KindOperator, custos.KindStaffSecurity} {
				e := w.mintPending(t, w.op, k, "", "x@corp.test")
				_, err := w.f.vault.DecideEnrollment(w.op, e.ID, true)
				refused(t, "operator approving its own "+string(k), err)
			}
		},
		func(t *testing.T, w *world) {
			e := w.mintPending(t, w.op, custos.KindStaffSecurity, "", "x@corp.test")
			_, err := w.f.vault.DecideEnrollment(w.ivy, e.ID, true)
			ok(t, "a security identity approving", err)
		}},
	{"create a support staff principal", "operator", "none to exist; it reaches no data until a tenant grants it (below)", "security",
		func(t *testing.T, w *world) {
			staff := w.f.enroll(t, w.f.mustMint(t, w.op, custos.KindStaffSupport, "", "op+support@vendor.test", custos.EnrollIssued))
			_, err := w.f.vault.Reveal(staff, w.tenant, w.contact.Token, custos.ReasonDebugging, "x: checking the reported bounce")
			refused(t, "a new staff principal revealing", err)
		},
		func(t *testing.T, w *world) {
			w.f.mustMint(t, w.op, custos.KindStaffSupport, "", "sue@corp.test", custos.EnrollIssued)
		}},
	{"re-key a principal", "operator; a tenant admin for its own tenant", "as for creating it; the secret goes only to the holder's address", "as for creating it",
		func(t *testing.T, w *world) {
			e, err := w.f.vault.Rekey(w.op, w.ap.ID)
			pending(t, w, e, err)
			_, err = w.f.vault.DecideEnrollment(w.admin, e.ID, true)
			refused(t, "the holder approving its own re-key", err)
		},
		func(t *testing.T, w *world) {
			e2 := w.mintPending(t, w.op, custos.KindTenantAdmin, w.tenant, "second.admin@acme.test")
			w.f.approvers.Settle(t, e2)
			a2 := w.f.enroll(t, e2)
			w.mark(t)
			e, err := w.f.vault.Rekey(w.op, w.ap.ID)
			pending(t, w, e, err)
			_, err = w.f.vault.DecideEnrollment(a2, e.ID, true)
			ok(t, "another admin approving", err)
			wantMailTo(t, w.f, e.ID, addressOf(t, w.f, w.ap))
		}},
	{"approve or deny an enrollment", "the second party its approval names", "is itself that second party: a person other than the requester and the holder, created by neither", "tenant admins, security, the requester",
		func(t *testing.T, w *world) {
			e := w.mintPending(t, w.op, custos.KindStaffSecurity, "", "ivy+2@corp.test")
			_, err := w.f.vault.DecideEnrollment(w.ivy, e.ID, true)
			refused(t, "the holder approving its own enrollment", err)
		},
		func(t *testing.T, w *world) {
			e := w.mintPending(t, w.op, custos.KindTenantAdmin, w.tenant, "ann@acme.test")
			w.mark(t)
			_, err := w.f.vault.DecideEnrollment(w.admin, e.ID, true)
			ok(t, "the tenant's admin approving", err)
		}},
	{"enroll (set up the first key)", "the holder, with the one-time secret mailed to its address", "none: the mailbox is the proof; the creator never holds the secret", "security; tenant admins for a tenant's principal",
		func(t *testing.T, w *world) {
			e := w.f.mustMint(t, w.op, custos.KindStaffSupport, "", "sue@corp.test", custos.EnrollIssued)
			_, _, err := w.f.vault.Enroll(anonymous(), custos.EnrollmentSecret(e.ID, make([]byte, 20)), custos.KeyRequest{})
			refused(t, "enrolling without the mail", err)
		},
		func(t *testing.T, w *world) {
			e := w.f.mustMint(t, w.admin, custos.KindTenantEditor, w.tenant, "ed@acme.test", custos.EnrollIssued)
			w.mark(t)
			w.f.enroll(t, e)
		}},
	{"create an extra key", "the principal itself, with no scope its key lacks", "none; nobody creates a key for another principal", "security",
		func(t *testing.T, w *world) {
			_, _, err := w.f.vault.CreateKey(w.op, w.sp.ID, custos.KeyRequest{})
			refused(t, "operator creating a staff member's key", err)
		},
		func(t *testing.T, w *world) {
			_, _, err := w.f.vault.CreateKey(w.staff, w.sp.ID, custos.KeyRequest{})
			ok(t, "staff creating its own key", err)
		}},
	{"create a tenant", "operator", "none: no data yet; its first admin enrolls at the tenant's registered address", "security, tenant admins",
		func(t *testing.T, w *world) {
			tn := &custos.Tenant{Name: "Initech"}
			e, err := w.f.vault.CreateTenant(w.op, tn, "owner@initech.test")
			ok(t, "create tenant", err)
			wantMailTo(t, w.f, e.ID, "owner@initech.test")
			_, err = w.f.vault.Lists(w.op, tn.ID)
			refused(t, "the operator reading the new tenant", err)
		},
		func(t *testing.T, w *world) {
			tn := &custos.Tenant{Name: "Initech"}
			e, err := w.f.vault.CreateTenant(w.op, tn, "owner@initech.test")
			ok(t, "create tenant", err)
			_, err = w.f.vault.Lists(w.f.enroll(t, e), tn.ID)
			ok(t, "its admin reading it", err)
		}},
	{"change support-access settings", "a tenant admin, its own tenant", "none: the setting is the tenant's consent; staff still need a grant", "tenant admins, security",
		func(t *testing.T, w *world) {
			s := &custos.SupportSettings{SupportAccess: true, BreakGlass: true, MaxGrant: custos.Duration(24 * time.Hour)}
			refused(t, "operator", w.f.vault.SetSupportSettings(w.op, w.tenant, s))
			refused(t, "staff", w.f.vault.SetSupportSettings(w.staff, w.tenant, s))
			refused(t, "security", w.f.vault.SetSupportSettings(w.ivy, w.tenant, s))
		},
		func(t *testing.T, w *world) {
			ok(t, "the admin", w.f.vault.SetSupportSettings(w.admin, w.tenant, &custos.SupportSettings{SupportAccess: true, MaxGrant: custos.Duration(time.Hour)}))
		}},
	{"request support access", "support staff", "a tenant admin decides; nothing until then", "tenant admins",
		func(t *testing.T, w *world) {
			ok(t, "request", w.f.vault.RequestAccess(w.staff, w.request()))
			_, err := w.f.vault.SupportContacts(w.staff, w.tenant, w.list, "", 10)
			refused(t, "staff reading with a pending request", err)
		},
		func(t *testing.T, w *world) {
			ok(t, "request", w.f.vault.RequestAccess(w.staff, w.request()))
		}},
	{"decide an access request", "a tenant admin", "is itself the second party: not the requester's person, not created by it", "the requester, security",
		func(t *testing.T, w *world) {
			r := w.request()
			ok(t, "request", w.f.vault.RequestAccess(w.staff, r))
			e := w.mintPending(t, w.op, custos.KindTenantAdmin, w.tenant, "SAM+acme@corp.test")
			w.f.approvers.Settle(t, e)
			_, err := w.f.vault.DecideRequest(w.f.enroll(t, e), w.tenant, r.ID, vault.Decision{Approve: true})
			refused(t, "the requester's own admin principal", err)
		},
		func(t *testing.T, w *world) {
			r := w.request()
			ok(t, "request", w.f.vault.RequestAccess(w.staff, r))
			w.mark(t)
			_, err := w.f.vault.DecideRequest(w.admin, w.tenant, r.ID, vault.Decision{Approve: true})
			ok(t, "the tenant's admin", err)
		}},
	{"grant support access directly", "a tenant admin", "is itself the second party: not the staff member's person, not created by it", "the staff member, security",
		func(t *testing.T, w *world) {
			e := w.mintPending(t, w.op, custos.KindTenantAdmin, w.tenant, "sam@corp.test")
			w.f.approvers.Settle(t, e)
			err := w.f.vault.CreateGrant(w.f.enroll(t, e), &custos.Grant{TenantID: w.tenant, StaffID: w.sp.ID, Scope: custos.ScopeViewMasked}, time.Hour)
			refused(t, "a grant to oneself", err)
		},
		func(t *testing.T, w *world) {
			ok(t, "the tenant's admin", w.f.vault.CreateGrant(w.admin, &custos.Grant{TenantID: w.tenant, StaffID: w.sp.ID, Scope: custos.ScopeViewMasked}, time.Hour))
		}},
	{"open break-glass", "support staff asks; security approves", "two security identities, other than the requester, neither the other nor created by the other; the tenant must allow it", "security; tenant admins when granted",
		func(t *testing.T, w *world) {
			r := w.request()
			ok(t, "request", w.f.vault.RequestBreakGlass(w.staff, r))
			_, g, err := w.f.vault.ApproveBreakGlass(w.ivy, w.tenant, r.ID)
			if err != nil || g != nil {
				t.Fatalf("one approval: grant %v, %v; want none", g, err)
			}
			ivy2 := w.mintPending(t, w.op, custos.KindStaffSecurity, "", "IVY+2@corp.test")
			w.f.approvers.Settle(t, ivy2)
			_, _, err = w.f.vault.ApproveBreakGlass(w.f.enroll(t, ivy2), w.tenant, r.ID)
			refused(t, "the same person approving twice", err)
		},
		func(t *testing.T, w *world) {
			r := w.request()
			ok(t, "request", w.f.vault.RequestBreakGlass(w.staff, r))
			_, _, err := w.f.vault.ApproveBreakGlass(w.ivy, w.tenant, r.ID)
			ok(t, "first approval", err)
			_, g, err := w.f.vault.ApproveBreakGlass(w.ben, w.tenant, r.ID)
			if err != nil || g == nil {
				t.Fatalf("second approval: %v, %v", g, err)
			}
		}},
	{"reveal a contact", "support staff", "the tenant's live grant (request decided, direct grant or break-glass), with a reason, within its budget", "— (the tenant's log and reveal register)",
		func(t *testing.T, w *world) {
			_, err := w.f.vault.Reveal(w.staff, w.tenant, w.contact.Token, custos.ReasonDebugging, "x: checking the reported bounce")
			refused(t, "reveal without a grant", err)
		},
		func(t *testing.T, w *world) {
			ok(t, "grant", w.f.vault.CreateGrant(w.admin, &custos.Grant{TenantID: w.tenant, StaffID: w.sp.ID, Scope: custos.ScopeViewMaskedReveal, RevealBudget: 1}, time.Hour))
			_, err := w.f.vault.Reveal(w.staff, w.tenant, w.contact.Token, custos.ReasonDebugging, "x: checking the reported bounce")
			ok(t, "reveal under the grant", err)
		}},
	{"export a list", "a tenant admin, its own tenant, not frozen", "none for the tenant's own admin; an admin an operator minted exists only with an admin's approval (first row)", "— (the tenant's log; detection of an export soon after enrolling)",
		func(t *testing.T, w *world) {
			for _, ctx := range []context.Context{w.op, w.staff, w.ivy} {
				_, err := exportCount(ctx, w.f, w.tenant, w.list)
				refused(t, custos.PrincipalFromContext(ctx).Identity+" exporting", err)
			}
		},
		func(t *testing.T, w *world) {
			_, err := exportCount(w.admin, w.f, w.tenant, w.list)
			ok(t, "the admin exporting", err)
		}},
	{"suspend a principal, freeze a tenant", "security (or the detector)", "none: it only takes power away", "security; tenant admins for a freeze",
		func(t *testing.T, w *world) {
			refused(t, "operator suspending", w.f.vault.SetSuspended(w.op, w.sp.ID, true, "x"))
			refused(t, "admin freezing", w.f.vault.SetFrozen(w.admin, w.tenant, true, "x"))
		},
		func(t *testing.T, w *world) {
			ok(t, "suspend", w.f.vault.SetSuspended(w.ivy, w.sp.ID, true, "x"))
			ok(t, "freeze", w.f.vault.SetFrozen(w.ivy, w.tenant, true, "x"))
		}},
	{"lift a suspension", "security", "is itself the second party: not the contained person, not its creator, not created by it", "security",
		func(t *testing.T, w *world) {
			benStaff := w.f.enroll(t, w.f.mustMint(t, w.op, custos.KindStaffSupport, "", "ben+support@corp.test", custos.EnrollIssued))
			id := custos.PrincipalFromContext(benStaff).ID
			w.f.contain(t, []string{id}, nil)
			refused(t, "the contained person lifting", w.f.vault.SetSuspended(w.ben, id, false, "x"))
		},
		func(t *testing.T, w *world) {
			benStaff := w.f.enroll(t, w.f.mustMint(t, w.op, custos.KindStaffSupport, "", "ben+support@corp.test", custos.EnrollIssued))
			id := custos.PrincipalFromContext(benStaff).ID
			w.f.contain(t, []string{id}, nil)
			w.mark(t)
			ok(t, "another security identity lifting", w.f.vault.SetSuspended(w.ivy, id, false, "x"))
		}},
	{"lift a freeze", "security", "as for a suspension, against every principal the freezing alert names", "tenant admins, security",
		func(t *testing.T, w *world) {
			benStaff := w.f.enroll(t, w.f.mustMint(t, w.op, custos.KindStaffSupport, "", "ben+support@corp.test", custos.EnrollIssued))
			w.f.contain(t, []string{custos.PrincipalFromContext(benStaff).ID}, []string{w.tenant})
			refused(t, "the contained person unfreezing", w.f.vault.SetFrozen(w.ben, w.tenant, false, "x"))
		},
		func(t *testing.T, w *world) {
			benStaff := w.f.enroll(t, w.f.mustMint(t, w.op, custos.KindStaffSupport, "", "ben+support@corp.test", custos.EnrollIssued))
			w.f.contain(t, []string{custos.PrincipalFromContext(benStaff).ID}, []string{w.tenant})
			w.mark(t)
			ok(t, "another security identity unfreezing", w.f.vault.SetFrozen(w.ivy, w.tenant, false, "x"))
		}},
	{"acknowledge or resolve an alert", "security", "as for a suspension, against every principal the alert names", "security",
		func(t *testing.T, w *world) {
			benStaff := w.f.enroll(t, w.f.mustMint(t, w.op, custos.KindStaffSupport, "", "ben+support@corp.test", custos.EnrollIssued))
			a := w.f.contain(t, []string{custos.PrincipalFromContext(benStaff).ID}, nil)
			_, err := w.f.vault.UpdateAlert(w.ben, a, custos.AlertResolved, "x")
			refused(t, "the alert's subject resolving it", err)
		},
		func(t *testing.T, w *world) {
			benStaff := w.f.enroll(t, w.f.mustMint(t, w.op, custos.KindStaffSupport, "", "ben+support@corp.test", custos.EnrollIssued))
			a := w.f.contain(t, []string{custos.PrincipalFromContext(benStaff).ID}, nil)
			w.mark(t)
			_, err := w.f.vault.UpdateAlert(w.ivy, a, custos.AlertResolved, "x")
			ok(t, "another security identity resolving", err)
		}},
	{"revoke keys from the review", "operator", "none: it only takes power away", "— (the log)",
		func(t *testing.T, w *world) {
			_, err := w.f.vault.RevokeKeys(w.ivy, []string{custos.RequestFromContext(w.staff).Key.ID})
			refused(t, "security revoking", err)
		},
		func(t *testing.T, w *world) {
			_, err := w.f.vault.RevokeKeys(w.op, []string{custos.RequestFromContext(w.staff).Key.ID})
			ok(t, "operator revoking", err)
		}},
	{"send mail to contact tokens (the relay)", "a service or tenant admin key with the send scope, its own tenant (one list with send:ls_…)", "none per message: one leaf per recipient; canaries delivered like contacts, the trap knowing the relay's own copy; detection of new lists, cross-tenant templates and volume spikes", "— (the tenant's log)",
		func(t *testing.T, w *world) {
			up := w.upstream(t)
			for name, ctx := range map[string]context.Context{"operator": w.op, "security": w.ivy, "support staff": w.staff} {
				_, err := w.f.vault.Send(ctx, w.outgoing(up))
				refused(t, name+" sending", err)
			}
		},
		func(t *testing.T, w *world) {
			up := w.upstream(t)
			w.mark(t)
			ds, err := w.f.vault.Send(w.admin, w.outgoing(up))
			ok(t, "the tenant's admin sending", err)
			if ds[0].To != w.contact.Email {
				t.Fatalf("delivery %+v", ds[0])
			}
		}},
	{"point the relay at a new upstream", "whoever runs the server (custos.json)", "a security staff member approves it before any recipient is resolved for it", "security",
		func(t *testing.T, w *world) {
			up := custos.NewID(custos.PrefixUpstream)
			if _, err := w.f.vault.RegisterUpstream(context.Background(), up, "198.51.100.9:25 none"); err != nil {
				t.Fatal(err)
			}
			for name, ctx := range map[string]context.Context{"operator": w.op, "second operator": w.otto, "tenant admin": w.admin} {
				refused(t, name+" approving", w.f.vault.ApproveUpstream(ctx, up))
			}
			if _, err := w.f.vault.Send(w.admin, w.outgoing(up)); custos.ErrorCode(err) != custos.EUNAVAILABLE {
				t.Fatalf("send through an unapproved upstream: %v", err)
			}
		},
		func(t *testing.T, w *world) {
			up := custos.NewID(custos.PrefixUpstream)
			if _, err := w.f.vault.RegisterUpstream(context.Background(), up, "198.51.100.9:25 none"); err != nil {
				t.Fatal(err)
			}
			w.mark(t)
			ok(t, "security approving", w.f.vault.ApproveUpstream(w.ivy, up))
			_, err := w.f.vault.Send(w.admin, w.outgoing(up))
			ok(t, "send after approval", err)
		}},
	{"read trapped evidence", "security", "none: recorded", "— (the log)",
		func(t *testing.T, w *world) {
			id := w.trap(t)
			for name, ctx := range map[string]context.Context{"operator": w.op, "tenant admin": w.admin, "support staff": w.staff} {
				_, _, err := w.f.vault.Evidence(ctx, id)
				refused(t, name+" reading evidence", err)
			}
		},
		func(t *testing.T, w *world) {
			id := w.trap(t)
			w.mark(t)
			_, _, err := w.f.vault.Evidence(w.ivy, id)
			ok(t, "security reading evidence", err)
			if l := lastLeaf(t, w.f, custos.ActionEvidenceRead); !strings.Contains(l, id) {
				t.Fatalf("evidence read not recorded: %s", l)
			}
		}},
	{"delete a tenant (offboarding)", "a tenant admin, its own tenant", "none: the tenant's own decision; it is due after a grace period (default 72 h) in which any of its admins may cancel", "tenant admins, security",
		func(t *testing.T, w *world) {
			for name, ctx := range map[string]context.Context{"support staff": w.staff, "security": w.ivy} {
				_, err := w.f.vault.RequestTenantDeletion(ctx, w.tenant, &custos.DeletionRequest{})
				refused(t, name+" deleting a tenant", err)
			}
			d, err := w.f.vault.RequestTenantDeletion(w.admin, w.tenant, &custos.DeletionRequest{})
			ok(t, "the admin scheduling", err)
			waitLeader(t, w.f.log)
			if n, err := w.f.vault.RunDueDeletions(context.Background(), d.DueAt.Add(-time.Minute)); err != nil || n != 0 {
				t.Fatalf("deletions run before the grace period ended: %d, %v", n, err)
			}
			_, err = w.f.vault.CancelTenantDeletion(w.admin, w.tenant)
			ok(t, "an admin cancelling in the grace period", err)
			waitLeader(t, w.f.log)
			if n, err := w.f.vault.RunDueDeletions(context.Background(), d.DueAt.Add(time.Hour)); err != nil || n != 0 {
				t.Fatalf("a cancelled deletion ran: %d, %v", n, err)
			}
		},
		func(t *testing.T, w *world) {
			d, err := w.f.vault.RequestTenantDeletion(w.admin, w.tenant, &custos.DeletionRequest{})
			ok(t, "the admin scheduling", err)
			waitLeader(t, w.f.log)
			if n, err := w.f.vault.RunDueDeletions(context.Background(), d.DueAt.Add(time.Second)); err != nil || n != 1 {
				t.Fatalf("the due deletion: %d, %v", n, err)
			}
		}},
	{"delete a tenant (contract end)", "operator", "a second operator approves: not the requester's person, not created by it", "tenant admins, security",
		func(t *testing.T, w *world) {
			d, err := w.f.vault.RequestTenantDeletion(w.op, w.tenant, &custos.DeletionRequest{})
			ok(t, "an operator requesting", err)
			if d.Status != custos.DeletionAwaitingApproval {
				t.Fatalf("an operator's deletion is %s, want it awaiting a second operator", d.Status)
			}
			_, err = w.f.vault.ApproveTenantDeletion(w.op, w.tenant)
			refused(t, "the requester approving", err)
			_, err = w.f.vault.ApproveTenantDeletion(w.ivy, w.tenant)
			refused(t, "security approving", err)
			waitLeader(t, w.f.log)
			if n, err := w.f.vault.RunDueDeletions(context.Background(), time.Now().Add(365*24*time.Hour)); err != nil || n != 0 {
				t.Fatalf("an unapproved deletion ran: %d, %v", n, err)
			}
		},
		func(t *testing.T, w *world) {
			_, err := w.f.vault.RequestTenantDeletion(w.op, w.tenant, &custos.DeletionRequest{})
			ok(t, "an operator requesting", err)
			w.mark(t)
			d, err := w.f.vault.ApproveTenantDeletion(w.otto, w.tenant)
			ok(t, "a second operator approving", err)
			if d.Status != custos.DeletionScheduled || d.DueAt == nil {
				t.Fatalf("approved deletion %+v", d)
			}
		}},
	{"report a blast radius", "security", "none: recorded; it reads the log, not tenant data", "— (the log)",
		func(t *testing.T, w *world) {
			for name, ctx := range map[string]context.Context{"operator": w.op, "tenant admin": w.admin, "support staff": w.staff} {
				_, err := w.f.vault.BlastRadius(ctx, custos.BlastQuery{Principal: w.sp.ID})
				refused(t, name+" reporting a blast radius", err)
			}
		},
		func(t *testing.T, w *world) {
			_, err := w.f.vault.BlastRadius(w.ivy, custos.BlastQuery{Principal: w.sp.ID})
			ok(t, "security reporting", err)
			if l := lastLeaf(t, w.f, custos.ActionBlastRadius); !strings.Contains(l, w.sp.ID) {
				t.Fatalf("the report is not recorded with its subject: %s", l)
			}
		}},
	{"change the configuration (sinks, rules, relay)", "whoever runs the server", "none inside custos: its hash is logged at every start (the relay's upstream: see the row above)", "security",
		func(t *testing.T, w *world) {
			ok(t, "record", w.f.vault.RecordConfig(context.Background(), "0123abcd"))
			if l := lastLeaf(t, w.f, custos.ActionConfigLoaded); !strings.Contains(l, "0123abcd") {
				t.Fatalf("the configuration's hash is not in the log: %s", l)
			}
		},
		func(t *testing.T, w *world) {
			ok(t, "record", w.f.vault.RecordConfig(context.Background(), "0123abcd"))
		}},
}

// upstream registers a relay upstream and has security approve it.
func (w *world) upstream(t *testing.T) string {
	t.Helper()
	up := custos.NewID(custos.PrefixUpstream)
	if _, err := w.f.vault.RegisterUpstream(context.Background(), up, "mta.vendor.test:587 starttls"); err != nil {
		t.Fatal(err)
	}
	ok(t, "approve upstream", w.f.vault.ApproveUpstream(w.ben, up))
	return up
}

// outgoing is a message to the world's contact through upstream up.
func (w *world) outgoing(up string) *vault.Outgoing {
	return &vault.Outgoing{Tenant: w.tenant, Upstream: up, Tokens: []string{w.contact.Token}, Render: render}
}

// trap has mail reach a canary of an export of the world's list and
// returns the evidence id.
func (w *world) trap(t *testing.T) string {
	t.Helper()
	var canary string
	err := w.f.vault.Export(w.admin, w.tenant, w.list, "csv", func(c *custos.Contact) error {
		if k, _ := w.f.vault.Inbound(context.Background(), c.Email); k == vault.InboundCanary {
			canary = c.Email
		}
		return nil
	})
	ok(t, "export", err)
	ev := &custos.TrapEvidence{ID: custos.NewID(custos.PrefixEvidence), RemoteIP: "198.51.100.7", HELO: "bad.test", MailFrom: "x@bad.test"}
	if _, err := w.f.vault.CanaryMail(context.Background(), canary, ev, []byte("Subject: hi\r\n\r\nhi\r\n")); err != nil {
		t.Fatal(err)
	}
	return ev.ID
}

// TestNoSinglePersonMatrix runs every row of the matrix in docs/design.md:
// alone, the insider is refused or left pending; with the row's second
// party, the action goes through and the row's recipients are told.
func TestNoSinglePersonMatrix(t *testing.T) {
	doc := matrixInDoc(t)
	if len(doc) != len(matrix) {
		t.Errorf("docs/design.md's matrix has %d rows, the test %d", len(doc), len(matrix))
	}
	// Each world is its own database, mostly waiting on the log: rows run
	// side by side, more than -parallel would allow (internal/lanes).
	var rows []lanes.Case
	for i, row := range matrix {
		if i < len(doc) && doc[i] != [4]string{row.action, row.who, row.second, row.told} {
			t.Errorf("row %d differs from docs/design.md:\n doc  %q\n test %q", i+1, doc[i], [4]string{row.action, row.who, row.second, row.told})
		}
		rows = append(rows, lanes.Case{Name: strings.ReplaceAll(row.action, " ", "_"), Test: func(t *testing.T) {
			t.Run("alone", func(t *testing.T) { row.alone(t, newWorld(t)) })
			t.Run("with", func(t *testing.T) {
				w := newWorld(t)
				w.mark(t)
				row.with(t, w)
				toldAll(t, w, row.told)
			})
		}})
	}
	lanes.Run(t, 4*runtime.GOMAXPROCS(0), rows)
}

// matrixInDoc reads the table under "Who may do what, and who else must
// agree" in docs/design.md: one [action, who, second party, told] per row.
func matrixInDoc(t *testing.T) [][4]string {
	t.Helper()
	b, err := os.ReadFile("../docs/design.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, found := strings.Cut(string(b), "\n## Who may do what, and who else must agree\n")
	if !found {
		t.Fatal(`docs/design.md has no section "Who may do what, and who else must agree"`)
	}
	if i := strings.Index(sec, "\n## "); i >= 0 {
		sec = sec[:i]
	}
	var rows [][4]string
	for _, line := range strings.Split(sec, "\n") {
		if !strings.HasPrefix(line, "| ") || strings.HasPrefix(line, "| action ") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		if len(cells) != 4 {
			t.Fatalf("matrix row with %d cells: %s", len(cells), line)
		}
		var r [4]string
		for i, c := range cells {
			r[i] = strings.TrimSpace(c)
		}
		rows = append(rows, r)
	}
	return rows
}

// waitLeader waits until log sequences (queued mode: only the leader runs
// deletions, and RunDueDeletions on another node returns 0 without error —
// which would make a "nothing ran" check pass for the wrong reason).
func waitLeader(t *testing.T, log interface{ IsLeader() bool }) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !log.IsLeader(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the log did not become the leader")
		}
	}
}
