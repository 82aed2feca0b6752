package vault

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/notify"
)

// Console single sign-on and step-up (issue 23).
//
// Configuration chooses an identity provider and the claim that names a
// person there; it never makes anyone a principal. An account at the
// provider is linked to an API key by that key's holder, signed in with
// the key and re-entering it ([Vault.LinkSSO]); the key exists only
// because custos's enrollment approved it (a tenant's admin for a
// tenant's principals, a second operator or security identity for
// staff). A sign-in through the provider ([Vault.StartSSOSession]) then
// opens an ordinary session of that key, re-authenticated on every
// request, so revoking the key, suspending the principal or unlinking
// ends it. An operator who points the configuration at an identity
// provider of their own finds no link under its issuer; one who writes a
// link row into the database fails its MAC.
//
// A step-up ([Vault.UseStepUp]) is a fresh authentication of one session
// for one action on one target, used once within [StepUpLifetime].

// StepUpLifetime is how long a step-up can be used after the fresh
// authentication that earned it.
const StepUpLifetime = 5 * time.Minute

// OIDCFlowLifetime is how long an authorization-code flow may take.
const OIDCFlowLifetime = 10 * time.Minute

const (
	ssoLinkTable = "console_sso_links"
	flowTable    = "console_oidc_flows"
	stepUpTable  = "console_stepups"
)

// SSOAccount is an account at an identity provider: its issuer and the
// value of the claim configured to identify a person (by default "sub").
// Its values are never logged, recorded or stored in clear.
type SSOAccount struct {
	Issuer, Subject string
}

// LogValue keeps an account out of logs.
func (SSOAccount) LogValue() any { return "[redacted]" }

// StepUp names what a step-up is for: one action on one target of one
// tenant ("" for none).
type StepUp struct {
	Action custos.Action
	Tenant string
	Target string
}

func (s StepUp) key() string { return s.Tenant + "/" + s.Target }

// ErrStepUp is the refusal of an action that needs a fresh authentication
// the session does not have (or has used, or let expire).
var ErrStepUp = custos.Errorf(custos.EFORBIDDEN, "this action needs you to confirm it is you: sign in again for it")

// ssoLinkID is the link row's id for account a: a keyed hash under the rows
// key, so the table names no account and a guess cannot be checked
// without the key.
func (v *Vault) ssoLinkID(ctx context.Context, a SSOAccount) (string, error) {
	rk, err := v.rowKey(ctx, nil)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(rk.MAC(rowMessage(ssoLinkTable+"#account", a.Issuer, a.Subject))), nil
}

// LinkSSO links account a to the key of session s, the console session the
// flow started from. The session must be an API-key sign-in (a link is
// made by the key's holder, never through another link), and ctx must
// carry the session's principal and key ([Vault.ResumeSessionID]).
// An account linked to another key is refused with ECONFLICT; linking it
// again to the same key changes nothing. Recorded as console.sso_link.
func (v *Vault) LinkSSO(ctx context.Context, s *Session, a SSOAccount) error {
	l := leaf(ctx, custos.ActionSSOLink, "")
	l.Detail = "link"
	if s.SSOLink != "" || s.keyHash == "" {
		return v.deny(ctx, l, custos.Errorf(custos.EFORBIDDEN, "link an identity-provider account from a session signed in with the API key"))
	}
	if a.Issuer == "" || a.Subject == "" {
		return v.deny(ctx, l, custos.Errorf(custos.EINVALID, "the identity provider named no account"))
	}
	id, err := v.ssoLinkID(ctx, a)
	if err != nil {
		return err
	}
	rk, err := v.rowKey(ctx, nil)
	if err != nil {
		return err
	}
	now := ms(v.now())
	return v.record(ctx, l, func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
		var keyHash string
		err := tx.QueryRowContext(ctx, `SELECT key_hash FROM console_sso_links WHERE id = $1`, id).Scan(&keyHash)
		switch {
		case err == nil && keyHash == s.keyHash:
			return nil
		case err == nil:
			return custos.Errorf(custos.ECONFLICT, "this identity-provider account is already linked to another key: unlink it there first")
		case !isNoRows(err):
			return fmt.Errorf("read sso link: %w", err)
		}
		mac := encodeMAC(rk.MAC(rowMessage(ssoLinkTable, id, s.Principal, s.keyHash, now)))
		if _, err := tx.ExecContext(ctx, `INSERT INTO console_sso_links (id, principal_id, key_hash, created_at, mac) VALUES ($1, $2, $3, $4, $5)`,
			id, s.Principal, s.keyHash, now, mac); err != nil {
			return fmt.Errorf("store sso link: %w", err)
		}
		return nil
	})
}

