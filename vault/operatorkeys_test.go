package vault_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/internal/enrolltest"
	"github.com/custos-dev/custos/vault"
)

// TestPrivilegedKeyExpiringAWeekAhead: the operator key init makes (30
// days) is announced as expiring a week before its end — once, as a
// key.expiring entry and notification — where detection.expiry_notice
// (a day) would say it the day before; ExpiringKeys counts it from then.
func TestPrivilegedKeyExpiringAWeekAhead(t *testing.T) {
	f := newFixture(t)
	op := custos.PrincipalFromContext(f.ctx)
	ctx := context.Background()
	if n, err := f.vault.RunPrivilegedKeyExpiry(ctx, f.clock.Now()); err != nil || n != 0 {
		t.Fatalf("a fresh operator key: %d announced, %v", n, err)
	}
	if ks, err := f.vault.ExpiringKeys(ctx, f.clock.Now(), vault.PrivilegedKeyNotice, true); err != nil || len(ks) != 0 {
		t.Fatalf("expiring keys of a fresh install: %v %v", ks, err)
	}
	f.clock.Advance(23*24*time.Hour + time.Hour) // 6 days 23 hours left
	if n, err := f.vault.RunExpiry(ctx, f.clock.Now(), 0); err != nil || n != 0 {
		t.Fatalf("the day-ahead notice: %d, %v; want nothing yet", n, err)
	}
	ks, err := f.vault.ExpiringKeys(ctx, f.clock.Now(), vault.PrivilegedKeyNotice, true)
	if err != nil || len(ks) != 1 || ks[0].Principal != op.ID || ks[0].Kind != custos.KindOperator {
		t.Fatalf("expiring privileged keys: %+v %v", ks, err)
	}
	for i, want := range []int{1, 0} {
		if n, err := f.vault.RunPrivilegedKeyExpiry(ctx, f.clock.Now()); err != nil || n != want {
			t.Fatalf("run %d: %d announced, %v; want %d", i+1, n, err, want)
		}
	}
	f.clock.Advance(6 * 24 * time.Hour) // within the day-ahead notice now
	if n, err := f.vault.RunExpiry(ctx, f.clock.Now(), 0); err != nil || n != 0 {
		t.Fatalf("RunExpiry announced the key again: %d, %v", n, err)
	}
	if l := lastLeaf(t, f, vault.ActionKeyExpiring); !strings.Contains(l, ks[0].ID) || !strings.Contains(l, `"actor":"system"`) {
		t.Fatalf("key.expiring entry: %s", l)
	}
	var to []string
	for _, m := range outbox(t, f) {
		if m.Topic == vault.TopicKeyExpiring {
			to = append(to, strings.Join(m.To, ","))
		}
	}
	if len(to) != 1 || to[0] != "principal:"+op.ID {
		t.Fatalf("key.expiring notifications: %v", to)
	}
}

// TestRotateKeyWithOverlap: one call mints the new key and keeps the old
// one working until the overlap ends, both in one audit entry announced
// to security; a principal rotates only its own key, within the cap.
func TestRotateKeyWithOverlap(t *testing.T) {
	f := newFixture(t)
	ctx, p, oldSecret := f.principalSecret(t, custos.KindStaffSecurity, "", "ivy")
	oldID := custos.RequestFromContext(ctx).Key.ID
	opKey := custos.RequestFromContext(f.ctx).Key.ID

	_, _, _, err := f.vault.RotateKey(ctx, opKey, time.Hour, "")
	wantCode(t, "rotating another principal's key", err, custos.EFORBIDDEN)
	_, _, _, err = f.vault.RotateKey(ctx, oldID, 8*24*time.Hour, "")
	wantCode(t, "an overlap over the cap", err, custos.EINVALID)

	secret, k, old, err := f.vault.RotateKey(ctx, oldID, 2*time.Hour, "720h")
	if err != nil {
		t.Fatal(err)
	}
	if k.PrincipalID != p.ID || old.ID != oldID || !old.ExpiresAt.Equal(f.clock.Now().UTC().Truncate(time.Millisecond).Add(2*time.Hour)) {
		t.Fatalf("rotated: new %+v old %+v", k, old)
	}
	if strings.Join(scopes(k.Scopes), ",") != strings.Join(scopes(custos.RequestFromContext(ctx).Key.Scopes), ",") {
		t.Fatalf("new key scopes %v", k.Scopes)
	}
	for _, s := range []string{oldSecret, secret} {
		if err := f.authenticate(s); err != nil {
			t.Fatalf("during the overlap: %v", err)
		}
	}
	f.clock.Advance(2*time.Hour + time.Second)
	if err := f.authenticate(oldSecret); err == nil {
		t.Fatal("the old key works after the overlap")
	}
	if err := f.authenticate(secret); err != nil {
		t.Fatalf("the new key: %v", err)
	}
	l := lastLeaf(t, f, custos.ActionKeyCreate)
	if !strings.Contains(l, "rotate key "+oldID+" to key "+k.ID) || strings.Contains(l, "corp.test") {
		t.Fatalf("rotation entry: %s", l)
	}
	found := false
	for _, m := range outbox(t, f) {
		found = found || m.Topic == vault.TopicKeyRotated && strings.Contains(strings.Join(m.To, ","), "staff_security")
	}
	if !found {
		t.Fatal("the rotation was not announced to security")
	}
}

