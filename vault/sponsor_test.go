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
)

// Issue 20, one person behind several accounts: a principal enrolled on
// someone's approval is that person's sponsored principal. The first
// approval that issues it a key records the approver's identity on its
// row, under the row's MAC; an approval it later gives for its sponsor
// (or its sponsor for it) goes through but its entry says so, which the
// detector's approval-by-sponsored rule turns into an alert.

// TestSponsoredApprovalMarked: security engineer Ana approves the
// enrollment of "Ben", a second security identity at a mailbox she could
// hold. Ben's row names Ana as its sponsor (kept by the first approval,
// not moved by a later one). When Ana and Ben are the two approvals of one
// break-glass request, the second approval's entry is marked; two
// approvals by unrelated people are not. A sponsor cleared by a hand in
// the database breaks Ben's row MAC: his key stops working.
func TestSponsoredApprovalMarked(t *testing.T) {
	f := newFixture(t)
	admin, tenant, _ := f.admin(t)
	supportOn(t, f, admin, tenant, true)
	staff, _ := f.principal(t, custos.KindStaffSupport, "", "sam")
	ana := f.enroll(t, f.mustMint(t, f.ctx, custos.KindStaffSecurity, "", "ana@corp.test", custos.EnrollIssued)) // bootstrap: no sponsor
	anaP := custos.PrincipalFromContext(ana)
	if anaP.SponsorIdentity != "" {
		t.Fatalf("a principal enrolled without an approval has sponsor %q", anaP.SponsorIdentity)
	}
	e := f.mustMint(t, f.ctx, custos.KindStaffSecurity, "", "ben@elsewhere.test", custos.EnrollPending)
	if _, err := f.vault.DecideEnrollment(ana, e.ID, true); err != nil {
		t.Fatalf("ana approving ben: %v", err)
	}
	var pl audit.Leaf
	if err := json.Unmarshal([]byte(lastLeaf(t, f, custos.ActionPrincipalDecide)), &pl); err != nil || strings.Contains(pl.Detail, "sponsored") {
		t.Fatalf("the sponsoring approval itself is marked: %q %v", pl.Detail, err)
	}
	benKey := enrolltest.Key(t, f.vault, e.ID, custos.KeyRequest{ExpiresIn: "never"})
	ben := f.as(t, benKey)
	benP := custos.PrincipalFromContext(ben)
	if benP.SponsorIdentity != anaP.Identity || !benP.SponsoredByHolderOf(anaP) {
		t.Fatalf("ben's sponsor %q, want ana's identity %q", benP.SponsorIdentity, anaP.Identity)
	}

	breakGlass := func(first, second context.Context) string {
		t.Helper()
		r := &custos.AccessRequest{TenantID: tenant, Reason: "outage", Ticket: "INC-7", Scope: custos.ScopeViewMasked, Duration: custos.Duration(time.Hour)}
		if err := f.vault.RequestBreakGlass(staff, r); err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.vault.ApproveBreakGlass(first, tenant, r.ID); err != nil {
			t.Fatal(err)
		}
		if _, g, err := f.vault.ApproveBreakGlass(second, tenant, r.ID); err != nil || g == nil {
			t.Fatalf("the second approval: grant %v, %v", g, err)
		}
		var l audit.Leaf
		if err := json.Unmarshal([]byte(lastLeaf(t, f, custos.ActionBreakGlassOK)), &l); err != nil {
			t.Fatal(err)
		}
		if g, err := f.vault.Grants(admin, tenant); err == nil {
			for _, x := range g {
				if x.Status == custos.GrantActive {
					if _, err := f.vault.RevokeGrant(admin, tenant, x.ID); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		return l.Detail
	}
	if d := breakGlass(ana, ben); !strings.Contains(d, "the approver was sponsored by the beneficiary") {
		t.Fatalf("ana and ben (sponsored by her) opened break-glass, unmarked: %q", d)
	}
	f.approvers.Add(ben)
	ivy := f.secondPerson(t) // another security engineer, approved by ben: unrelated to ana
	if d := breakGlass(ana, ivy); strings.Contains(d, "sponsored") {
		t.Fatalf("two unrelated approvers marked: %q", d)
	}

	f.exec(t, `UPDATE principals SET sponsor_identity = NULL WHERE id = $1`, benP.ID)
	if err := f.authenticate(benKey); custos.ErrorCode(err) != custos.EUNAUTHORIZED {
		t.Fatalf("ben's key after a hand cleared his sponsor: %v, want EUNAUTHORIZED", err)
	}
	f.integrityAlerted(t, "principals", benP.ID)
}
