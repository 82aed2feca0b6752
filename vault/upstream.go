package vault

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/notify"
)

// The relay's upstream is where every address it resolves goes. Whoever
// holds the configuration chooses it, so changing it is a two-party act
// (invariant 12): a node that starts with an upstream custos has not seen
// registers it — recorded, announced to security — and the vault resolves
// no recipient for it until a security staff member approves it.

// RegisterUpstream records the upstream a relay starts with (id from
// relay.Upstream.ID, description its address, TLS mode and user) and
// reports whether it is approved. A new one is announced to security.
func (v *Vault) RegisterUpstream(ctx context.Context, id, description string) (bool, error) {
	if !custos.ValidID(custos.PrefixUpstream, id) {
		return false, custos.Errorf(custos.EINVALID, "malformed upstream id")
	}
	var approved sql.NullString
	err := v.read.QueryRowContext(ctx, `SELECT approved_by FROM relay_upstreams WHERE id = $1`, id).Scan(&approved)
	if err == nil {
		return approved.Valid, nil
	} else if !isNoRows(err) {
		return false, fmt.Errorf("relay upstream: %w", err)
	}
	l := leaf(ctx, custos.ActionRelayUpstream, "")
	l.Actor, l.Detail = "system", "relay upstream "+id+" configured; it delivers nothing until security staff approve it"
	now := v.now().UnixMilli()
	err = v.announce(ctx, l, &notify.Message{Topic: "relay.upstream", To: []string{notify.ToStaffSecurity},
		Text: fmt.Sprintf("A relay started with a new upstream mail server %s (%s). Every address the relay resolves goes there: approve it only if it is your MTA or ESP (custos relay approve %s).", id, description, id)},
		func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO relay_upstreams (id, description, seen_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING`, id, description, now)
			return err
		})
	return false, err
}

// ApproveUpstream is security staff approving a registered upstream.
func (v *Vault) ApproveUpstream(ctx context.Context, id string) error {
	l, err := v.authorize(ctx, custos.ActionRelayUpstream, "")
	if err != nil {
		return err
	}
	if !custos.ValidID(custos.PrefixUpstream, id) {
		return v.deny(ctx, l, notFound("upstream"))
	}
	p := custos.PrincipalFromContext(ctx)
	l.Detail = "relay upstream " + id + " approved"
	now := v.now().UnixMilli()
	return v.announce(ctx, l, &notify.Message{Topic: "relay.upstream", To: []string{notify.ToStaffSecurity},
		Text: fmt.Sprintf("%s approved relay upstream %s: the relay now delivers through it.", p.ID, id)},
		func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
			res, err := tx.ExecContext(ctx, `UPDATE relay_upstreams SET approved_by = $1, approved_at = $2 WHERE id = $3 AND approved_by IS NULL`, p.ID, now, id)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n != 1 {
				return custos.Errorf(custos.ENOTFOUND, "no upstream %s awaits approval", id)
			}
			return nil
		})
}

// Upstreams lists the registered upstreams, for security staff.
func (v *Vault) Upstreams(ctx context.Context) ([]*custos.Upstream, error) {
	l, err := v.authorize(ctx, custos.ActionRelayUpstream, "")
	if err != nil {
		return nil, err
	}
	us, err := queryAll(ctx, v, func(s scanner) (*custos.Upstream, error) {
		var u custos.Upstream
		var seen int64
		var by sql.NullString
		var at sql.NullInt64
		if err := s.Scan(&u.ID, &u.Description, &seen, &by, &at); err != nil {
			return nil, err
		}
		u.SeenAt, u.ApprovedBy = fromMS(seen), by.String
		if at.Valid {
			t := fromMS(at.Int64)
			u.ApprovedAt = &t
		}
		return &u, nil
	}, `SELECT id, description, seen_at, approved_by, approved_at FROM relay_upstreams ORDER BY seen_at, id`)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	l.Count, l.Detail = len(us), "relay upstreams"
	return us, v.record(ctx, l, nil)
}

// upstreamApproved reports whether the upstream id was approved; an
// approval is remembered (it is never withdrawn but by a new upstream).
func (v *Vault) upstreamApproved(ctx context.Context, id string) (bool, error) {
	if _, ok := v.approved.Load(id); ok {
		return true, nil
	}
	var by sql.NullString
	err := v.read.QueryRowContext(ctx, `SELECT approved_by FROM relay_upstreams WHERE id = $1`, id).Scan(&by)
	if isNoRows(err) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("relay upstream: %w", err)
	}
	if by.Valid {
		v.approved.Store(id, true)
	}
	return by.Valid, nil
}
