package vault_test

import (
	"context"
	"strings"
	"testing"

	"github.com/custos-dev/custos"
)

// A security engineer's free-text freeze reason must not reach audit
// leaves or the errors returned to staff and tenants.
func TestFreezeReasonStaysOutOfLeaves(t *testing.T) {
	f := newFixture(t)
	admin, staff, tenant, list, tokens, _ := grantedStaff(t, f, custos.ScopeViewMaskedReveal, 2)
	sec, _ := f.principal(t, custos.KindStaffSecurity, "", "sec")
	const pii = "leak of jane.doe@gmail.com found on pastebin"
	if err := f.vault.SetFrozen(sec, tenant, true, pii); err != nil {
		t.Fatal(err)
	}
	_, rerr := f.vault.Reveal(staff, tenant, tokens[0], custos.ReasonDebugging, "x: checking the reported bounce")
	eerr := f.vault.Export(admin, tenant, list, "csv", func(*custos.Contact) error { return nil })
	for what, err := range map[string]error{"reveal": rerr, "export": eerr} {
		if custos.ErrorCode(err) != custos.EFORBIDDEN || !strings.Contains(custos.ErrorMessage(err), "frozen") {
			t.Errorf("%s of a frozen tenant: %v, want a forbidden error saying the tenant is frozen", what, err)
			continue
		}
		if strings.Contains(err.Error(), "jane.doe") || strings.Contains(custos.ErrorMessage(err), "jane.doe") {
			t.Errorf("error returned to caller holds the free-text reason: %q", custos.ErrorMessage(err))
		}
	}
	if leaf := lastLeaf(t, f, custos.ActionContactExport); !strings.Contains(leaf, `"outcome":"denied"`) || strings.Contains(leaf, `"count"`) {
		t.Errorf("the refused export's leaf: %s (want a denial counting nothing)", leaf)
	}
	// The reason is kept, sealed, in containment_actions (security staff
	// read it in the list of containments), and not in a leaf.
	var kept string
	if err := f.db.Read.QueryRow(`SELECT reason FROM containment_actions WHERE target = $1 AND action = 'containment.apply'`, tenant).Scan(&kept); err != nil || strings.Contains(kept, "jane.doe") || kept == "" {
		t.Errorf("the freeze's reason was not kept sealed: %q, %v", kept, err)
	}
	cs, err := f.vault.Containments(sec)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].Target != tenant || cs[0].Reason != pii {
		t.Errorf("containments %+v, want the freeze of %s with its reason", cs, tenant)
	}
	if err := f.log.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f.log.Size() == 0 {
		t.Fatal("the log is empty: the leaf check below would see nothing")
	}
	for i := range f.log.Size() {
		data, err := f.log.Entry(context.Background(), i)
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if strings.Contains(string(data), "jane.doe") {
			t.Errorf("audit leaf %d holds personal data: %s", i, data)
		}
	}
}
