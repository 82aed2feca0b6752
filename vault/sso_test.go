package vault_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/vault"
)

// TestSSOLinks: an account signs in only through a link its key's holder
// made; a link moves no one when a hand in the database rewrites it; a
// session through a link ends when the link goes, when the key is
// revoked, and when the principal is suspended.
func TestSSOLinks(t *testing.T) {
	f := newFixture(t)
	_, tenant, _ := f.admin(t)
	_, ada, adaKey := f.principalSecret(t, custos.KindTenantAdmin, tenant, "ada")
	_, mal, malKey := f.principalSecret(t, custos.KindTenantAdmin, tenant, "mallory")
	ctx := browserCtx()
	acct := vault.SSOAccount{Issuer: "https://idp.test", Subject: "ada-1"}
	if _, _, _, _, err := f.vault.StartSSOSession(ctx, acct, sessionLimits); custos.ErrorCode(err) != custos.EUNAUTHORIZED {
		t.Fatalf("an unlinked account: %v", err)
	}
	link := func(secret string, a vault.SSOAccount) error {
		_, s, p, k, err := f.vault.StartSession(ctx, secret, sessionLimits)
		if err != nil {
			t.Fatal(err)
		}
		req := *custos.RequestFromContext(ctx)
		req.Principal, req.Key = p, k
		return f.vault.LinkSSO(custos.NewContext(ctx, &req), s, a)
	}
	if err := link(adaKey, acct); err != nil {
		t.Fatal(err)
	}
	if err := link(malKey, acct); custos.ErrorCode(err) != custos.ECONFLICT {
		t.Fatalf("linking another's account: %v", err)
	}
	// The same subject at another issuer is another account.
	if _, _, _, _, err := f.vault.StartSSOSession(ctx, vault.SSOAccount{Issuer: "https://insider-idp.test", Subject: "ada-1"}, sessionLimits); custos.ErrorCode(err) != custos.EUNAUTHORIZED {
		t.Fatalf("the subject at another issuer: %v", err)
	}
	token, s, p, _, err := f.vault.StartSSOSession(ctx, acct, sessionLimits)
	if err != nil || p.ID != ada.ID || s.SSOLink == "" {
		t.Fatalf("linked sign-in: %v %+v", err, p)
	}
	if _, _, _, err := f.vault.ResumeSession(browserCtx(), token, sessionLimits); err != nil {
		t.Fatal(err)
	}
	// The insider's own link, rewritten onto ada's key: its MAC fails.
	malAcct := vault.SSOAccount{Issuer: "https://idp.test", Subject: "mal-1"}
	if err := link(malKey, malAcct); err != nil {
		t.Fatal(err)
	}
	var adaHash string
	if err := f.db.Read.QueryRowContext(context.Background(), `SELECT key_hash FROM console_sso_links WHERE principal_id = $1`, ada.ID).Scan(&adaHash); err != nil {
		t.Fatal(err)
	}
	f.exec(t, `UPDATE console_sso_links SET principal_id = $1, key_hash = $2 WHERE principal_id = $3`, ada.ID, adaHash, mal.ID)
	if _, _, _, _, err := f.vault.StartSSOSession(ctx, malAcct, sessionLimits); custos.ErrorCode(err) != custos.EUNAUTHORIZED {
		t.Fatalf("a rewritten link: %v", err)
	}
	// A session's link column pointed elsewhere breaks the session's MAC.
	f.exec(t, `UPDATE console_sessions SET sso_link = NULL WHERE id = $1`, s.ID)
	if _, _, _, err := f.vault.ResumeSession(browserCtx(), token, sessionLimits); custos.ErrorCode(err) != custos.EUNAUTHORIZED {
		t.Fatalf("a session with its link cleared: %v", err)
	}
	f.integrityAlerted(t, "console_sessions", s.ID)
}

