package vault_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/vault"
)

// TestExpiryAnnouncedOnce: a grant and a key about to expire, and then
// expired, each become one audit entry (actor system) and one
// notification, however often the check runs.
func TestExpiryAnnouncedOnce(t *testing.T) {
	f := newFixture(t)
	admin, tenant, _ := f.admin(t)
	me := custos.PrincipalFromContext(admin)
	if _, _, err := f.vault.CreateKey(admin, me.ID, custos.KeyRequest{ExpiresIn: "48h"}); err != nil {
		t.Fatal(err)
	}
	staff, _ := f.principal(t, custos.KindStaffSupport, "", "sam")
	if err := f.vault.SetSupportSettings(admin, tenant, &custos.SupportSettings{SupportAccess: true, MaxGrant: custos.Duration(24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	r := &custos.AccessRequest{TenantID: tenant, Reason: "bounces", Ticket: "SUP-1", Scope: custos.ScopeViewMasked, Duration: custos.Duration(4 * time.Hour)}
	if err := f.vault.RequestAccess(staff, r); err != nil {
		t.Fatal(err)
	}
	g, err := f.vault.DecideRequest(admin, tenant, r.ID, vault.Decision{Approve: true})
	if err != nil {
		t.Fatal(err)
	}
	run := func(what string, want int) {
		t.Helper()
		for i := range 3 { // the first run announces; the next ones must not repeat it
			n, err := f.vault.RunExpiry(context.Background(), f.clock.Now(), 0)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if i > 0 {
				want = 0
			}
			if n != want {
				t.Fatalf("%s (run %d): %d announced, want %d", what, i+1, n, want)
			}
		}
	}
	run("a fresh grant and key", 0)
	f.clock.Advance(3*time.Hour + 30*time.Minute)
	run("the grant in its last quarter", 1)
	f.clock.Advance(time.Hour)
	run("the grant ended", 1)
	f.clock.Advance(40 * time.Hour)
	run("the key in its last quarter", 1)
	f.clock.Advance(8 * time.Hour)
	run("the key expired", 1)

	for _, a := range []custos.Action{vault.ActionGrantExpiring, vault.ActionGrantExpired, vault.ActionKeyExpiring, vault.ActionKeyExpired} {
		var n int
		f.log.Sync(context.Background())
		if err := f.db.Read.QueryRow(`SELECT count(*) FROM audit_leaves WHERE action = $1`, string(a)).Scan(&n); err != nil || n != 1 {
			t.Errorf("%s: %d entries (%v), want 1", a, n, err)
		}
		l := lastLeaf(t, f, a)
		if !strings.Contains(l, `"actor":"system"`) || strings.Contains(l, "acme.test") || strings.Contains(l, "corp.test") {
			t.Errorf("%s entry: %s", a, l)
		}
	}
	if l := lastLeaf(t, f, vault.ActionGrantExpiring); !strings.Contains(l, g.ID) || !strings.Contains(l, `"tenant":"`+tenant+`"`) {
		t.Errorf("grant.expiring entry names neither the grant nor the tenant: %s", l)
	}
	var topics []string
	for _, m := range outbox(t, f) {
		if strings.HasPrefix(m.Topic, "grant.exp") || strings.HasPrefix(m.Topic, "key.exp") {
			topics = append(topics, m.Topic+" "+strings.Join(m.To, ","))
		}
	}
	want := []string{
		"grant.expiring tenant_admins,principal:" + g.StaffID, "grant.expired tenant_admins,principal:" + g.StaffID,
		"key.expiring principal:" + me.ID, "key.expired principal:" + me.ID,
	}
	if strings.Join(topics, "\n") != strings.Join(want, "\n") {
		t.Errorf("expiry notifications:\n%s\nwant:\n%s", strings.Join(topics, "\n"), strings.Join(want, "\n"))
	}
}