func scopes(ss []custos.Scope) []string {
	var out []string
	for _, s := range ss {
		out = append(out, string(s))
	}
	return out
}

// TestHostRecoveryNeedsASecondPerson is invariant 12 for the locked-out
// operator: with the host alone (no second operator or security identity)
// a recovery is refused; with one, the host's request waits for that
// second person — the operator's own key cannot approve it — and the
// secret goes only to the operator's address. It is logged (actor
// host-recovery) and announced to security and to the holder.
func TestHostRecoveryNeedsASecondPerson(t *testing.T) {
	f := newFixture(t)
	op := custos.PrincipalFromContext(f.ctx)
	_, err := f.vault.RecoverPrivileged(context.Background(), op.ID)
	wantCode(t, "recovery with no second person", err, custos.ECONFLICT)

	ivy := f.secondPerson(t)
	e, err := f.vault.RecoverPrivileged(context.Background(), op.ID)
	if err != nil {
		t.Fatal(err)
	}
	if e.Status != custos.EnrollPending || e.Approval != custos.ApprovalPrivileged || e.PrincipalID != op.ID {
		t.Fatalf("recovery enrollment: %+v", e)
	}
	wantNoMail(t, f, e.ID)
	// The holder (here with a key still, as one person with the host
	// would be) cannot approve its own recovery.
	_, err = f.vault.DecideEnrollment(f.ctx, e.ID, true)
	wantCode(t, "the holder approving its own recovery", err, custos.EFORBIDDEN)
	wantNoMail(t, f, e.ID)

	l := lastLeaf(t, f, custos.ActionPrincipalRekey)
	if !strings.Contains(l, `"actor":"host-recovery"`) || !strings.Contains(l, op.ID) || strings.Contains(l, "vendor.test") {
		t.Fatalf("recovery entry: %s", l)
	}
	announced := false
	for _, m := range outbox(t, f) {
		if m.Topic == vault.TopicOperatorRecovery {
			to := strings.Join(m.To, ",")
			announced = strings.Contains(to, "staff_security") && strings.Contains(to, "principal:"+op.ID)
		}
	}
	if !announced {
		t.Fatal("the recovery was not announced to security and the holder")
	}

	if _, err := f.vault.DecideEnrollment(ivy, e.ID, true); err != nil {
		t.Fatalf("the second person approving: %v", err)
	}
	wantMailTo(t, f, e.ID, "op@vendor.test")
	secret := enrolltest.Key(t, f.vault, e.ID, custos.KeyRequest{})
	if err := f.authenticate(secret); err != nil {
		t.Fatalf("the recovered key: %v", err)
	}
	// Not for tenant principals, nor a principal that does not exist.
	_, tenantCtx := func() (string, context.Context) { c, _, _ := f.admin(t); return "", c }()
	_, err = f.vault.RecoverPrivileged(context.Background(), custos.PrincipalFromContext(tenantCtx).ID)
	wantCode(t, "recovering a tenant admin", err, custos.EINVALID)
}