// UnlinkSSO removes every identity-provider link of the principal in ctx,
// which ends its single sign-on sessions at their next request.
func (v *Vault) UnlinkSSO(ctx context.Context) error {
	p := custos.RequestFromContext(ctx).Principal
	l := leaf(ctx, custos.ActionSSOLink, "")
	l.Detail = "unlink"
	if p == nil {
		return v.deny(ctx, l, custos.Errorf(custos.EUNAUTHORIZED, "sign in first"))
	}
	return v.record(ctx, l, func(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM console_sso_links WHERE principal_id = $1`, p.ID)
		if err != nil {
			return fmt.Errorf("remove sso links: %w", err)
		}
		n, _ := res.RowsAffected()
		leaf.Count = int(n)
		return nil
	})
}

// StartSSOSession signs in account a, which its identity provider has
// just vouched for: the key linked to it is authenticated as a bearer key
// is, and a new session of that key is stored. An account linked to no
// key — whatever the configuration says of it — is refused with
// EUNAUTHORIZED and recorded like an unknown key, naming no account.
func (v *Vault) StartSSOSession(ctx context.Context, a SSOAccount, lim SessionLimits) (string, *Session, *custos.Principal, *custos.APIKey, error) {
	l := leaf(ctx, custos.ActionAuthenticate, "")
	unlinked := custos.Errorf(custos.EUNAUTHORIZED, "this identity-provider account is not linked to any custos key")
	id, err := v.ssoLinkID(ctx, a)
	if err != nil {
		return "", nil, nil, nil, err
	}
	principal, keyHash, ok, err := v.readSSOLink(ctx, id)
	if err != nil {
		return "", nil, nil, nil, v.deny(ctx, l, err)
	}
	if !ok {
		return "", nil, nil, nil, v.deny(ctx, l, unlinked)
	}
	hash, err := hex.DecodeString(keyHash)
	if err != nil {
		return "", nil, nil, nil, v.deny(ctx, l, unlinked)
	}
	p, k, err := v.authenticateHash(ctx, l, hash)
	if err != nil {
		return "", nil, nil, nil, err
	}
	if p.ID != principal {
		return "", nil, nil, nil, v.deny(ctx, l, unlinked)
	}
	token, s, err := v.newSession(ctx, keyHash, p.ID, id, lim)
	if err != nil {
		return "", nil, nil, nil, err
	}
	return token, s, p, k, nil
}

// readSSOLink reads link id and checks its MAC; a row that fails it is
// absent (and raises the row-integrity alert).
func (v *Vault) readSSOLink(ctx context.Context, id string) (principal, keyHash string, ok bool, err error) {
	var created int64
	var mac string
	err = v.read.QueryRowContext(ctx, `SELECT principal_id, key_hash, created_at, mac FROM console_sso_links WHERE id = $1`, id).
		Scan(&principal, &keyHash, &created, &mac)
	if isNoRows(err) {
		return "", "", false, nil
	} else if err != nil {
		return "", "", false, fmt.Errorf("read sso link: %w", err)
	}
	rk, err := v.rowKey(ctx, nil)
	if err != nil {
		return "", "", false, err
	}
	if !macOK(sql.NullString{String: mac, Valid: true}, rk.MAC(rowMessage(ssoLinkTable, id, principal, keyHash, created))) {
		v.rowIntegrity(ssoLinkTable, id)
		return "", "", false, nil
	}
	return principal, keyHash, true, nil
}

// ssoLinkHolds reports whether link id still links keyHash of principal.
func (v *Vault) ssoLinkHolds(ctx context.Context, id, keyHash, principal string) (bool, error) {
	p, k, ok, err := v.readSSOLink(ctx, id)
	if err != nil || !ok {
		return false, err
	}
	return p == principal && subtle.ConstantTimeCompare([]byte(k), []byte(keyHash)) == 1, nil
}

// OIDCFlow is an authorization-code flow in progress.
type OIDCFlow struct {
	Purpose   string // "signin", "link" or "stepup"
	SessionID string // the session a link or step-up is for
	StepUp    StepUp // what a step-up is for
	Nonce     string
	Verifier  string // the PKCE code verifier
}

// BeginOIDCFlow stores flow f and returns its state, a fresh random value
// the flow is found by once.
func (v *Vault) BeginOIDCFlow(ctx context.Context, f OIDCFlow) (string, error) {
	state, err := randomToken()
	if err != nil {
		return "", err
	}
	rk, err := v.rowKey(ctx, nil)
	if err != nil {
		return "", err
	}
	id, now := sessionID(state), v.now()
	mac := encodeMAC(rk.MAC(rowMessage(flowTable, id, f.Purpose, f.SessionID, string(f.StepUp.Action), f.StepUp.key(), f.Nonce, f.Verifier, ms(now))))
	if _, err := v.write.ExecContext(ctx, `DELETE FROM console_oidc_flows WHERE created_at < $1`, ms(now.Add(-OIDCFlowLifetime))); err != nil {
		return "", fmt.Errorf("purge oidc flows: %w", err)
	}
	if _, err := v.write.ExecContext(ctx, `INSERT INTO console_oidc_flows (id, purpose, session_id, action, target, nonce, verifier, created_at, mac)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, id, f.Purpose, f.SessionID, string(f.StepUp.Action), f.StepUp.key(), f.Nonce, f.Verifier, ms(now), mac); err != nil {
		return "", fmt.Errorf("store oidc flow: %w", err)
	}
	return state, nil
}

// errFlow is an unknown, used, expired or tampered flow.
var errFlow = custos.Errorf(custos.EUNAUTHORIZED, "sign-in flow unknown, already used or expired: start again")

// TakeOIDCFlow returns the flow of state and deletes it: a state works
// once. An unknown, expired or tampered flow is EUNAUTHORIZED.
func (v *Vault) TakeOIDCFlow(ctx context.Context, state string) (*OIDCFlow, error) {
	if len(state) != sessionTokenLen {
		return nil, errFlow
	}
	id := sessionID(state)
	var (
		f              OIDCFlow
		action, target string
		created        int64
		mac            string
	)
	err := v.read.QueryRowContext(ctx, `SELECT purpose, session_id, action, target, nonce, verifier, created_at, mac FROM console_oidc_flows WHERE id = $1`, id).
		Scan(&f.Purpose, &f.SessionID, &action, &target, &f.Nonce, &f.Verifier, &created, &mac)
	if isNoRows(err) {
		return nil, errFlow
	} else if err != nil {
		return nil, fmt.Errorf("read oidc flow: %w", err)
	}
	res, err := v.write.ExecContext(ctx, `DELETE FROM console_oidc_flows WHERE id = $1`, id)
	if err != nil {
		return nil, fmt.Errorf("take oidc flow: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return nil, errFlow // taken by a concurrent callback
	}
	rk, err := v.rowKey(ctx, nil)
	if err != nil {
		return nil, err
	}
	if !macOK(sql.NullString{String: mac, Valid: true}, rk.MAC(rowMessage(flowTable, id, f.Purpose, f.SessionID, action, target, f.Nonce, f.Verifier, created))) {
		v.rowIntegrity(flowTable, id)
		return nil, errFlow
	}
	if !v.now().Before(fromMS(created).Add(OIDCFlowLifetime)) {
		return nil, errFlow
	}
	f.StepUp.Action = custos.Action(action)
	f.StepUp.Tenant, f.StepUp.Target, _ = strings.Cut(target, "/")
	return &f, nil
}

// StepUpWithKey is the step-up of a session by its key: its holder enters
// the session's key again (a single sign-on session, its linked key). A wrong key is refused (EUNAUTHORIZED) and
// recorded; the right one earns a step-up for su ([Vault.GrantStepUp]).
func (v *Vault) StepUpWithKey(ctx context.Context, s *Session, secret string, su StepUp) error {
	l := stepUpLeaf(ctx, su)
	got := hex.EncodeToString(custos.HashAPIKey(secret))
	if custos.CheckAPIKeySecret(secret) != nil || s.keyHash == "" || subtle.ConstantTimeCompare([]byte(got), []byte(s.keyHash)) != 1 {
		return v.deny(ctx, l, custos.Errorf(custos.EUNAUTHORIZED, "that is not the key this session signed in with"))
	}
	return v.GrantStepUp(ctx, s, su)
}

// GrantStepUp records that session s has just authenticated afresh for su
// (console.step_up, naming the action and its target) and lets it do su
// once within [StepUpLifetime]. The caller has checked the fresh
// authentication: the key re-entered, or an ID token of the session's
// linked account with a recent auth_time. ctx carries the session's
// principal.
func (v *Vault) GrantStepUp(ctx context.Context, s *Session, su StepUp) error {
	l := stepUpLeaf(ctx, su)
	rk, err := v.rowKey(ctx, nil)
	if err != nil {
		return err
	}
	exp := ms(v.now().Add(StepUpLifetime))
	mac := encodeMAC(rk.MAC(rowMessage(stepUpTable, s.ID, string(su.Action), su.key(), exp)))
	return v.record(ctx, l, func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM console_stepups WHERE session_id = $1 AND action = $2 AND target = $3`, s.ID, string(su.Action), su.key()); err != nil {
			return fmt.Errorf("replace step-up: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO console_stepups (session_id, action, target, expires_at, mac) VALUES ($1, $2, $3, $4, $5)`,
			s.ID, string(su.Action), su.key(), exp, mac); err != nil {
			return fmt.Errorf("store step-up: %w", err)
		}
		return nil
	})
}

