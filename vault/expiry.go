package vault

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/notify"
)

// Expiry events: a support grant or an API key about to expire, and one
// that expired, become audit entries (actor "system") that the detector's
// rules see, each with a notification in the same transaction. Each is
// announced once: the entry's transaction writes a mark (expiry_marks)
// and a grant or key already marked for that stage is skipped.

// Actions of the expiry entries.
const (
	ActionGrantExpiring custos.Action = "grant.expiring"
	ActionGrantExpired  custos.Action = "grant.expired"
	ActionKeyExpiring   custos.Action = "key.expiring"
	ActionKeyExpired    custos.Action = "key.expired"
)

// DefaultExpiryNotice is how long before its end a grant or key is
// announced as expiring: a day, so a holder has a working day to renew.
// A grant or key is announced only in the last quarter of its life too,
// so a four-hour grant is announced an hour before its end, not as soon
// as it is made.
const DefaultExpiryNotice = 24 * time.Hour

// expiredLookback bounds how far back an expiry is still announced: the
// first check after an upgrade does not announce years of old keys.
const expiredLookback = 7 * 24 * time.Hour

const (
	stageExpiring = "expiring"
	stageExpired  = "expired"
)

// RunExpiry announces the grants and keys that expire within notice of
// now, and those that expired, once each. It returns how many it
// announced. Only the log's leader runs it (the node's ticker).
func (v *Vault) RunExpiry(ctx context.Context, now time.Time, notice time.Duration) (int, error) {
	if notice <= 0 {
		notice = DefaultExpiryNotice
	}
	done := 0
	var errs []error
	for _, stage := range []string{stageExpired, stageExpiring} {
		lo, hi := now.Add(-expiredLookback), now
		if stage == stageExpiring {
			lo, hi = now, now.Add(notice)
		}
		grants, err := queryAll(ctx, v, v.scanGrant, `SELECT `+grantColumns+` FROM grants
			WHERE ended_at IS NULL AND expires_at > $1 AND expires_at <= $2 AND (expires_at - $4) * 4 <= expires_at - starts_at
			AND NOT EXISTS (SELECT 1 FROM expiry_marks m WHERE m.object_id = grants.id AND m.stage = $3) ORDER BY expires_at, id`, ms(lo), ms(hi), stage, ms(now))
		if err != nil {
			return done, fmt.Errorf("expiring grants: %w", err)
		}
		for _, g := range grants {
			if err := v.announceGrantExpiry(ctx, g, stage); err != nil {
				errs = append(errs, fmt.Errorf("grant %s: %w", g.ID, err))
				continue
			}
			done++
		}
		type key struct {
			id, principal, tenant string
			expires               int64
		}
		ks, err := queryAll(ctx, v, func(r scanner) (key, error) {
			var k key
			var tenant sql.NullString
			err := r.Scan(&k.id, &k.principal, &tenant, &k.expires)
			k.tenant = tenant.String
			return k, err
		}, `SELECT k.id, k.principal_id, p.tenant_id, k.expires_at FROM api_keys k JOIN principals p ON p.id = k.principal_id
			WHERE k.revoked_at IS NULL AND k.expires_at IS NOT NULL AND k.expires_at > $1 AND k.expires_at <= $2 AND (k.expires_at - $4) * 4 <= k.expires_at - k.created_at
			AND NOT EXISTS (SELECT 1 FROM expiry_marks m WHERE m.object_id = k.id AND m.stage = $3) ORDER BY k.expires_at, k.id`, ms(lo), ms(hi), stage, ms(now))
		if err != nil {
			return done, fmt.Errorf("expiring keys: %w", err)
		}
		for _, k := range ks {
			if err := v.announceKeyExpiry(ctx, k.id, k.principal, k.tenant, fromMS(k.expires), stage); err != nil {
				errs = append(errs, fmt.Errorf("key %s: %w", k.id, err))
				continue
			}
			done++
		}
	}
	if done > 0 {
		v.kick()
	}
	return done, errors.Join(errs...)
}

// mark writes the once-only mark of object's stage in tx; a mark already
// there (another node got there first) fails the entry as a conflict.
func (v *Vault) mark(ctx context.Context, tx *sql.Tx, object, stage string) error {
	res, err := tx.ExecContext(ctx, `INSERT INTO expiry_marks (object_id, stage, marked_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, object, stage, ms(v.now()))
	if err != nil {
		return fmt.Errorf("mark expiry: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return custos.Errorf(custos.ECONFLICT, "already announced")
	}
	return nil
}

func systemLeaf(ctx context.Context, action custos.Action, tenant string) (context.Context, audit.Leaf) {
	ctx = custos.NewContext(ctx, &custos.Request{ID: custos.NewID(custos.PrefixRequest)})
	l := leaf(ctx, action, tenant)
	l.Actor = "system"
	return ctx, l
}

func (v *Vault) announceGrantExpiry(ctx context.Context, g *custos.Grant, stage string) error {
	action, topic, what := ActionGrantExpiring, TopicGrantExpiring, "expires"
	if stage == stageExpired {
		action, topic, what = ActionGrantExpired, TopicGrantExpired, "expired"
	}
	ctx, l := systemLeaf(ctx, action, g.TenantID)
	l.Detail = fmt.Sprintf("grant %s of staff %s %s at %s", g.ID, g.StaffID, what, g.ExpiresAt.UTC().Format(time.RFC3339))
	m := &notify.Message{Topic: topic, TenantID: g.TenantID, To: []string{notify.ToTenantAdmins, notify.ToPrincipal(g.StaffID)},
		Text: l.Detail, Data: map[string]string{"grant": g.ID, "staff": g.StaffID}}
	return v.record(ctx, l, func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
		if err := v.mark(ctx, tx, g.ID, stage); err != nil {
			return err
		}
		return v.enqueue(ctx, tx, m)
	})
}

func (v *Vault) announceKeyExpiry(ctx context.Context, key, principal, tenant string, expires time.Time, stage string) error {
	action, topic, what := ActionKeyExpiring, TopicKeyExpiring, "expires"
	if stage == stageExpired {
		action, topic, what = ActionKeyExpired, TopicKeyExpired, "expired"
	}
	ctx, l := systemLeaf(ctx, action, tenant)
	l.Detail = fmt.Sprintf("key %s of principal %s %s at %s", key, principal, what, expires.UTC().Format(time.RFC3339))
	m := &notify.Message{Topic: topic, TenantID: tenant, To: []string{notify.ToPrincipal(principal)},
		Text: l.Detail, Data: map[string]string{"key": key, "principal": principal}}
	return v.record(ctx, l, func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
		if err := v.mark(ctx, tx, key, stage); err != nil {
			return err
		}
		return v.enqueue(ctx, tx, m)
	})
}
