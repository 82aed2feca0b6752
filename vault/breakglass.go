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

// SeverityHigh marks audit entries that must stand out.
const SeverityHigh = "high"

// RequestBreakGlass files a staff member's request for emergency access to
// a tenant: at most an hour, approved by two security staff rather than by
// the tenant, and only where the tenant's settings allow it. It expires
// undecided after an hour.
func (v *Vault) RequestBreakGlass(ctx context.Context, r *custos.AccessRequest) error {
	r.ID, r.BreakGlass = custos.NewID(custos.PrefixAccessReq), true
	l, err := v.authorize(ctx, custos.ActionBreakGlass, r.TenantID)
	if err != nil {
		return err
	}
	l.Detail, l.Severity = "break-glass request "+r.ID, SeverityHigh
	if err := v.checkRequest(ctx, l, r, func(s *custos.SupportSettings) bool { return s.BreakGlass },
		custos.Errorf(custos.EFORBIDDEN, "the tenant does not allow break-glass access")); err != nil {
		return err
	}
	return v.fileRequest(ctx, l, r, custos.BreakGlassTTL, &notify.Message{Topic: "break_glass.request", Severity: notify.SeverityHigh, TenantID: r.TenantID,
		To: []string{notify.ToStaffSecurity},
		Text: fmt.Sprintf("staff %s asks for break-glass %s access for %s (request %s, ticket %s); two security approvals needed",
			custos.RequestFromContext(ctx).Principal.ID, r.Scope, r.Duration, r.ID, r.Ticket)})
}

// MaxPendingBreakGlass bounds the list [Vault.PendingBreakGlass] answers.
const MaxPendingBreakGlass = 200

// PendingBreakGlass lists the break-glass requests of every tenant that
// await a security approval, newest first (at most
// [MaxPendingBreakGlass]): what is asked, by whom, why, and who approved
// so far. Security staff decide on them, so they read the reason; no
// tenant's data is read. Recorded as break_glass.read with the count.
func (v *Vault) PendingBreakGlass(ctx context.Context) ([]*custos.AccessRequest, error) {
	l, err := v.authorize(ctx, custos.ActionBreakGlassRead, "")
	if err != nil {
		return nil, err
	}
	out, err := queryAll(ctx, v, v.scanRequest, `SELECT `+requestColumns+` FROM access_requests
		WHERE break_glass = 1 AND status = $1 AND expires_at > $2 ORDER BY created_at DESC, id LIMIT `+fmt.Sprint(MaxPendingBreakGlass), custos.RequestPending, ms(v.now()))
	if err != nil {
		return nil, v.deny(ctx, l, fmt.Errorf("list break-glass requests: %w", err))
	}
	if err := v.openRequests(ctx, out); err != nil {
		return nil, v.deny(ctx, l, err)
	}
	l.Count = len(out)
	return out, v.record(ctx, l, nil)
}

