package vault_test

import (
	"slices"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/internal/enrolltest"
	"github.com/custos-dev/custos/vault"
)

func TestAccessReview(t *testing.T) {
	f := newFixture(t)
	admin, tenant, _ := f.admin(t)
	if err := f.vault.SetSupportSettings(admin, tenant, &custos.SupportSettings{SupportAccess: true, MaxGrant: custos.Duration(custos.MaxGrantTTL)}); err != nil {
		t.Fatal(err)
	}
	mk := func(kind custos.Kind, tenant, owner, expires string) (*custos.Principal, *custos.APIKey) {
		p := &custos.Principal{Kind: kind, TenantID: tenant, Name: "p", Owner: owner, Identity: owner + "@corp.test"}
		if owner == "" {
			p.Identity = "orphan@corp.test"
		}
		e, err := f.vault.CreatePrincipal(f.ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		f.approvers.Settle(t, e)
		if owner == "" {
			return p, nil // never enrolled: no verified identity answers for it
		}
		ctx := f.as(t, enrolltest.Key(t, f.vault, e.ID, custos.KeyRequest{ExpiresIn: expires}))
		return p, custos.RequestFromContext(ctx).Key
	}
	orphan, _ := mk(custos.KindService, tenant, "", "2160h")
	_, forever := mk(custos.KindService, tenant, "ingest-team", "never")
	staff, staffKey := mk(custos.KindStaffSupport, "", "sam", "2160h")
	susp, _ := mk(custos.KindService, tenant, "crm-team", "2160h")
	if _, err := f.db.Write.Exec(`UPDATE principals SET suspended = 1 WHERE id = $1`, susp.ID); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(31 * 24 * time.Hour) // every key so far now unused for 31 days
	g := &custos.Grant{TenantID: tenant, StaffID: staff.ID, Scope: custos.ScopeViewMasked}
	if err := f.vault.CreateGrant(admin, g, 6*24*time.Hour); err != nil {
		t.Fatal(err)
	}

	if _, err := f.vault.Review(admin); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Fatalf("tenant admin reading the review: %v", err)
	}
	sec, _ := f.principal(t, custos.KindStaffSecurity, "", "sec")
	if _, err := f.vault.Review(sec); err != nil {
		t.Fatalf("security staff reading the review: %v", err)
	}
	rv, err := f.vault.Review(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	find := func(id string) *custos.ReviewPrincipal {
		for _, p := range rv.Principals {
			if p.ID == id {
				return p
			}
		}
		t.Fatalf("principal %s missing from the review", id)
		return nil
	}
	if p := find(orphan.ID); !slices.Contains(p.Flags, vault.FlagNoOwner) {
		t.Errorf("principal without owner: flags %v", p.Flags)
	}
	if p := find(susp.ID); !slices.Contains(p.Flags, vault.FlagSuspendedLiveKey) {
		t.Errorf("suspended principal with a live key: flags %v", p.Flags)
	}
	sp := find(staff.ID)
	if len(sp.ActiveGrants) != 1 || sp.ActiveGrants[0].ID != g.ID {
		t.Errorf("staff's active grants: %+v", sp.ActiveGrants)
	}
	if len(sp.Keys) != 1 || sp.Keys[0].ID != staffKey.ID || !slices.Contains(sp.Keys[0].Flags, vault.FlagUnused) {
		t.Errorf("staff key: %+v", sp.Keys)
	}
	var foreverFlags []string
	for _, p := range rv.Principals {
		for _, k := range p.Keys {
			if k.ID == forever.ID {
				foreverFlags = k.Flags
			}
		}
	}
	if !slices.Contains(foreverFlags, vault.FlagNoExpiry) {
		t.Errorf("key without expiry: flags %v", foreverFlags)
	}
	if rv.Flagged[vault.FlagNoOwner] != 1 || rv.Flagged[vault.FlagSuspendedLiveKey] != 1 {
		t.Errorf("flag counts %v", rv.Flagged)
	}

	// Bulk revoke: all or none.
	if _, err := f.vault.RevokeKeys(sec, []string{forever.ID}); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Fatalf("security staff revoking in bulk: %v", err)
	}
	if _, err := f.vault.RevokeKeys(f.ctx, []string{forever.ID, custos.NewID(custos.PrefixKey)}); custos.ErrorCode(err) != custos.ENOTFOUND {
		t.Fatalf("bulk revoke naming an unknown key: %v", err)
	}
	if rv, _ := f.vault.Review(f.ctx); !liveKey(rv, forever.ID) {
		t.Fatal("a failed bulk revoke revoked a key")
	}
	if n, err := f.vault.RevokeKeys(f.ctx, []string{forever.ID, staffKey.ID}); err != nil || n != 2 {
		t.Fatalf("bulk revoke: %d, %v", n, err)
	}
	rv, _ = f.vault.Review(f.ctx)
	if liveKey(rv, forever.ID) || liveKey(rv, staffKey.ID) {
		t.Fatal("keys still live after the bulk revoke")
	}
}

func liveKey(rv *custos.Review, id string) bool {
	for _, p := range rv.Principals {
		for _, k := range p.Keys {
			if k.ID == id {
				return k.Live
			}
		}
	}
	return false
}