// UseStepUp spends session s's step-up for su, or returns [ErrStepUp] if it
// has none that is unused, unexpired and intact. Call it just before the
// action: a step-up is for this session, this action and this target
// only, and works once.
func (v *Vault) UseStepUp(ctx context.Context, s *Session, su StepUp) error {
	var exp int64
	var mac string
	err := v.read.QueryRowContext(ctx, `SELECT expires_at, mac FROM console_stepups WHERE session_id = $1 AND action = $2 AND target = $3`,
		s.ID, string(su.Action), su.key()).Scan(&exp, &mac)
	if isNoRows(err) {
		return ErrStepUp
	} else if err != nil {
		return fmt.Errorf("read step-up: %w", err)
	}
	rk, err := v.rowKey(ctx, nil)
	if err != nil {
		return err
	}
	if !macOK(sql.NullString{String: mac, Valid: true}, rk.MAC(rowMessage(stepUpTable, s.ID, string(su.Action), su.key(), exp))) {
		v.rowIntegrity(stepUpTable, s.ID)
		return ErrStepUp
	}
	now := ms(v.now())
	res, err := v.write.ExecContext(ctx, `DELETE FROM console_stepups WHERE session_id = $1 AND action = $2 AND target = $3 AND expires_at = $4 AND expires_at > $5`,
		s.ID, string(su.Action), su.key(), exp, now)
	if err != nil {
		return fmt.Errorf("use step-up: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return ErrStepUp // expired, or spent by a concurrent request
	}
	return nil
}

func stepUpLeaf(ctx context.Context, su StepUp) audit.Leaf {
	l := leaf(ctx, custos.ActionStepUp, su.Tenant)
	l.Detail = string(su.Action) + " " + su.Target
	return l
}

// GrantStepUpSSO is [Vault.GrantStepUp] after the identity provider
// authenticated account a afresh: a must be the account session s signed
// in through, or the step-up is refused (EUNAUTHORIZED) and recorded.
func (v *Vault) GrantStepUpSSO(ctx context.Context, s *Session, a SSOAccount, su StepUp) error {
	id, err := v.ssoLinkID(ctx, a)
	if err != nil {
		return err
	}
	if s.SSOLink == "" || subtle.ConstantTimeCompare([]byte(id), []byte(s.SSOLink)) != 1 {
		return v.deny(ctx, stepUpLeaf(ctx, su), custos.Errorf(custos.EUNAUTHORIZED, "the identity provider signed in another account than this session's"))
	}
	if ok, err := v.SSOStepUpTrusted(ctx, a.Issuer); err != nil {
		return err
	} else if !ok {
		return v.deny(ctx, stepUpLeaf(ctx, su), errStepUpNeedsKey)
	}
	return v.GrantStepUp(ctx, s, su)
}

// errStepUpNeedsKey refuses a step-up through an identity provider that
// the principal's tenant has not named as its own.
var errStepUpNeedsKey = custos.Errorf(custos.EFORBIDDEN, "your tenant has not named this identity provider as its own: confirm with your API key")

// SSOStepUpTrusted reports whether a step-up through the identity provider
// issuer may stand for a fresh authentication of the principal in ctx.
//
// Whoever administers a provider can take over every account there, and
// so sign in as every principal linked to one (docs/console.md). A
// step-up is what stands between one person and an approval that
// invariant 12 gives to two, so it is taken from a provider only where
// that provider's administrator is on the side whose approval it is: the
// principal's tenant named it ([Vault.SetSSOIssuer], by key). Staff never
// step up through a provider: the vendor administers theirs, and one
// administrator taking over two security accounts would approve
// break-glass alone. Everyone else enters their key again.
func (v *Vault) SSOStepUpTrusted(ctx context.Context, issuer string) (bool, error) {
	p := custos.PrincipalFromContext(ctx)
	if p == nil || p.TenantID == "" || issuer == "" {
		return false, nil
	}
	s, err := v.supportSettings(ctx, v.read, p.TenantID)
	if err != nil {
		return false, err
	}
	return s.SSOIssuer != "" && subtle.ConstantTimeCompare([]byte(s.SSOIssuer), []byte(issuer)) == 1, nil
}

// SetSSOIssuer names the identity provider (its issuer URL) that tenant
// trusts for its principals' console step-ups, or "" for none (the
// default). Only a request signed with a tenant admin's key may: a session
// through a provider cannot name that provider, or the provider's
// administrator could name it for themselves. Every admin of the tenant
// and security are told. Recorded as tenant.sso_issuer (the issuer is
// not personal data; the entry says set or cleared).
func (v *Vault) SetSSOIssuer(ctx context.Context, tenant, issuer string) error {
	l, err := v.authorize(ctx, custos.ActionSSOIssuer, tenant)
	if err != nil {
		return err
	}
	if custos.RequestFromContext(ctx).SSO {
		return v.deny(ctx, l, custos.Errorf(custos.EFORBIDDEN, "name your identity provider with your API key, not through a provider's sign-in"))
	}
	if err := custos.CheckIssuer(issuer); err != nil {
		return v.deny(ctx, l, err)
	}
	if _, err := v.findTenant(ctx, tenant); err != nil {
		return v.deny(ctx, l, err)
	}
	l.Detail = "sso_issuer=" + setOrNot(issuer)
	admin := custos.RequestFromContext(ctx).Principal
	msg := &notify.Message{Topic: "support.settings", Severity: notify.SeverityHigh, TenantID: tenant, To: []string{notify.ToTenantAdmins, notify.ToStaffSecurity},
		Text: fmt.Sprintf("the identity provider trusted for step-ups of tenant %s was changed by %s: %s", tenant, admin.ID, l.Detail)}
	return v.announce(ctx, l, msg, func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO tenant_settings (tenant_id, support_access, max_grant_ms, reason_codes, break_glass, updated_at, sso_issuer) VALUES ($1, 0, $2, '', 0, $3, $4)
			ON CONFLICT (tenant_id) DO UPDATE SET sso_issuer = excluded.sso_issuer, updated_at = excluded.updated_at`,
			tenant, custos.DefaultGrantTTL.Milliseconds(), ms(v.now()), nullString(issuer))
		if err != nil {
			return fmt.Errorf("store sso issuer: %w", err)
		}
		return v.reseal(ctx, tx, "tenant_settings", tenant)
	})
}