// TestOIDCFlowsAndStepUps: a flow's state works once and not after its
// lifetime; a step-up is for one session, action and target, works once,
// lapses, and cannot be written into the database.
func TestOIDCFlowsAndStepUps(t *testing.T) {
	f := newFixture(t)
	_, tenant, _ := f.admin(t)
	_, _, key := f.principalSecret(t, custos.KindTenantAdmin, tenant, "ada")
	ctx := browserCtx()
	state, err := f.vault.BeginOIDCFlow(ctx, vault.OIDCFlow{Purpose: "signin", Nonce: "n", Verifier: "v"})
	if err != nil {
		t.Fatal(err)
	}
	if fl, err := f.vault.TakeOIDCFlow(ctx, state); err != nil || fl.Nonce != "n" || fl.Verifier != "v" {
		t.Fatalf("take: %+v %v", fl, err)
	}
	if _, err := f.vault.TakeOIDCFlow(ctx, state); custos.ErrorCode(err) != custos.EUNAUTHORIZED {
		t.Fatalf("a state used twice: %v", err)
	}
	late, _ := f.vault.BeginOIDCFlow(ctx, vault.OIDCFlow{Purpose: "signin", Nonce: "n", Verifier: "v"})
	f.clock.Advance(vault.OIDCFlowLifetime + time.Second)
	if _, err := f.vault.TakeOIDCFlow(ctx, late); custos.ErrorCode(err) != custos.EUNAUTHORIZED {
		t.Fatalf("a late flow: %v", err)
	}
	tampered, _ := f.vault.BeginOIDCFlow(ctx, vault.OIDCFlow{Purpose: "signin", Nonce: "n", Verifier: "v"})
	f.exec(t, `UPDATE console_oidc_flows SET purpose = 'stepup', session_id = 'x'`)
	if _, err := f.vault.TakeOIDCFlow(ctx, tampered); custos.ErrorCode(err) != custos.EUNAUTHORIZED {
		t.Fatalf("a rewritten flow: %v", err)
	}

	_, s, p, k, err := f.vault.StartSession(ctx, key, sessionLimits)
	if err != nil {
		t.Fatal(err)
	}
	_, s2, _, _, err := f.vault.StartSession(ctx, key, sessionLimits)
	if err != nil {
		t.Fatal(err)
	}
	req := *custos.RequestFromContext(ctx)
	req.Principal, req.Key = p, k
	sctx := custos.NewContext(ctx, &req)
	su := vault.StepUp{Action: custos.ActionRequestDecide, Tenant: tenant, Target: "rq_one"}
	if err := f.vault.UseStepUp(sctx, s, su); !errors.Is(err, vault.ErrStepUp) {
		t.Fatalf("no step-up: %v", err)
	}
	if err := f.vault.StepUpWithKey(sctx, s, "cst_not_the_key", su); custos.ErrorCode(err) != custos.EUNAUTHORIZED {
		t.Fatalf("step-up with a wrong key: %v", err)
	}
	if err := f.vault.StepUpWithKey(sctx, s, key, su); err != nil {
		t.Fatal(err)
	}
	other := su
	other.Target = "rq_two"
	for name, c := range map[string]struct {
		s  *vault.Session
		su vault.StepUp
	}{"another target": {s, other}, "another session": {s2, su}, "another action": {s, vault.StepUp{Action: custos.ActionLift, Tenant: tenant, Target: "rq_one"}}} {
		if err := f.vault.UseStepUp(sctx, c.s, c.su); !errors.Is(err, vault.ErrStepUp) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if err := f.vault.UseStepUp(sctx, s, su); err != nil {
		t.Fatalf("the step-up: %v", err)
	}
	if err := f.vault.UseStepUp(sctx, s, su); !errors.Is(err, vault.ErrStepUp) {
		t.Fatalf("a step-up used twice: %v", err)
	}
	if err := f.vault.StepUpWithKey(sctx, s, key, su); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(vault.StepUpLifetime + time.Second)
	if err := f.vault.UseStepUp(sctx, s, su); !errors.Is(err, vault.ErrStepUp) {
		t.Fatalf("a lapsed step-up: %v", err)
	}
	// A hand in the database extends a step-up, or copies one to another
	// session: the MAC fails.
	if err := f.vault.StepUpWithKey(sctx, s, key, su); err != nil {
		t.Fatal(err)
	}
	f.exec(t, `UPDATE console_stepups SET session_id = $1`, s2.ID)
	if err := f.vault.UseStepUp(sctx, s2, su); !errors.Is(err, vault.ErrStepUp) {
		t.Fatalf("a step-up moved to another session: %v", err)
	}
}
