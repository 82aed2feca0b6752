package vault

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/notify"
)

// The operator key lifecycle (issue 21): the key `custos init` makes
// lives 30 days. Operators' and security staff's keys are announced as
// expiring a week ahead ([PrivilegedKeyNotice]) rather than a day, rotated
// with an overlap in one step ([Vault.RotateKey]), and a holder locked out
// altogether is recovered by the host plus a second person
// ([Vault.RecoverPrivileged]).

// PrivilegedKeyNotice is how long before its end an operator's or
// security staff member's key is announced as expiring: a week, so that
// the one key that runs custos is never found expired on a Monday.
const PrivilegedKeyNotice = 7 * 24 * time.Hour

// DefaultKeyOverlap is how long a rotated key keeps working beside its
// replacement when the rotation names no overlap; MaxKeyOverlap caps it.
const (
	DefaultKeyOverlap = 24 * time.Hour
	MaxKeyOverlap     = 7 * 24 * time.Hour
)

// Topics of the lifecycle notifications.
const (
	TopicKeyRotated       = "key.rotated"
	TopicOperatorRecovery = "principal.recovery"
	ActorHostRecovery     = "host-recovery"
)

// ExpiringKey is an active key that ends within a window: identifiers and
// times only, for the server log and metrics.
type ExpiringKey struct {
	ID        string
	Principal string
	Kind      custos.Kind
	ExpiresAt time.Time
}

// ExpiringKeys returns the active keys that expire after now and within
// d of it, privileged (operator and security) keys only if privileged is
// set. It reads no personal data and is not an audited access (like
// [Vault.PrincipalPerson]): the node's log warnings and the key-expiry
// metric use it.
func (v *Vault) ExpiringKeys(ctx context.Context, now time.Time, d time.Duration, privileged bool) ([]ExpiringKey, error) {
	q := `SELECT k.id, k.principal_id, p.kind, k.expires_at FROM api_keys k JOIN principals p ON p.id = k.principal_id
		WHERE k.revoked_at IS NULL AND k.expires_at IS NOT NULL AND k.expires_at > $1 AND k.expires_at <= $2`
	args := []any{ms(now), ms(now.Add(d))}
	if privileged {
		q += ` AND p.kind IN ($3, $4)`
		args = append(args, string(custos.KindOperator), string(custos.KindStaffSecurity))
	}
	return queryAll(ctx, v, func(r scanner) (ExpiringKey, error) {
		var k ExpiringKey
		var kind string
		var exp int64
		err := r.Scan(&k.ID, &k.Principal, &kind, &exp)
		k.Kind, k.ExpiresAt = custos.Kind(kind), fromMS(exp)
		return k, err
	}, q+` ORDER BY k.expires_at, k.id`, args...)
}

// RunPrivilegedKeyExpiry announces, once each, the operator and security
// keys that expire within [PrivilegedKeyNotice] of now: the key.expiring
// entry and notification of [Vault.RunExpiry], a week ahead instead of
// detection.expiry_notice (the same once-only mark, so RunExpiry does not
// announce them again). Only the log's leader runs it.
func (v *Vault) RunPrivilegedKeyExpiry(ctx context.Context, now time.Time) (int, error) {
	ks, err := queryAll(ctx, v, func(r scanner) (ExpiringKey, error) {
		var k ExpiringKey
		var exp int64
		err := r.Scan(&k.ID, &k.Principal, &exp)
		k.ExpiresAt = fromMS(exp)
		return k, err
	}, `SELECT k.id, k.principal_id, k.expires_at FROM api_keys k JOIN principals p ON p.id = k.principal_id
		WHERE k.revoked_at IS NULL AND k.expires_at IS NOT NULL AND k.expires_at > $1 AND k.expires_at <= $2 AND p.kind IN ($3, $4)
		AND NOT EXISTS (SELECT 1 FROM expiry_marks m WHERE m.object_id = k.id AND m.stage = $5) ORDER BY k.expires_at, k.id`,
		ms(now), ms(now.Add(PrivilegedKeyNotice)), string(custos.KindOperator), string(custos.KindStaffSecurity), stageExpiring)
	if err != nil {
		return 0, fmt.Errorf("expiring privileged keys: %w", err)
	}
	done := 0
	for _, k := range ks {
		if err := v.announceKeyExpiry(ctx, k.ID, k.Principal, "", k.ExpiresAt, stageExpiring); err != nil {
			return done, fmt.Errorf("key %s: %w", k.ID, err)
		}
		done++
	}
	if done > 0 {
		v.kick()
	}
	return done, nil
}

