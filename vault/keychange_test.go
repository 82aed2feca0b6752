package vault_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/internal/kmstest"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/notify"
	"github.com/custos-dev/custos/vault"
)

// TestTenantKeyChangeNeedsSecondParty is invariant 12 for a tenant's own
// key: one tenant admin alone cannot put the tenant's data under a key
// they hold (whoever holds it can destroy the data by revoking it), nor
// take it off one. A set or clear waits, announced at once to every
// tenant admin and to security; the requester cannot approve it, nor can
// staff or an editor; another tenant admin approves (at once) or cancels
// it; otherwise it takes effect when its grace period ends, by the
// system. A change written into the database by hand is never applied,
// and a due change whose key no longer works fails, announced.
func TestTenantKeyChangeNeedsSecondParty(t *testing.T) {
	f := newFixture(t)
	v := f.vault
	ctxA, tA, _ := f.admin(t)
	kms := kmstest.New(t)
	uri := kms.URI("acme")
	keyset := func() []byte {
		return storetest.Column[[]byte](t, f.db.Read, `SELECT keyset FROM tenant_keys WHERE tenant_id = $1`, tA)[0]
	}
	before := keyset()

	// A grace period out of bounds is refused, and nothing is scheduled.
	for _, g := range []time.Duration{-time.Hour, time.Second, custos.MinKeyChangeGrace - time.Second, custos.MaxKeyChangeGrace + time.Second} {
		if _, err := v.SetTenantKey(ctxA, tA, &custos.TenantKeyRequest{URI: uri, GraceSeconds: int64(g / time.Second)}); custos.ErrorCode(err) != custos.EINVALID {
			t.Errorf("grace %v: %v, want invalid", g, err)
		}
	}
	if n := storetest.Column[int](t, f.db.Read, `SELECT count(*) FROM tenant_key_changes WHERE tenant_id = $1`, tA); n[0] != 0 {
		t.Fatalf("%d changes stored by refused requests", n[0])
	}

	c, err := v.SetTenantKey(ctxA, tA, &custos.TenantKeyRequest{URI: uri})
	if err != nil {
		t.Fatal(err)
	}
	if c.Status != custos.KeyChangeScheduled || c.RequestedBy == "" || c.DueAt.Sub(c.CreatedAt) != custos.DefaultKeyChangeGrace {
		t.Fatalf("requested: %+v", c)
	}
	if !bytes.Equal(keyset(), before) {
		t.Fatal("a request alone changed the tenant's keyset")
	}
	requested := 0
	for _, m := range outbox(t, f) {
		if m.TenantID == tA && m.Topic == vault.TopicTenantKeyChangeRequested {
			requested++
			to := strings.Join(m.To, ",")
			if !strings.Contains(to, notify.ToTenantAdmins) || !strings.Contains(to, notify.ToStaffSecurity) {
				t.Errorf("the request is announced to %v, not every tenant admin and security", m.To)
			}
		}
	}
	if requested != 1 {
		t.Fatalf("%d change-requested notices, want 1", requested)
	}
	if k, err := v.TenantKey(ctxA, tA); err != nil || k.Managed != custos.KeyManagedByCustos || k.Pending == nil || k.Pending.ID != c.ID {
		t.Fatalf("key while pending: %+v, %v", k, err)
	}
	if _, err := v.SetTenantKey(ctxA, tA, &custos.TenantKeyRequest{URI: kms.URI("other")}); custos.ErrorCode(err) != custos.ECONFLICT {
		t.Errorf("a second request while one waits: %v, want conflict", err)
	}

	// Nobody but another tenant admin approves.
	editor := f.ctxFor(t, tA)
	staff, _ := f.principal(t, custos.KindStaffSecurity, "", "sec")
	if _, err := v.ApproveTenantKeyChange(ctxA, tA, c.ID); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Errorf("the requester approves its own change: %v, want forbidden", err)
	}
	if _, err := v.ApproveTenantKeyChange(editor, tA, c.ID); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Errorf("an editor approves: %v, want forbidden", err)
	}
	if _, err := v.ApproveTenantKeyChange(f.ctx, tA, c.ID); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Errorf("the operator approves: %v, want forbidden", err)
	}
	if _, err := v.ApproveTenantKeyChange(staff, tA, c.ID); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Errorf("security staff approves: %v, want forbidden", err)
	}
	if _, err := v.CancelTenantKeyChange(f.ctx, tA); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Errorf("the operator cancels the tenant's change: %v, want forbidden", err)
	}
	// Nor does the grace period end early for anyone.
	if n, err := v.RunDueKeyChanges(t.Context(), f.clock.Now().Add(custos.DefaultKeyChangeGrace-time.Minute)); err != nil || n != 0 {
		t.Fatalf("before due: %d applied, %v", n, err)
	}
	if !bytes.Equal(keyset(), before) {
		t.Fatal("the keyset changed before the change was approved or due")
	}

	// Another admin cancels: nothing changes.
	second, _ := f.principal(t, custos.KindTenantAdmin, tA, "second-admin")
	if c, err := v.CancelTenantKeyChange(second, tA); err != nil || c.Status != custos.KeyChangeCancelled {
		t.Fatalf("cancel: %+v, %v", c, err)
	}
	if n, err := v.RunDueKeyChanges(t.Context(), f.clock.Now().Add(custos.MaxKeyChangeGrace)); err != nil || n != 0 || !bytes.Equal(keyset(), before) {
		t.Fatalf("a cancelled change applied: %d, %v", n, err)
	}

	// An approval names the change its approver reviewed: once that one
	// is cancelled and another asked (another key), it approves nothing.
	reviewed, err := v.SetTenantKey(ctxA, tA, &custos.TenantKeyRequest{URI: uri})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.CancelTenantKeyChange(ctxA, tA); err != nil {
		t.Fatal(err)
	}
	swapped, err := v.SetTenantKey(ctxA, tA, &custos.TenantKeyRequest{URI: kms.URI("swapped")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.ApproveTenantKeyChange(second, tA, reviewed.ID); custos.ErrorCode(err) != custos.ECONFLICT {
		t.Fatalf("approve a change no longer pending: %v, want conflict", err)
	}
	if _, err := v.CancelTenantKeyChange(second, tA); err != nil || !bytes.Equal(keyset(), before) {
		t.Fatalf("cancel %s: %v", swapped.ID, err)
	}

	// Asked again and left alone, it takes effect when due, by the system.
	c, err = v.SetTenantKey(ctxA, tA, &custos.TenantKeyRequest{URI: uri, GraceSeconds: int64(custos.MinKeyChangeGrace / time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := v.RunDueKeyChanges(t.Context(), c.DueAt); err != nil || n != 1 {
		t.Fatalf("when due: %d applied, %v", n, err)
	}
	if k, err := v.TenantKey(ctxA, tA); err != nil || k.Managed != custos.KeyManagedByTenant || k.Pending != nil {
		t.Fatalf("after the due change: %+v, %v", k, err)
	}
	var applied bool
	for _, l := range leaves(t, f) {
		if l.Tenant == tA && l.Action == string(custos.ActionTenantKeySet) && l.Actor == "system" && strings.Contains(l.Detail, c.ID) {
			applied = true
		}
	}
	if !applied {
		t.Error("no system entry applied the due change")
	}

	// A change inserted by hand, due at once, is not applied.
	forged := custos.NewID(custos.PrefixKeyChange)
	f.exec(t, `INSERT INTO tenant_key_changes (id, tenant_id, op, status, requested_by, grace_ms, created_at, due_at) VALUES ($1, $2, 'clear', 'scheduled', $3, 0, 0, 0)`,
		forged, tA, c.RequestedBy)
	after := keyset()
	if n, err := v.RunDueKeyChanges(t.Context(), f.clock.Now()); err == nil || n != 0 {
		t.Fatalf("a forged change: %d applied, %v", n, err)
	}
	f.integrityAlerted(t, "tenant_key_changes", forged)
	if !bytes.Equal(keyset(), after) {
		t.Fatal("a forged change moved the keyset")
	}
	if _, err := v.ApproveTenantKeyChange(second, tA, forged); err == nil {
		t.Fatal("a forged change was approved")
	}
	f.exec(t, `DELETE FROM tenant_key_changes WHERE id = $1`, forged)

	// A due clear whose key was revoked meanwhile fails, announced.
	if _, err := v.ClearTenantKey(ctxA, tA); err != nil {
		t.Fatal(err)
	}
	kms.Revoke()
	if n, err := v.RunDueKeyChanges(t.Context(), f.clock.Now().Add(custos.MaxKeyChangeGrace)); err != nil || n != 0 {
		t.Fatalf("a due change under a revoked key: %d applied, %v", n, err)
	}
	if got := topicCount(t, f, tA, vault.TopicTenantKeyChangeFailed); got != 1 {
		t.Errorf("%d change-failed notices, want 1", got)
	}
	failed := 0
	for _, l := range leaves(t, f) {
		if l.Tenant == tA && l.Action == string(custos.ActionTenantKeyChangeFailed) && l.Actor == "system" {
			failed++
		}
	}
	if failed != 1 {
		t.Errorf("%d system tenant_key.change_failed entries, want 1", failed)
	}
	if !bytes.Equal(keyset(), after) {
		t.Fatal("a failed change moved the keyset")
	}
	kms.Restore()

	// What the log says the keyset is wrapped under matches the rows.
	for _, fd := range f.verifyData(t) {
		if fd.Table == "tenant_keys" || fd.Table == "tenant_key_changes" {
			t.Errorf("verify --rows: %+v", fd)
		}
	}
}
