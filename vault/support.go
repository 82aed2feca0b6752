package vault

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/addr"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/keys"
	"github.com/custos-dev/custos/notify"
)

// supportSettings reads a tenant's settings; a tenant without a row has
// support access off (the default) and the default maximum grant.
func (v *Vault) supportSettings(ctx context.Context, q querier, tenant string) (*custos.SupportSettings, error) {
	s := &custos.SupportSettings{MaxGrant: custos.Duration(custos.DefaultGrantTTL), ReasonCodes: []string{}}
	var on, bg int
	var maxMS int64
	var codes string
	var pattern, webhook, issuer sql.NullString
	err := q.QueryRowContext(ctx, `SELECT support_access, max_grant_ms, reason_codes, break_glass, ticket_pattern, ticket_webhook, sso_issuer FROM tenant_settings WHERE tenant_id = $1`, tenant).
		Scan(&on, &maxMS, &codes, &bg, &pattern, &webhook, &issuer)
	if isNoRows(err) {
		return s, nil
	} else if err != nil {
		return nil, fmt.Errorf("read support settings: %w", err)
	}
	// Settings custos did not write are no settings: support access off.
	if err := v.checkRow(ctx, q, "tenant_settings", tenant); errors.Is(err, errForged) {
		return s, nil
	} else if err != nil {
		return nil, err
	}
	s.SupportAccess, s.MaxGrant, s.BreakGlass = on != 0, custos.Duration(time.Duration(maxMS)*time.Millisecond), bg != 0
	s.ReasonCodes = append(s.ReasonCodes, strings.Fields(codes)...)
	s.TicketPattern, s.TicketWebhook, s.SSOIssuer = pattern.String, webhook.String, issuer.String
	return s, nil
}

