package vault_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
)

// TestSSOIssuerNamedByKeyOnly: a step-up through an identity provider
// stands for a fresh authentication only where the principal's tenant
// named that provider as its own, and only a request signed with a tenant
// admin's key may name it. The provider's administrator, signed in as the
// tenant's admin through that provider, cannot name it; staff never step
// up through one; a name written into the database behind custos's back
// trusts nothing; the entries name no URL.
func TestSSOIssuerNamedByKeyOnly(t *testing.T) {
	f := newFixture(t)
	admin, staff, tenant, _, _, _ := grantedStaff(t, f, custos.ScopeViewMasked, 0)
	const own, vendor = "https://login.acme.example", "https://sso.vendor.example"

	trusted := func(what string, ctx context.Context, issuer string, want bool) {
		t.Helper()
		got, err := f.vault.SSOStepUpTrusted(ctx, issuer)
		if err != nil || got != want {
			t.Fatalf("%s: trusted = %t, %v; want %t", what, got, err, want)
		}
	}
	trusted("before any is named", admin, own, false)

	for _, bad := range []string{"http://login.acme.example", "ftp://login.acme.example", "https://u:p@login.acme.example", "https://login.acme.example/?tenant=1",
		"https://login.acme.example/#x", "login.acme.example", "https://", "https://" + strings.Repeat("a", custos.MaxIssuerLen) + ".example"} {
		wantCode(t, "issuer "+bad, f.vault.SetSSOIssuer(admin, tenant, bad), custos.EINVALID)
	}
	// Through a provider's sign-in: the provider's administrator, holding
	// the tenant admin's account there, would name their own provider.
	req := *custos.RequestFromContext(admin)
	req.SSO = true
	wantCode(t, "naming a provider through a provider's session", f.vault.SetSSOIssuer(custos.NewContext(admin, &req), tenant, vendor), custos.EFORBIDDEN)
	wantCode(t, "staff naming a tenant's provider", f.vault.SetSSOIssuer(staff, tenant, vendor), custos.EFORBIDDEN)
	trusted("after refused attempts", admin, vendor, false)

	if err := f.vault.SetSSOIssuer(admin, tenant, own); err != nil {
		t.Fatal(err)
	}
	trusted("the named provider", admin, own, true)
	trusted("another provider", admin, vendor, false)
	trusted("the named provider for staff", staff, own, false)
	if st, err := f.vault.SupportSettings(admin, tenant); err != nil || st.SSOIssuer != own || !st.SupportAccess {
		t.Fatalf("settings read back: %+v, %v", st, err)
	}
	// Writing the support settings keeps the named provider.
	if err := f.vault.SetSupportSettings(admin, tenant, &custos.SupportSettings{SupportAccess: true, MaxGrant: custos.Duration(8 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	trusted("after the support settings changed", admin, own, true)
	if err := f.vault.SetSSOIssuer(admin, tenant, ""); err != nil {
		t.Fatal(err)
	}
	trusted("after clearing", admin, own, false)

	// Named behind custos's back: the row's MAC fails, and nothing is
	// trusted (support access is off too, as for any forged settings).
	f.exec(t, `UPDATE tenant_settings SET sso_issuer = $1 WHERE tenant_id = $2`, vendor, tenant)
	trusted("a provider written into the database", admin, vendor, false)

	var set, denied int
	for _, l := range leaves(t, f) {
		if b, _ := json.Marshal(l); strings.Contains(string(b), "acme.example") || strings.Contains(string(b), "vendor.example") {
			t.Fatalf("an entry names an issuer: %s", b)
		}
		if l.Action == string(custos.ActionSSOIssuer) {
			switch l.Outcome {
			case audit.OutcomeOK:
				set++
			case audit.OutcomeDenied:
				denied++
			}
		}
	}
	if set != 2 || denied < 2 {
		t.Fatalf("tenant.sso_issuer entries: %d ok, %d denied; want 2 and the refusals", set, denied)
	}
}