// ApproveBreakGlass records one security approval of a break-glass
// request. The approver must differ — by principal and by owner — from the
// requester and from the other approver; the second approval opens the
// grant at once, writes a high-severity entry and notifies the tenant.
func (v *Vault) ApproveBreakGlass(ctx context.Context, tenant, id string) (*custos.AccessRequest, *custos.Grant, error) {
	l, err := v.authorize(ctx, custos.ActionBreakGlassOK, tenant)
	if err != nil {
		return nil, nil, err
	}
	l.Detail, l.Severity = "break-glass request "+safeID(custos.PrefixAccessReq, id), SeverityHigh
	if !custos.ValidID(custos.PrefixAccessReq, id) {
		return nil, nil, v.deny(ctx, l, notFound("break-glass request"))
	}
	approver := custos.RequestFromContext(ctx).Principal
	var req *custos.AccessRequest
	var g *custos.Grant
	err = v.record(ctx, l, func(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf) error {
		// Lock the request row first (a no-op update): approvals racing on
		// two nodes then run one after the other and each sees the other's.
		if _, err := tx.ExecContext(ctx, `UPDATE access_requests SET status = status WHERE id = $1 AND tenant_id = $2`, id, tenant); err != nil {
			return err
		}
		r, err := v.scanRequest(tx.QueryRowContext(ctx, `SELECT `+requestColumns+` FROM access_requests WHERE id = $1 AND tenant_id = $2`, id, tenant))
		if isNoRows(err) || (err == nil && !r.BreakGlass) {
			return notFound("break-glass request")
		} else if err != nil {
			return err
		}
		if r.Status != custos.RequestPending {
			return custos.Errorf(custos.ECONFLICT, "request is %s, not pending", r.Status)
		}
		requester, err := v.findPrincipalTx(ctx, tx, r.RequesterID)
		if err != nil {
			return err
		}
		if err := secondParty(approver, requester); err != nil {
			return err
		}
		noteSponsored(leaf, approver, requester)
		approvals, err := requestApprovals(ctx, tx, id)
		if err != nil {
			return err
		}
		for _, a := range approvals {
			if a.id == approver.ID || a.owner == approver.Identity {
				return custos.Errorf(custos.ECONFLICT, "this person has approved already; a second, different approver is needed")
			}
			first, err := v.findPrincipalTx(ctx, tx, a.id)
			if err != nil {
				return err
			}
			// Two approvals by one person's principals, or by a principal
			// and one it minted, are one approval.
			if approver.CreatedByHolderOf(first) || first.CreatedByHolderOf(approver) {
				return custos.Errorf(custos.EFORBIDDEN, "approver was created by the person it would approve with: %s", "a second, independent approver is needed")
			}
			noteSponsored(leaf, approver, first)
		}
		s, err := v.supportSettings(ctx, tx, tenant)
		if err != nil {
			return err
		}
		if !s.BreakGlass {
			return custos.Errorf(custos.EFORBIDDEN, "the tenant does not allow break-glass access")
		}
		now := v.now().UTC().Truncate(time.Millisecond)
		if _, err := tx.ExecContext(ctx, `INSERT INTO request_approvals (request_id, approver_id, approver_owner, approved_at) VALUES ($1, $2, $3, $4)`,
			id, approver.ID, approver.Identity, ms(now)); err != nil {
			return fmt.Errorf("record approval: %w", err)
		}
		for _, a := range approvals {
			r.ApprovedBy = append(r.ApprovedBy, a.id)
		}
		r.ApprovedBy = append(r.ApprovedBy, approver.ID)
		req = r
		if len(r.ApprovedBy) < custos.BreakGlassApprovals {
			leaf.Detail += fmt.Sprintf(" approval %d of %d", len(r.ApprovedBy), custos.BreakGlassApprovals)
			return nil
		}
		budget := custos.DefaultRevealBudget
		if r.Scope == custos.ScopeViewMasked {
			budget = 0
		}
		g = &custos.Grant{ID: custos.NewID(custos.PrefixGrant), TenantID: tenant, StaffID: r.RequesterID, RequestID: r.ID, Scope: r.Scope, RevealBudget: budget,
			GrantedBy: approver.ID, StartsAt: now, ExpiresAt: now.Add(min(time.Duration(r.Duration), custos.BreakGlassTTL)), BreakGlass: true}
		g.Status = g.StatusAt(now)
		if err := v.insertGrant(ctx, tx, g); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE access_requests SET status = $1, decided_by = $2, decided_at = $3, grant_id = $4 WHERE id = $5 AND status = 'pending'`,
			custos.RequestApproved, approver.ID, ms(now), g.ID, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return custos.Errorf(custos.ECONFLICT, "the request was decided meanwhile")
		}
		r.Status, r.DecidedBy, r.DecidedAt, r.GrantID = custos.RequestApproved, approver.ID, &now, g.ID
		leaf.Detail += fmt.Sprintf(" granted: grant %s to %s until %s, approved by %s and %s", g.ID, g.StaffID, g.ExpiresAt.Format(time.RFC3339), r.ApprovedBy[0], r.ApprovedBy[1])
		if err := v.enqueue(ctx, tx, &notify.Message{Topic: "break_glass.granted", Severity: notify.SeverityHigh, TenantID: tenant, To: []string{notify.ToTenantAdmins},
			Text: fmt.Sprintf("BREAK-GLASS: staff %s has emergency %s access to your data until %s (grant %s, request %s, ticket %s, approved by %s and %s); you can revoke it now",
				g.StaffID, g.Scope, g.ExpiresAt.Format(time.RFC3339), g.ID, r.ID, r.Ticket, r.ApprovedBy[0], r.ApprovedBy[1])}); err != nil {
			return err
		}
		return v.enqueue(ctx, tx, &notify.Message{Topic: "break_glass.granted", Severity: notify.SeverityHigh, TenantID: tenant, To: []string{notify.ToPrincipal(g.StaffID)},
			Text: fmt.Sprintf("your break-glass request %s is approved: grant %s until %s", r.ID, g.ID, g.ExpiresAt.Format(time.RFC3339))})
	})
	if err != nil {
		return nil, nil, err
	}
	if g != nil {
		v.kick()
	}
	// The approver is entitled to the reason it approved on.
	if err := v.openRequest(ctx, req); err != nil {
		return nil, nil, err
	}
	return req, g, nil
}

type approval struct{ id, owner string } // owner: the approver's identity (the column predates identities)

func requestApprovals(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, id string) ([]approval, error) {
	rows, err := q.QueryContext(ctx, `SELECT approver_id, approver_owner FROM request_approvals WHERE request_id = $1 ORDER BY approved_at, approver_id`, id)
	if err != nil {
		return nil, fmt.Errorf("read approvals: %w", err)
	}
	defer rows.Close()
	var out []approval
	for rows.Next() {
		var a approval
		if err := rows.Scan(&a.id, &a.owner); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// Reveals returns a tenant's reveal register, newest first: every contact
// staff revealed, under which grant, with the reason code and the staff
// member's own words (unsealed only for the tenant's admins).
func (v *Vault) Reveals(ctx context.Context, tenant string) ([]*custos.Reveal, error) {
	l, err := v.authorize(ctx, custos.ActionRevealsRead, tenant)
	if err != nil {
		return nil, err
	}
	rows, err := v.read.QueryContext(ctx, `SELECT id, grant_id, staff_id, token, reason_code, reason_sealed, revealed_at FROM reveals WHERE tenant_id = $1 ORDER BY revealed_at DESC, id`, tenant)
	if err != nil {
		return nil, v.deny(ctx, l, fmt.Errorf("list reveals: %w", err))
	}
	type row struct {
		r      custos.Reveal
		sealed string
	}
	var rs []row
	for rows.Next() {
		var x row
		var at int64
		if err := rows.Scan(&x.r.ID, &x.r.GrantID, &x.r.StaffID, &x.r.Token, &x.r.ReasonCode, &x.sealed, &at); err != nil {
			rows.Close()
			return nil, v.deny(ctx, l, fmt.Errorf("scan reveal: %w", err))
		}
		x.r.TenantID, x.r.RevealedAt = tenant, fromMS(at)
		rs = append(rs, x)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, v.deny(ctx, l, err)
	}
	out := []*custos.Reveal{}
	if len(rs) == 0 {
		return out, v.record(ctx, l, nil)
	}
	k, err := v.tenantKeys(ctx, tenant)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	l.Count = len(rs)
	if err := v.record(ctx, l, nil); err != nil {
		return nil, err
	}
	for i := range rs {
		reason, err := openBase64(k, rs[i].sealed, adReveal(tenant, rs[i].r.ID))
		if err != nil {
			return nil, fmt.Errorf("open reveal reason %s: %w", rs[i].r.ID, err)
		}
		rs[i].r.Reason = reason
		out = append(out, &rs[i].r)
	}
	return out, nil
}