// maskWebhook is s as shown to a reader: the webhook URL only as "set"
// (its path may be a secret).
func maskWebhook(s *custos.SupportSettings) *custos.SupportSettings {
	if s.TicketWebhook != "" {
		s.TicketWebhook = custos.TicketWebhookKept
	}
	return s
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// SupportSettings returns a tenant's support-access settings.
func (v *Vault) SupportSettings(ctx context.Context, tenant string) (*custos.SupportSettings, error) {
	l, err := v.authorize(ctx, custos.ActionSupportRead, tenant)
	if err != nil {
		return nil, err
	}
	if _, err := v.findTenant(ctx, tenant); err != nil {
		return nil, v.deny(ctx, l, err)
	}
	s, err := v.supportSettings(ctx, v.read, tenant)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	return maskWebhook(s), v.record(ctx, l, nil)
}

// SetSupportSettings turns support access on or off for a tenant and sets
// the longest grant it allows (at most the hard cap).
func (v *Vault) SetSupportSettings(ctx context.Context, tenant string, s *custos.SupportSettings) error {
	l, err := v.authorize(ctx, custos.ActionSupportSettings, tenant)
	if err != nil {
		return err
	}
	if s.MaxGrant <= 0 || time.Duration(s.MaxGrant) > custos.MaxGrantTTL {
		return v.deny(ctx, l, custos.Errorf(custos.EINVALID, "max_grant must be positive and at most %s", custos.MaxGrantTTL))
	}
	for _, c := range s.ReasonCodes {
		if !slices.Contains(custos.ReasonCodes, c) {
			return v.deny(ctx, l, custos.Errorf(custos.EINVALID, "reason_codes must be among %s", strings.Join(custos.ReasonCodes, ", ")))
		}
	}
	if s.ReasonCodes == nil {
		s.ReasonCodes = []string{}
	}
	if _, err := custos.CompileTicketPattern(s.TicketPattern); err != nil {
		return v.deny(ctx, l, err)
	}
	if err := custos.CheckTicketWebhook(s.TicketWebhook); err != nil {
		return v.deny(ctx, l, err)
	}
	errNoPattern := custos.Errorf(custos.EINVALID, "ticket_webhook needs a ticket_pattern")
	if s.TicketWebhook != "" && s.TicketWebhook != custos.TicketWebhookKept && s.TicketPattern == "" {
		return v.deny(ctx, l, errNoPattern)
	}
	if _, err := v.findTenant(ctx, tenant); err != nil {
		return v.deny(ctx, l, err)
	}
	l.Detail = fmt.Sprintf("support_access=%t max_grant=%s reason_codes=%s break_glass=%t ticket_pattern=%s ticket_webhook=%s", s.SupportAccess, s.MaxGrant, strings.Join(s.ReasonCodes, ","), s.BreakGlass,
		setOrNot(s.TicketPattern), setOrNot(s.TicketWebhook))
	admin := custos.RequestFromContext(ctx).Principal
	// Who can reach the tenant's data changes: its admins (all of them, not
	// only the one who changed it) and security hear of it at once.
	msg := &notify.Message{Topic: "support.settings", Severity: notify.SeverityHigh, TenantID: tenant, To: []string{notify.ToTenantAdmins, notify.ToStaffSecurity},
		Text: fmt.Sprintf("support access of tenant %s changed by %s: %s", tenant, admin.ID, l.Detail)}
	return v.announce(ctx, l, msg, func(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf) error {
		now := ms(v.now())
		if s.TicketWebhook == custos.TicketWebhookKept {
			// Kept as stored (none stored: none).
			cur, err := v.supportSettings(ctx, tx, tenant)
			if err != nil {
				return err
			}
			s.TicketWebhook = cur.TicketWebhook
			if s.TicketWebhook != "" && s.TicketPattern == "" {
				return errNoPattern
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO tenant_settings (tenant_id, support_access, max_grant_ms, reason_codes, break_glass, updated_at, ticket_pattern, ticket_webhook) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (tenant_id) DO UPDATE SET support_access = excluded.support_access, max_grant_ms = excluded.max_grant_ms,
				reason_codes = excluded.reason_codes, break_glass = excluded.break_glass, updated_at = excluded.updated_at,
				ticket_pattern = excluded.ticket_pattern, ticket_webhook = excluded.ticket_webhook`,
			tenant, boolInt(s.SupportAccess), time.Duration(s.MaxGrant).Milliseconds(), strings.Join(s.ReasonCodes, " "), boolInt(s.BreakGlass), now,
			nullString(s.TicketPattern), nullString(s.TicketWebhook))
		if err != nil {
			return err
		}
		if err := v.reseal(ctx, tx, "tenant_settings", tenant); err != nil {
			return err
		}
		// Turning access off ends the grants it allowed, in this
		// transaction: no page or reveal commits under them afterwards.
		for _, kind := range []struct {
			on         bool
			breakGlass int
		}{{s.SupportAccess, 0}, {s.BreakGlass, 1}} {
			if kind.on {
				continue
			}
			ended, err := queryIDs(ctx, tx, `UPDATE grants SET ended_at = $1, ended_by = $2 WHERE tenant_id = $3 AND break_glass = $4 AND ended_at IS NULL AND expires_at > $1 RETURNING id`,
				now, admin.ID, tenant, kind.breakGlass)
			if err != nil {
				return fmt.Errorf("end grants: %w", err)
			}
			if err := v.reseal(ctx, tx, "grants", ended...); err != nil {
				return err
			}
			if n := len(ended); n > 0 {
				leaf.Detail += fmt.Sprintf("; ended %d grants", n)
			}
		}
		return nil
	})
}

// RequestAccess files a staff member's request for support access. It is
// refused while the tenant has support access off.
func (v *Vault) RequestAccess(ctx context.Context, r *custos.AccessRequest) error {
	r.ID = custos.NewID(custos.PrefixAccessReq)
	l, err := v.authorize(ctx, custos.ActionRequestCreate, r.TenantID)
	if err != nil {
		return err
	}
	l.Detail = "request " + r.ID
	if err := v.checkRequest(ctx, l, r, func(s *custos.SupportSettings) bool { return s.SupportAccess },
		custos.Errorf(custos.EFORBIDDEN, "the tenant has support access turned off")); err != nil {
		return err
	}
	return v.fileRequest(ctx, l, r, custos.PendingRequestTTL, &notify.Message{Topic: "support.request", TenantID: r.TenantID, To: []string{notify.ToTenantAdmins},
		Text: fmt.Sprintf("staff %s asks for %s access for %s (request %s, ticket %s); approve or deny it", custos.RequestFromContext(ctx).Principal.ID, r.Scope, r.Duration, r.ID, r.Ticket)})
}

// fileRequest stores a validated request, pending for ttl, and announces it.
func (v *Vault) fileRequest(ctx context.Context, l audit.Leaf, r *custos.AccessRequest, ttl time.Duration, m *notify.Message) error {
	now := v.now().UTC().Truncate(time.Millisecond)
	r.RequesterID = custos.RequestFromContext(ctx).Principal.ID
	r.Status, r.CreatedAt, r.ExpiresAt = custos.RequestPending, now, now.Add(ttl)
	reason, err := v.sealTenantText(ctx, r.TenantID, r.Reason, adRequestReason(r.TenantID, r.ID))
	if err != nil {
		return v.deny(ctx, l, err)
	}
	return v.announce(ctx, l, m, func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO access_requests (id, tenant_id, requester_id, reason, ticket, scope, duration_ms, status, created_at, expires_at, break_glass)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
			r.ID, r.TenantID, r.RequesterID, reason, r.Ticket, string(r.Scope), time.Duration(r.Duration).Milliseconds(), r.Status, ms(r.CreatedAt), ms(r.ExpiresAt), boolInt(r.BreakGlass))
		return err
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

const requestColumns = `id, tenant_id, requester_id, reason, ticket, scope, duration_ms, status, created_at, expires_at, decided_by, decided_at, comment, grant_id, break_glass`

type scanner interface{ Scan(...any) error }

func (v *Vault) scanRequest(s scanner) (*custos.AccessRequest, error) {
	var r custos.AccessRequest
	var scope string
	var dur, created, expires int64
	var decidedBy, comment, grant sql.NullString
	var decidedAt sql.NullInt64
	var bg int
	if err := s.Scan(&r.ID, &r.TenantID, &r.RequesterID, &r.Reason, &r.Ticket, &scope, &dur, &r.Status, &created, &expires, &decidedBy, &decidedAt, &comment, &grant, &bg); err != nil {
		return nil, err
	}
	r.BreakGlass = bg != 0
	r.Scope, r.Duration = custos.SupportScope(scope), custos.Duration(time.Duration(dur)*time.Millisecond)
	r.CreatedAt, r.ExpiresAt, r.DecidedAt = fromMS(created), fromMS(expires), fromNullMS(decidedAt)
	r.DecidedBy, r.Comment, r.GrantID = decidedBy.String, comment.String, grant.String
	if r.Status == custos.RequestPending && !v.now().Before(r.ExpiresAt) {
		r.Status = custos.RequestExpired
	}
	return &r, nil
}

// AccessRequests lists a tenant's access requests, newest first: what was
// asked, by whom, why — never any data.
func (v *Vault) AccessRequests(ctx context.Context, tenant string) ([]*custos.AccessRequest, error) {
	l, err := v.authorize(ctx, custos.ActionSupportRead, tenant)
	if err != nil {
		return nil, err
	}
	out, err := queryAll(ctx, v, v.scanRequest, `SELECT `+requestColumns+` FROM access_requests WHERE tenant_id = $1 ORDER BY created_at DESC, id`, tenant)
	if err != nil {
		return nil, v.deny(ctx, l, fmt.Errorf("list requests: %w", err))
	}
	if err := v.openRequests(ctx, out); err != nil {
		return nil, v.deny(ctx, l, err)
	}
	l.Count = len(out)
	return out, v.record(ctx, l, nil)
}

// openRequests opens each request's sealed texts and names a break-glass
// request's approvers so far.
func (v *Vault) openRequests(ctx context.Context, rs []*custos.AccessRequest) error {
	for _, r := range rs {
		if err := v.openRequest(ctx, r); err != nil {
			return err
		}
		if !r.BreakGlass {
			continue
		}
		as, err := requestApprovals(ctx, v.read, r.ID)
		if err != nil {
			return err
		}
		for _, a := range as {
			r.ApprovedBy = append(r.ApprovedBy, a.id)
		}
	}
	return nil
}

// Decision is a tenant admin's answer to an access request.
type Decision struct {
	Approve      bool
	Duration     time.Duration // 0: as requested; may only shorten
	RevealBudget int           // 0: the default
	Comment      string
}

// DecideRequest approves (creating the grant, which starts now) or denies
// a pending request. Nobody decides a request they filed, under any of
// their principals: the decider's identity must differ from the
// requester's, and the decider must not be a principal the requester's
// holder created.
func (v *Vault) DecideRequest(ctx context.Context, tenant, id string, d Decision) (*custos.Grant, error) {
	l, err := v.authorize(ctx, custos.ActionRequestDecide, tenant)
	if err != nil {
		return nil, err
	}
	l.Detail = "request " + safeID(custos.PrefixAccessReq, id)
	if !custos.ValidID(custos.PrefixAccessReq, id) {
		return nil, v.deny(ctx, l, notFound("access request"))
	}
	if len(d.Comment) > 1000 || d.Duration < 0 || d.RevealBudget < 0 || d.RevealBudget > 1000 {
		return nil, v.deny(ctx, l, custos.Errorf(custos.EINVALID, "duration and reveal_budget must not be negative, reveal_budget at most 1000, comment at most 1000 characters"))
	}
	decider := custos.RequestFromContext(ctx).Principal
	comment, err := v.sealTenantText(ctx, tenant, d.Comment, adDecisionComment(tenant, id))
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	var g *custos.Grant
	err = v.record(ctx, l, func(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf) error {
		r, err := v.scanRequest(tx.QueryRowContext(ctx, `SELECT `+requestColumns+` FROM access_requests WHERE id = $1 AND tenant_id = $2`, id, tenant))
		if isNoRows(err) {
			return notFound("access request")
		} else if err != nil {
			return err
		}
		if r.Status != custos.RequestPending {
			return custos.Errorf(custos.ECONFLICT, "request is %s, not pending", r.Status)
		}
		if r.BreakGlass {
			return custos.Errorf(custos.EFORBIDDEN, "a break-glass request is approved by security staff; the tenant may revoke its grant")
		}
		requester, err := v.findPrincipalTx(ctx, tx, r.RequesterID)
		if err != nil {
			return err
		}
		if err := secondParty(decider, requester); err != nil {
			return err
		}
		noteSponsored(leaf, decider, requester)
		now := v.now().UTC().Truncate(time.Millisecond)
		status := custos.RequestDenied
		var grantID sql.NullString
		if d.Approve {
			s, err := v.supportSettings(ctx, tx, tenant)
			if err != nil {
				return err
			}
			if !s.SupportAccess {
				return custos.Errorf(custos.EFORBIDDEN, "the tenant has support access turned off")
			}
			dur := time.Duration(r.Duration)
			if d.Duration > 0 {
				if d.Duration > time.Duration(r.Duration) {
					return custos.Errorf(custos.EINVALID, "an approval may shorten the requested duration, not lengthen it")
				}
				dur = d.Duration
			}
			dur = min(dur, time.Duration(s.MaxGrant), custos.MaxGrantTTL)
			budget := custos.DefaultRevealBudget
			if d.RevealBudget > 0 {
				budget = d.RevealBudget
			}
			if r.Scope == custos.ScopeViewMasked {
				budget = 0
			}
			g = &custos.Grant{ID: custos.NewID(custos.PrefixGrant), TenantID: tenant, StaffID: r.RequesterID, RequestID: r.ID, Scope: r.Scope,
				RevealBudget: budget, GrantedBy: decider.ID, StartsAt: now, ExpiresAt: now.Add(dur)}
			g.Status = g.StatusAt(now)
			if err := v.insertGrant(ctx, tx, g); err != nil {
				return err
			}
			status, grantID = custos.RequestApproved, sql.NullString{String: g.ID, Valid: true}
			leaf.Detail += " approved: grant " + g.ID + " until " + g.ExpiresAt.Format(time.RFC3339)
		} else {
			leaf.Detail += " denied"
		}
		// Guarded by the status it read: of two decisions racing on two
		// nodes, the second finds the request decided and rolls back.
		res, err := tx.ExecContext(ctx, `UPDATE access_requests SET status = $1, decided_by = $2, decided_at = $3, comment = $4, grant_id = $5
			WHERE id = $6 AND status = 'pending' AND expires_at > $3`,
			status, decider.ID, ms(now), comment, grantID, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != 1 {
			return custos.Errorf(custos.ECONFLICT, "the request was decided meanwhile")
		}
		// Security hears of every grant that opens a tenant's data to staff.
		m := &notify.Message{Topic: "support.decision", TenantID: tenant, To: []string{notify.ToPrincipal(r.RequesterID), notify.ToStaffSecurity},
			Text: fmt.Sprintf("request %s was denied by %s", id, decider.ID)}
		if g != nil {
			m.Text = fmt.Sprintf("request %s was approved by %s: grant %s, %s, until %s, reveal budget %d", id, decider.ID, g.ID, g.Scope, g.ExpiresAt.Format(time.RFC3339), g.RevealBudget)
		}
		return v.enqueue(ctx, tx, m)
	})
	if err != nil {
		return nil, err
	}
	v.kick()
	return g, nil
}

func (v *Vault) insertGrant(ctx context.Context, tx *sql.Tx, g *custos.Grant) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO grants (id, tenant_id, staff_id, request_id, scope, reveal_budget, reveals_used, granted_by, starts_at, expires_at, break_glass)
		VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, $9, $10)`,
		g.ID, g.TenantID, g.StaffID, nullStr(g.RequestID), string(g.Scope), g.RevealBudget, g.GrantedBy, ms(g.StartsAt), ms(g.ExpiresAt), boolInt(g.BreakGlass))
	if err != nil {
		return fmt.Errorf("insert grant: %w", err)
	}
	return v.reseal(ctx, tx, "grants", g.ID)
}

func nullStr(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

const grantColumns = `id, tenant_id, staff_id, request_id, scope, reveal_budget, reveals_used, granted_by, starts_at, expires_at, ended_at, ended_by, break_glass`

func (v *Vault) scanGrant(s scanner) (*custos.Grant, error) {
	var g custos.Grant
	var req, endedBy sql.NullString
	var scope string
	var starts, expires int64
	var ended sql.NullInt64
	var bg int
	if err := s.Scan(&g.ID, &g.TenantID, &g.StaffID, &req, &scope, &g.RevealBudget, &g.RevealsUsed, &g.GrantedBy, &starts, &expires, &ended, &endedBy, &bg); err != nil {
		return nil, err
	}
	g.BreakGlass = bg != 0
	g.RequestID, g.Scope, g.EndedBy = req.String, custos.SupportScope(scope), endedBy.String
	g.StartsAt, g.ExpiresAt, g.EndedAt = fromMS(starts), fromMS(expires), fromNullMS(ended)
	g.Status = g.StatusAt(v.now())
	return &g, nil
}

// Grants lists every grant of a tenant, active and ended, newest first.
func (v *Vault) Grants(ctx context.Context, tenant string) ([]*custos.Grant, error) {
	l, err := v.authorize(ctx, custos.ActionSupportRead, tenant)
	if err != nil {
		return nil, err
	}
	return listAll(ctx, v, l, "grants", v.scanGrant, `SELECT `+grantColumns+` FROM grants WHERE tenant_id = $1 ORDER BY starts_at DESC, id`, tenant)
}

// CreateGrant lets a tenant admin grant support access without a request.
func (v *Vault) CreateGrant(ctx context.Context, g *custos.Grant, dur time.Duration) error {
	g.ID = custos.NewID(custos.PrefixGrant)
	l, err := v.authorize(ctx, custos.ActionGrantCreate, g.TenantID)
	if err != nil {
		return err
	}
	l.Detail = "grant " + g.ID
	if !g.Scope.Valid() || dur <= 0 || g.RevealBudget < 0 || g.RevealBudget > 1000 {
		return v.deny(ctx, l, custos.Errorf(custos.EINVALID, "scope must be view_masked or view_masked+reveal, duration positive, reveal_budget 0 to 1000"))
	}
	admin := custos.RequestFromContext(ctx).Principal
	err = v.record(ctx, l, func(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf) error {
		staff, err := v.findPrincipalTx(ctx, tx, g.StaffID)
		if custos.ErrorCode(err) == custos.ENOTFOUND || (err == nil && staff.Kind != custos.KindStaffSupport) {
			return custos.Errorf(custos.EINVALID, "staff_id must name a staff_support principal")
		} else if err != nil {
			return err
		}
		if err := secondParty(admin, staff); err != nil {
			return err
		}
		noteSponsored(leaf, admin, staff)
		s, err := v.supportSettings(ctx, tx, g.TenantID)
		if err != nil {
			return err
		}
		if !s.SupportAccess {
			return custos.Errorf(custos.EFORBIDDEN, "support access is off for this tenant: turn it on before granting")
		}
		now := v.now().UTC().Truncate(time.Millisecond)
		if g.Scope == custos.ScopeViewMasked {
			g.RevealBudget = 0
		} else if g.RevealBudget == 0 {
			g.RevealBudget = custos.DefaultRevealBudget
		}
		g.GrantedBy, g.StartsAt, g.ExpiresAt = admin.ID, now, now.Add(min(dur, time.Duration(s.MaxGrant), custos.MaxGrantTTL))
		g.Status = g.StatusAt(now)
		leaf.Detail += " until " + g.ExpiresAt.Format(time.RFC3339)
		if err := v.insertGrant(ctx, tx, g); err != nil {
			return err
		}
		return v.enqueue(ctx, tx, &notify.Message{Topic: "grant.created", TenantID: g.TenantID, To: []string{notify.ToPrincipal(g.StaffID), notify.ToStaffSecurity},
			Text: fmt.Sprintf("%s granted %s %s access: grant %s until %s, reveal budget %d", admin.ID, g.StaffID, g.Scope, g.ID, g.ExpiresAt.Format(time.RFC3339), g.RevealBudget)})
	})
	if err == nil {
		v.kick()
	}
	return err
}

// RevokeGrant ends a grant at once, by the tenant (revoke) or by the staff
// member holding it (end: "I'm done").
func (v *Vault) RevokeGrant(ctx context.Context, tenant, id string) (*custos.Grant, error) {
	p := custos.RequestFromContext(ctx).Principal
	action := custos.ActionGrantRevoke
	if p != nil && p.Kind == custos.KindStaffSupport {
		action = custos.ActionGrantEnd
	}
	l, err := v.authorize(ctx, action, tenant)
	if err != nil {
		return nil, err
	}
	l.Detail = "grant " + safeID(custos.PrefixGrant, id)
	if !custos.ValidID(custos.PrefixGrant, id) {
		return nil, v.deny(ctx, l, notFound("grant"))
	}
	var g *custos.Grant
	err = v.record(ctx, l, func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
		var err error
		g, err = v.scanGrant(tx.QueryRowContext(ctx, `SELECT `+grantColumns+` FROM grants WHERE id = $1 AND tenant_id = $2`, id, tenant))
		if isNoRows(err) {
			return notFound("grant")
		} else if err != nil {
			return err
		}
		if action == custos.ActionGrantEnd && g.StaffID != p.ID {
			return notFound("grant")
		}
		if g.Status != custos.GrantActive {
			return custos.Errorf(custos.ECONFLICT, "grant is %s already", g.Status)
		}
		now := v.now().UTC().Truncate(time.Millisecond)
		if _, err := tx.ExecContext(ctx, `UPDATE grants SET ended_at = $1, ended_by = $2 WHERE id = $3`, ms(now), p.ID, id); err != nil {
			return err
		}
		if err := v.reseal(ctx, tx, "grants", id); err != nil {
			return err
		}
		g.EndedAt, g.EndedBy = &now, p.ID
		g.Status = g.StatusAt(now)
		m := &notify.Message{Topic: "grant.revoked", TenantID: tenant, To: []string{notify.ToPrincipal(g.StaffID)},
			Text: fmt.Sprintf("grant %s was revoked by %s", g.ID, p.ID)}
		if g.Status == custos.GrantEnded {
			m.Topic, m.To, m.Text = "grant.ended", []string{notify.ToTenantAdmins}, fmt.Sprintf("staff %s ended grant %s early", p.ID, g.ID)
		}
		return v.enqueue(ctx, tx, m)
	})
	if err != nil {
		return nil, err
	}
	v.kick()
	return g, nil
}

// authorizeGrant is [Vault.authorize] for a staff member's access to
// tenant under a grant: the leaf names the list (if any) and the grant,
// and a caller holding no active grant is recorded as a refusal.
func (v *Vault) authorizeGrant(ctx context.Context, action custos.Action, tenant, list string) (audit.Leaf, *custos.Grant, error) {
	l, err := v.authorize(ctx, action, tenant)
	if err != nil {
		return l, nil, err
	}
	l.List = safeID(custos.PrefixList, list)
	g, err := v.staffGrant(ctx, tenant)
	if err != nil {
		return l, nil, v.deny(ctx, l, err)
	}
	l.Detail = "grant " + g.ID
	return l, g, nil
}

// checkRequest records l as a refusal unless r's tenant exists, its
// settings allow the request (otherwise off) and r is valid. The
// tenant's setting decides before the request is looked at.
func (v *Vault) checkRequest(ctx context.Context, l audit.Leaf, r *custos.AccessRequest, allowed func(*custos.SupportSettings) bool, off error) error {
	if _, err := v.findTenant(ctx, r.TenantID); err != nil {
		return v.deny(ctx, l, err)
	}
	s, err := v.supportSettings(ctx, v.read, r.TenantID)
	if err != nil {
		return v.deny(ctx, l, err)
	}
	if !allowed(s) {
		return v.deny(ctx, l, off)
	}
	if err := r.Validate(); err != nil {
		return v.deny(ctx, l, err)
	}
	return nil
}

// staffGrant returns the caller's active grant on tenant, or EFORBIDDEN.
func (v *Vault) staffGrant(ctx context.Context, tenant string) (*custos.Grant, error) {
	p := custos.RequestFromContext(ctx).Principal
	g, err := v.scanGrant(v.read.QueryRowContext(ctx, `SELECT `+grantColumns+` FROM grants
		WHERE staff_id = $1 AND tenant_id = $2 AND ended_at IS NULL AND expires_at > $3 ORDER BY expires_at DESC LIMIT 1`, p.ID, tenant, ms(v.now())))
	if isNoRows(err) {
		return nil, custos.Errorf(custos.EFORBIDDEN, "no active grant on this tenant")
	} else if err != nil {
		return nil, err
	}
	if err := v.checkRow(ctx, v.read, "grants", g.ID); errors.Is(err, errForged) {
		return nil, custos.Errorf(custos.EFORBIDDEN, "no active grant on this tenant")
	} else if err != nil {
		return nil, err
	}
	return g, nil
}

// SupportContacts returns a masked page of a list to a staff member
// holding an active grant on the tenant. Pages hold at most 50 contacts.
func (v *Vault) SupportContacts(ctx context.Context, tenant, list, after string, limit int) (*custos.Page[*custos.MaskedContact], error) {
	l, g, err := v.authorizeGrant(ctx, custos.ActionSupportView, tenant, list)
	if err != nil {
		return nil, err
	}
	if limit <= 0 || limit > custos.MaxSupportPage {
		return nil, v.deny(ctx, l, custos.Errorf(custos.EINVALID, "limit must be 1 to %d for support access", custos.MaxSupportPage))
	}
	if _, err := v.checkList(ctx, l, tenant, list, checkPage(after, limit)); err != nil {
		return nil, err
	}
	ss, next, k, err := v.loadPage(ctx, &l, tenant, list, after, limit, v.spendPage(g))
	if err != nil {
		return nil, err
	}
	v.kick()
	return openPage(k, ss, next, mask)
}

// spendPage returns the Apply that counts one page against the grant's
// hourly cap, in the leaf's own transaction, which also rechecks that the
// grant is still active. A refused page names no tokens in its leaf.
func (v *Vault) spendPage(g *custos.Grant) func(context.Context, *sql.Tx, *audit.Leaf) error {
	grantID := g.ID
	return func(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf) error {
		now := ms(v.now())
		res, err := tx.ExecContext(ctx, `UPDATE grants SET
				page_window_at = CASE WHEN page_window_at <= $2 THEN $3 ELSE page_window_at END,
				pages_in_window = CASE WHEN page_window_at <= $2 THEN 1 ELSE pages_in_window + 1 END
			WHERE id = $1 AND ended_at IS NULL AND expires_at > $3 AND (page_window_at <= $2 OR pages_in_window < $4)`,
			grantID, now-time.Hour.Milliseconds(), now, custos.SupportPagesPerHour)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != 1 {
			leaf.Tokens, leaf.Count = nil, 0 // refused: nothing was read
			return custos.Errorf(custos.ETOOMANY, "the grant has ended or has served its %d pages this hour", custos.SupportPagesPerHour)
		}
		if err := v.firstUse(ctx, tx, g, "a masked view"); err != nil {
			return err
		}
		return v.reseal(ctx, tx, "grants", grantID)
	}
}

// SupportContact returns one contact, masked, to a staff member holding an
// active grant: the exact-token search support needs ("contact ct_… bounces").
// It counts as a page. There is no search by address, prefix or pattern for
// staff: on masked fields any of them would be an oracle.
func (v *Vault) SupportContact(ctx context.Context, tenant, token string) (*custos.MaskedContact, error) {
	l, g, err := v.authorizeGrant(ctx, custos.ActionSupportView, tenant, "")
	if err != nil {
		return nil, err
	}
	s, err := v.findContact(ctx, tenant, token)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	k, err := v.listKeys(ctx, tenant, s.list)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	l.List, l.Tokens, l.Count = s.list, []string{s.token}, 1
	if err := v.record(ctx, l, v.spendPage(g)); err != nil {
		return nil, err
	}
	c, err := open(k, s)
	if err != nil {
		return nil, err
	}
	v.kick()
	return mask(c), nil
}

// mask renders a contact for staff: the address masked, every attribute
// value replaced (names stay, so staff can tell which fields are set).
func mask(c *custos.Contact) *custos.MaskedContact {
	m := &custos.MaskedContact{Token: c.Token, ListID: c.ListID, Email: addr.Mask(c.Email), Consent: c.Consent, CreatedAt: c.CreatedAt}
	var attrs map[string]json.RawMessage
	if len(c.Attributes) > 0 && json.Unmarshal(c.Attributes, &attrs) == nil && len(attrs) > 0 {
		m.Attributes = make(map[string]string, len(attrs))
		for k := range attrs {
			m.Attributes[k] = "***"
		}
	}
	return m
}

// Reveal shows one contact in clear to a staff member whose active grant
// allows reveals, with a reason code from the fixed list and free text,
// counted against the grant's budget. The budget is spent in the same
// transaction as the audit leaf, and only if the grant is still active
// when that transaction commits: a reveal racing a revoke either
// committed before it or fails.
func (v *Vault) Reveal(ctx context.Context, tenant, token, reasonCode, reason string) (*custos.Contact, error) {
	// The grant decides before the request's contents are looked at: who
	// holds none learns nothing from how a reveal would be validated.
	l, g, err := v.authorizeGrant(ctx, custos.ActionSupportReveal, tenant, "")
	if err != nil {
		return nil, err
	}
	l.Detail = "reason " + reasonCode + " " + l.Detail
	if !slices.Contains(custos.ReasonCodes, reasonCode) {
		l.Detail = "reason invalid, grant " + g.ID
		return nil, v.deny(ctx, l, custos.Errorf(custos.EINVALID, "reason_code must be one of %s", strings.Join(custos.ReasonCodes, ", ")))
	}
	if err := custos.CheckReason(reason); err != nil {
		return nil, v.deny(ctx, l, err)
	}
	if g.Scope != custos.ScopeViewMaskedReveal {
		return nil, v.deny(ctx, l, custos.Errorf(custos.EFORBIDDEN, "the grant does not allow reveals"))
	}
	st, err := v.supportSettings(ctx, v.read, tenant)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	// Turning either kind of access off ends its grants, so a grant that
	// is active finds its kind on — unless the settings row failed its MAC
	// and reads as the defaults: then its reason policy (ticket pattern,
	// webhook) may have been removed by hand, and nothing is revealed.
	if !st.SupportAccess && !(g.BreakGlass && st.BreakGlass) {
		return nil, v.deny(ctx, l, custos.Errorf(custos.EFORBIDDEN, "support access is off for this tenant"))
	}
	if !st.Accepts(reasonCode) {
		return nil, v.deny(ctx, l, custos.Errorf(custos.EFORBIDDEN, "the tenant does not accept reason code %s", reasonCode))
	}
	if err := v.checkTicket(ctx, st, tenant, reason); err != nil {
		return nil, v.deny(ctx, l, err)
	}
	s, err := v.namedContact(ctx, &l, tenant, token, "")
	if err != nil {
		return nil, err
	}
	k, err := v.tenantKeys(ctx, tenant) // the reveal register is the tenant's
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	lk, err := v.listKeys(ctx, tenant, s.list)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	rv := &custos.Reveal{ID: custos.NewID(custos.PrefixReveal), TenantID: tenant, GrantID: g.ID, StaffID: g.StaffID, Token: s.token,
		ReasonCode: reasonCode, RevealedAt: v.now().UTC().Truncate(time.Millisecond)}
	sealedReason, err := k.Seal([]byte(reason), adReveal(tenant, rv.ID))
	if err != nil {
		return nil, v.deny(ctx, l, fmt.Errorf("seal reveal reason: %w", err))
	}
	l.Detail += " reveal " + rv.ID
	// The reason's keyed digest, so that one reason reused across many
	// reveals can be counted (reveal-reason-reused) without the text:
	// the tenant's PRF, separated from address indexes by its prefix, is
	// shredded with the tenant.
	l.Digest = hex.EncodeToString(k.BlindIndex("custos/reveal-reason\x00" + custos.ReasonKey(reason)))
	err = v.record(ctx, l, func(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf) error {
		if err := frozenTx(ctx, tx, tenant); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE grants SET reveals_used = reveals_used + 1
			WHERE id = $1 AND ended_at IS NULL AND expires_at > $2 AND reveals_used < reveal_budget`, g.ID, ms(v.now()))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != 1 {
			return custos.Errorf(custos.EFORBIDDEN, "the grant has ended or its reveal budget is spent")
		}
		if err := v.reseal(ctx, tx, "grants", g.ID); err != nil {
			return err
		}
		if err := v.firstUse(ctx, tx, g, "a reveal"); err != nil {
			return err
		}
		leaf.Count = 1
		_, err = tx.ExecContext(ctx, `INSERT INTO reveals (id, tenant_id, grant_id, staff_id, token, reason_code, reason_sealed, revealed_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, rv.ID, tenant, g.ID, g.StaffID, s.token, reasonCode, base64.StdEncoding.EncodeToString(sealedReason), ms(rv.RevealedAt))
		return err
	})
	if err != nil {
		return nil, err
	}
	v.kick() // a first use put a notice in the outbox
	return open(lk, s)
}

// Free text at rest. Reasons, comments and notes people type can hold
// anything, addresses included, so they are sealed like contact
// attributes: with the tenant's AEAD keyset where the text concerns one
// tenant (access-request reasons, decision comments, reasons for freezing
// a tenant: crypto-shredding the tenant destroys them too), otherwise
// with a system AEAD keyset wrapped by the KEK (alert notes, reasons for
// suspending a principal). The associated data binds each value to its
// row, so a sealed value copied to another row does not open. A stored
// value says which key sealed it; a value without a prefix is a row from
// before sealing, readable as it is until [Vault.SealFreeText] seals it.
const (
	sealedTenant = "sealed:t1:"
	sealedSystem = "sealed:s1:"
)

// freeTextKeyName names the system AEAD keyset in system_keys.
const freeTextKeyName = "free-text"

func adRequestReason(tenant, id string) []byte { return []byte(tenant + "/" + id + "/request-reason") }
func adDecisionComment(tenant, id string) []byte {
	return []byte(tenant + "/" + id + "/decision-comment")
}
func adAlertNote(id string) []byte { return []byte("alert/" + id + "/note") }
func adContainmentReason(target, id string) []byte {
	return []byte("containment/" + target + "/" + id + "/reason")
}

type aeadKey interface {
	Seal(plaintext, associatedData []byte) ([]byte, error)
	Open(ciphertext, associatedData []byte) ([]byte, error)
}

// sealText seals s under k; the empty string stays empty (it says nothing).
func sealText(k aeadKey, prefix, s string, ad []byte) (string, error) {
	if s == "" {
		return "", nil
	}
	ct, err := k.Seal([]byte(s), ad)
	if err != nil {
		return "", fmt.Errorf("seal free text: %w", err)
	}
	return prefix + base64.StdEncoding.EncodeToString(ct), nil
}

// sealTenantText seals s with tenant's keys.
func (v *Vault) sealTenantText(ctx context.Context, tenant, s string, ad []byte) (string, error) {
	if s == "" {
		return "", nil
	}
	k, err := v.tenantKeys(ctx, tenant)
	if err != nil {
		return "", err
	}
	return sealText(k, sealedTenant, s, ad)
}

// sealSystemText seals s with the system free-text key, creating the key
// on first use. Call it outside a transaction: creating the key writes.
func (v *Vault) sealSystemText(ctx context.Context, s string, ad []byte) (string, error) {
	if s == "" {
		return "", nil
	}
	k, err := v.systemAEAD(ctx, true)
	if err != nil {
		return "", err
	}
	return sealText(k, sealedSystem, s, ad)
}

// openText opens a value stored by sealText (tenant names the keys of a
// tenant-sealed one); a value from before sealing is returned as it is.
// Only the methods that answer a reader entitled to the text call it.
func (v *Vault) openText(ctx context.Context, tenant, s string, ad []byte) (string, error) {
	var k aeadKey
	var b64 string
	if rest, ok := strings.CutPrefix(s, sealedTenant); ok {
		tk, err := v.tenantKeys(ctx, tenant)
		if err != nil {
			return "", err
		}
		k, b64 = tk, rest
	} else if rest, ok := strings.CutPrefix(s, sealedSystem); ok {
		sk, err := v.systemAEAD(ctx, false)
		if err != nil {
			return "", err
		}
		k, b64 = sk, rest
	} else {
		return s, nil
	}
	ct, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "", fmt.Errorf("open free text: %w", err)
	}
	pt, err := k.Open(ct, ad)
	if err != nil {
		return "", fmt.Errorf("open free text: %w", err)
	}
	return string(pt), nil
}

// openRequest opens a request's reason and decision comment, for the
// tenant's admins or the security staff deciding it.
func (v *Vault) openRequest(ctx context.Context, r *custos.AccessRequest) error {
	var err error
	if r.Reason, err = v.openText(ctx, r.TenantID, r.Reason, adRequestReason(r.TenantID, r.ID)); err != nil {
		return fmt.Errorf("request %s reason: %w", r.ID, err)
	}
	if r.Comment, err = v.openText(ctx, r.TenantID, r.Comment, adDecisionComment(r.TenantID, r.ID)); err != nil {
		return fmt.Errorf("request %s comment: %w", r.ID, err)
	}
	return nil
}

// systemAEAD loads the system free-text keyset, creating and storing it
// (wrapped by the KEK) on first use if create is set. The keyring caches
// what it unwrapped, so only the small row is read again.
func (v *Vault) systemAEAD(ctx context.Context, create bool) (*keys.SystemAEAD, error) {
	var wrapped string
	err := v.read.QueryRowContext(ctx, `SELECT wrapped FROM system_keys WHERE name = $1`, freeTextKeyName).Scan(&wrapped)
	if isNoRows(err) && create {
		_, w, nerr := v.ring.NewSystemAEAD(freeTextKeyName)
		if nerr != nil {
			return nil, nerr
		}
		// Another node may have raced us: keep whichever was stored first.
		if _, err = v.write.ExecContext(ctx, `INSERT INTO system_keys (name, wrapped, kek) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING`,
			freeTextKeyName, base64.StdEncoding.EncodeToString(w), v.kekTag); err != nil {
			return nil, fmt.Errorf("store %s key: %w", freeTextKeyName, err)
		}
		err = v.write.QueryRowContext(ctx, `SELECT wrapped FROM system_keys WHERE name = $1`, freeTextKeyName).Scan(&wrapped)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s key: %w", freeTextKeyName, err)
	}
	b, err := base64.StdEncoding.DecodeString(wrapped)
	if err != nil {
		return nil, fmt.Errorf("%s key: %w", freeTextKeyName, err)
	}
	return v.ring.SystemAEAD(freeTextKeyName, b)
}

// SealFreeText seals the free text of rows written before it was sealed
// at rest (access-request reasons and decision comments, alert notes,
// containment reasons), in the transaction of one system audit entry that
// counts them. Run at start; it does nothing once every row is sealed.
func (v *Vault) SealFreeText(ctx context.Context) (int, error) {
	type change struct{ query, id, old, sealed string }
	var changes []change
	sys := func(s string, ad []byte) (string, error) { return v.sealSystemText(ctx, s, ad) }
	tenantOrSystem := func(tenant, s string, ad []byte) (string, error) {
		out, err := v.sealTenantText(ctx, tenant, s, ad)
		if custos.ErrorCode(err) == custos.ENOTFOUND {
			return sys(s, ad) // the tenant's keys are gone: still not in clear
		}
		return out, err
	}
	unsealed := func(col string) string {
		return col + ` IS NOT NULL AND ` + col + ` <> '' AND ` + col + ` NOT LIKE 'sealed:%'`
	}
	type row struct{ id, tenant, text string }
	scan := func(query string) ([]row, error) {
		rows, err := v.read.QueryContext(ctx, query)
		if err != nil {
			return nil, fmt.Errorf("seal free text: %w", err)
		}
		defer rows.Close()
		var out []row
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.id, &r.tenant, &r.text); err != nil {
				return nil, err
			}
			out = append(out, r)
		}
		return out, rows.Err()
	}
	for _, t := range []struct {
		query, update string
		seal          func(r row) (string, error)
	}{
		{`SELECT id, tenant_id, reason FROM access_requests WHERE ` + unsealed("reason"), `UPDATE access_requests SET reason = $1 WHERE id = $2 AND reason = $3`,
			func(r row) (string, error) { return tenantOrSystem(r.tenant, r.text, adRequestReason(r.tenant, r.id)) }},
		{`SELECT id, tenant_id, comment FROM access_requests WHERE ` + unsealed("comment"), `UPDATE access_requests SET comment = $1 WHERE id = $2 AND comment = $3`,
			func(r row) (string, error) {
				return tenantOrSystem(r.tenant, r.text, adDecisionComment(r.tenant, r.id))
			}},
		{`SELECT id, '', note FROM alerts WHERE ` + unsealed("note"), `UPDATE alerts SET note = $1 WHERE id = $2 AND note = $3`,
			func(r row) (string, error) { return sys(r.text, adAlertNote(r.id)) }},
		{`SELECT id, target, reason FROM containment_actions WHERE ` + unsealed("reason"), `UPDATE containment_actions SET reason = $1 WHERE id = $2 AND reason = $3`,
			func(r row) (string, error) {
				if custos.ValidID(custos.PrefixTenant, r.tenant) {
					return tenantOrSystem(r.tenant, r.text, adContainmentReason(r.tenant, r.id))
				}
				return sys(r.text, adContainmentReason(r.tenant, r.id))
			}},
	} {
		rs, err := scan(t.query)
		if err != nil {
			return 0, err
		}
		for _, r := range rs {
			sealed, err := t.seal(r)
			if err != nil {
				return 0, err
			}
			changes = append(changes, change{t.update, r.id, r.text, sealed})
		}
	}
	if len(changes) == 0 {
		return 0, nil
	}
	n := 0
	_, err := v.log.Append(ctx, audit.Entry{Leaf: audit.Leaf{Actor: "system", Action: "storage.seal", Outcome: audit.OutcomeOK, Detail: "free text sealed at rest"},
		Apply: func(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf) error {
			n = 0
			for _, c := range changes {
				res, err := tx.ExecContext(ctx, c.query, c.sealed, c.id, c.old)
				if err != nil {
					return fmt.Errorf("seal free text: %w", err)
				}
				k, _ := res.RowsAffected()
				n += int(k)
			}
			leaf.Count = n
			return nil
		}})
	if err != nil {
		return 0, err
	}
	return n, nil
}