// RotateKey replaces the caller's own active key id in one step: a new
// key with the same scopes (lifetime req.ExpiresIn, as
// [Vault.CreateKey]), and the old one kept working until now + overlap
// (0: [DefaultKeyOverlap]; at most [MaxKeyOverlap]; never later than it
// would have ended anyway) so that whatever uses it can switch. Both —
// the new key and the old one's new end — are one audit entry, in one
// transaction, announced to security. Nobody rotates another principal's
// key: that is what enrollment is for.
func (v *Vault) RotateKey(ctx context.Context, id string, overlap time.Duration, expiresIn string) (string, *custos.APIKey, *custos.APIKey, error) {
	own := ""
	if p := custos.PrincipalFromContext(ctx); p != nil {
		own = p.TenantID
	}
	l, err := v.authorize(ctx, custos.ActionKeyCreate, own)
	if err != nil {
		return "", nil, nil, err
	}
	r := custos.RequestFromContext(ctx)
	l.Tenant = r.Principal.TenantID
	if overlap == 0 {
		overlap = DefaultKeyOverlap
	}
	if overlap < 0 || overlap > MaxKeyOverlap {
		return "", nil, nil, v.deny(ctx, l, custos.Errorf(custos.EINVALID, "overlap must be a duration from 1s to %s", MaxKeyOverlap))
	}
	if !custos.ValidID(custos.PrefixKey, id) {
		return "", nil, nil, v.deny(ctx, l, notFound("key"))
	}
	keys, err := v.scanKeys(ctx, r.Principal.ID)
	if err != nil {
		return "", nil, nil, v.deny(ctx, l, err)
	}
	now := v.now().UTC().Truncate(time.Millisecond)
	var old *custos.APIKey
	for _, k := range keys {
		if k.ID == id {
			old = k
		}
	}
	if old == nil {
		return "", nil, nil, v.deny(ctx, l, custos.Errorf(custos.EFORBIDDEN, "a key is rotated only by its own principal; others get one by enrollment"))
	}
	if !old.Active(now) {
		return "", nil, nil, v.deny(ctx, l, notFound("active key"))
	}
	secret, k, err := v.newKey(r.Principal, custos.KeyRequest{Scopes: old.Scopes, ExpiresIn: expiresIn})
	if err != nil {
		return "", nil, nil, v.deny(ctx, l, err)
	}
	if r.Key != nil {
		for _, s := range k.Scopes {
			if !r.Key.Has(s) {
				return "", nil, nil, v.deny(ctx, l, custos.Errorf(custos.EFORBIDDEN, "a new key may not carry a scope the presenting key lacks"))
			}
		}
	}
	end := now.Add(overlap)
	if old.ExpiresAt != nil && old.ExpiresAt.Before(end) {
		end = *old.ExpiresAt
	}
	l.Detail = fmt.Sprintf("rotate key %s to key %s for principal %s; %s valid until %s", old.ID, k.ID, r.Principal.ID, old.ID, end.Format(time.RFC3339))
	err = v.announce(ctx, l, &notify.Message{Topic: TopicKeyRotated, Severity: notify.SeverityInfo, TenantID: r.Principal.TenantID, To: []string{notify.ToStaffSecurity, notify.ToPrincipal(r.Principal.ID)},
		Text: l.Detail, Data: map[string]string{"key": k.ID, "old_key": old.ID, "principal": r.Principal.ID}}, func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
		if err := v.insertKey(ctx, tx, k, secret); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE api_keys SET expires_at = $1 WHERE id = $2 AND principal_id = $3 AND revoked_at IS NULL`, ms(end), old.ID, r.Principal.ID)
		if err != nil {
			return fmt.Errorf("end rotated key: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return custos.Errorf(custos.ECONFLICT, "the key was revoked meanwhile")
		}
		// Its end was just announced: no key.expiring for it later.
		if _, err := tx.ExecContext(ctx, `INSERT INTO expiry_marks (object_id, stage, marked_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, old.ID, stageExpiring, ms(now)); err != nil {
			return fmt.Errorf("mark rotated key: %w", err)
		}
		return v.reseal(ctx, tx, "api_keys", old.ID)
	})
	if err != nil {
		return "", nil, nil, err
	}
	old.ExpiresAt = &end
	return secret, k, old, nil
}

