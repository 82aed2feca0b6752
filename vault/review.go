package vault

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
)

// Access review flags.
const (
	FlagUnused           = "unused_30d"               // a live key not used for 30 days (or never, and 30 days old)
	FlagNoExpiry         = "no_expiry"                // a live key that never expires
	FlagNoOwner          = "no_owner"                 // no verified identity answers for the principal (never enrolled, or from before identities)
	FlagSuspendedLiveKey = "suspended_with_live_keys" // a suspended principal still holding live keys
	FlagSamePerson       = "same_person"              // one identity holds several principals
)

// ReviewFlags lists the flags, in a stable order.
var ReviewFlags = []string{FlagUnused, FlagNoExpiry, FlagNoOwner, FlagSuspendedLiveKey, FlagSamePerson}

// UnusedAfter is how long a live key may go unused before it is flagged.
const UnusedAfter = 30 * 24 * time.Hour

// Review builds the access review for operators and security staff.
func (v *Vault) Review(ctx context.Context) (*custos.Review, error) {
	l, err := v.authorize(ctx, custos.ActionReview, "")
	if err != nil {
		return nil, err
	}
	now := v.now()
	rv := &custos.Review{At: now.UTC().Truncate(time.Millisecond), Principals: []*custos.ReviewPrincipal{}, Flagged: map[string]int{}}
	byID := map[string]*custos.ReviewPrincipal{}
	rows, err := v.read.QueryContext(ctx, `SELECT `+principalColumns+` FROM principals ORDER BY created_at, id`)
	if err != nil {
		return nil, v.deny(ctx, l, fmt.Errorf("review principals: %w", err))
	}
	for rows.Next() {
		p, err := scanPrincipal(rows)
		if err != nil {
			rows.Close()
			return nil, v.deny(ctx, l, err)
		}
		rp := &custos.ReviewPrincipal{Principal: p, Keys: []*custos.ReviewKey{}}
		rv.Principals = append(rv.Principals, rp)
		byID[p.ID] = rp
	}
	rows.Close()
	keys, err := v.scanKeys(ctx, "")
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	for _, k := range keys {
		rp := byID[k.PrincipalID]
		if rp == nil {
			continue
		}
		rk := &custos.ReviewKey{APIKey: k, Live: k.Active(now)}
		if rk.Live {
			last := k.CreatedAt
			if k.LastUsedAt != nil {
				last = *k.LastUsedAt
			}
			if now.Sub(last) >= UnusedAfter {
				rk.Flags = append(rk.Flags, FlagUnused)
			}
			if k.ExpiresAt == nil {
				rk.Flags = append(rk.Flags, FlagNoExpiry)
			}
			if rp.Suspended && !slices.Contains(rp.Flags, FlagSuspendedLiveKey) {
				rp.Flags = append(rp.Flags, FlagSuspendedLiveKey)
			}
		}
		rp.Keys = append(rp.Keys, rk)
	}
	grows, err := v.read.QueryContext(ctx, `SELECT `+grantColumns+` FROM grants WHERE ended_at IS NULL AND expires_at > $1 ORDER BY starts_at, id`, ms(now))
	if err != nil {
		return nil, v.deny(ctx, l, fmt.Errorf("review grants: %w", err))
	}
	for grows.Next() {
		g, err := v.scanGrant(grows)
		if err != nil {
			grows.Close()
			return nil, v.deny(ctx, l, err)
		}
		if rp := byID[g.StaffID]; rp != nil {
			rp.ActiveGrants = append(rp.ActiveGrants, g)
		}
	}
	grows.Close()
	held := map[string]int{}
	for _, rp := range rv.Principals {
		held[rp.Identity]++
	}
	for _, rp := range rv.Principals {
		if rp.VerifiedAt == nil || strings.HasPrefix(rp.Identity, "legacy:") {
			rp.Flags = append(rp.Flags, FlagNoOwner)
		}
		if held[rp.Identity] > 1 {
			rp.Flags = append(rp.Flags, FlagSamePerson)
		}
		for _, f := range rp.Flags {
			rv.Flagged[f]++
		}
		for _, k := range rp.Keys {
			for _, f := range k.Flags {
				rv.Flagged[f]++
			}
		}
	}
	l.Count = len(rv.Principals)
	if err := v.record(ctx, l, nil); err != nil {
		return nil, err
	}
	return rv, nil
}

// MaxBulkRevoke bounds one bulk revocation.
const MaxBulkRevoke = 1000

// RevokeKeys revokes many keys at once, all or none: every id must name a
// live key. It is the access review's remedy, for operators.
func (v *Vault) RevokeKeys(ctx context.Context, ids []string) (int, error) {
	l, err := v.authorize(ctx, custos.ActionReviewRevoke, "")
	if err != nil {
		return 0, err
	}
	if len(ids) == 0 || len(ids) > MaxBulkRevoke {
		return 0, v.deny(ctx, l, custos.Errorf(custos.EINVALID, "key_ids must name 1 to %d keys", MaxBulkRevoke))
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if !custos.ValidID(custos.PrefixKey, id) || seen[id] {
			return 0, v.deny(ctx, l, custos.Errorf(custos.EINVALID, "key_ids must be distinct key ids"))
		}
		seen[id] = true
	}
	l.Count, l.Detail = len(ids), "keys "+strings.Join(ids, " ")
	now := v.now()
	err = v.record(ctx, l, func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
		for _, id := range ids {
			res, err := tx.ExecContext(ctx, `UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $1)`, ms(now), id)
			if err != nil {
				return fmt.Errorf("revoke key: %w", err)
			}
			if n, _ := res.RowsAffected(); n != 1 {
				return custos.Errorf(custos.ENOTFOUND, "key %s is not a live key; nothing was revoked", id)
			}
			if err := v.reseal(ctx, tx, "api_keys", id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return len(ids), nil
}