// RecoverPrivileged is the break-glass recovery of an operator or
// security staff member who holds no working key: someone with the host
// (the data directory: `custos operator recover` hands the request to the
// server through it) asks, and a new enrollment of that principal waits
// for a second operator or security identity — a different person from
// the holder — to approve it; only then is the secret mailed, to the
// holder's verified address. The request is an audit entry (actor
// "host-recovery") and announced at high severity to security and to the
// holder, so a recovery the holder did not ask for is seen at once.
//
// With no second operator or security identity there is nobody to
// approve, and it is refused (invariant 12): the host alone never mints a
// privileged key. Unlike the bootstrap exception of enrollment, there is
// no way around it but to create that second identity while a key works.
func (v *Vault) RecoverPrivileged(ctx context.Context, principalID string) (*custos.Enrollment, error) {
	ctx, l := systemLeaf(ctx, custos.ActionPrincipalRekey, "")
	l.Actor = ActorHostRecovery
	if !custos.ValidID(custos.PrefixPrincipal, principalID) {
		return nil, custos.Errorf(custos.EINVALID, "not a principal id")
	}
	var e *custos.Enrollment
	err := v.record(ctx, l, func(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf) error {
		p, err := v.findPrincipalTx(ctx, tx, principalID)
		if err != nil {
			return err
		}
		if p.Kind != custos.KindOperator && p.Kind != custos.KindStaffSecurity {
			return custos.Errorf(custos.EINVALID, "host recovery is for operators and security staff; others are re-keyed by an operator or their tenant's admin")
		}
		if p.Suspended {
			return custos.Errorf(custos.ECONFLICT, "principal %s is suspended: lift the containment first (two security staff)", p.ID)
		}
		var others int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM principals WHERE kind IN ($1, $2) AND identity <> $3 AND suspended = 0 AND verified_at IS NOT NULL`,
			string(custos.KindOperator), string(custos.KindStaffSecurity), p.Identity).Scan(&others); err != nil {
			return fmt.Errorf("count privileged identities: %w", err)
		}
		if others == 0 {
			return custos.Errorf(custos.ECONFLICT, "no second operator or security identity exists to approve the recovery: one person with the host cannot mint a privileged key alone")
		}
		leaf.Detail = "host recovery of " + string(p.Kind) + " " + p.ID
		// The holder is the requester: the approver must be someone else.
		e, err = v.newEnrollment(ctx, tx, leaf, p, p, custos.ApprovalPrivileged, nil)
		if err != nil {
			return err
		}
		return v.enqueue(ctx, tx, &notify.Message{Topic: TopicOperatorRecovery, Severity: notify.SeverityHigh, To: []string{notify.ToStaffSecurity, notify.ToPrincipal(p.ID)},
			Text: fmt.Sprintf("break-glass: someone with host access started the recovery of %s %s (enrollment %s); a second operator or security identity must approve it, and the secret goes only to the holder's address", p.Kind, p.ID, e.ID),
			Data: map[string]string{"enrollment": e.ID, "principal": p.ID}})
	})
	if err != nil {
		return nil, err
	}
	v.kick()
	return e, nil
}
