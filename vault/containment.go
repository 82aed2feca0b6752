package vault

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/notify"
)

// Containment: what the detector does when a rule asks, and what security
// staff undo by hand with a reason. Every action commits with a leaf.

// Alert statuses.
const (
	AlertOpen         = "open"
	AlertAcknowledged = "acknowledged"
	AlertResolved     = "resolved"
)

// Alert is a detection: a rule fired on the entries named as evidence
// (leaf indexes, each provable against a checkpoint).
type Alert struct {
	ID         string    `json:"id"`
	RuleID     string    `json:"rule_id"`
	Title      string    `json:"title"`
	Severity   string    `json:"severity"`
	DedupKey   string    `json:"dedup_key"`
	Principals []string  `json:"principals"`
	Tenants    []string  `json:"tenants"`
	Evidence   []uint64  `json:"evidence"`
	Actions    []string  `json:"actions"` // containment applied
	Status     string    `json:"status"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	AckedBy    string    `json:"acked_by,omitempty"`
	ResolvedBy string    `json:"resolved_by,omitempty"`
	Note       string    `json:"note,omitempty"`
}

// Containment actions, as the detector's rules name them.
const (
	ContainSuspend  = "suspend_principal"
	ContainEndGrant = "end_grants"
	ContainFreeze   = "freeze_tenants"
)

// Contain applies containment actions in tx (the detector's alert
// transaction) and returns what it did, e.g. "suspended pr_…".
func Contain(ctx context.Context, tx *sql.Tx, actions, principals, tenants []string, alertID string, now time.Time) ([]string, error) {
	var done []string
	if slices.Contains(actions, ContainSuspend) {
		for _, p := range principals {
			res, err := tx.ExecContext(ctx, `UPDATE principals SET suspended = 1 WHERE id = $1 AND suspended = 0`, p)
			if err != nil {
				return nil, fmt.Errorf("suspend: %w", err)
			}
			if n, _ := res.RowsAffected(); n == 1 {
				done = append(done, "suspended "+p)
			}
		}
	}
	if slices.Contains(actions, ContainEndGrant) {
		for _, p := range principals {
			res, err := tx.ExecContext(ctx, `UPDATE grants SET ended_at = $1, ended_by = $2 WHERE staff_id = $3 AND ended_at IS NULL AND expires_at > $1`, ms(now), "detector", p)
			if err != nil {
				return nil, fmt.Errorf("end grants: %w", err)
			}
			if n, _ := res.RowsAffected(); n > 0 {
				done = append(done, fmt.Sprintf("ended %d grants of %s", n, p))
			}
		}
	}
	if slices.Contains(actions, ContainFreeze) {
		for _, t := range tenants {
			if err := lockTenant(ctx, tx, t); err != nil {
				return nil, err
			}
			res, err := tx.ExecContext(ctx, `INSERT INTO tenant_freezes (tenant_id, alert_id, reason, frozen_at) VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id) DO NOTHING`,
				t, alertID, "alert "+alertID, ms(now))
			if err != nil {
				return nil, fmt.Errorf("freeze: %w", err)
			}
			if n, _ := res.RowsAffected(); n == 1 {
				done = append(done, "froze "+t)
			}
		}
	}
	return done, nil
}

// lockTenant takes the tenant's row lock (a no-op update) so that a
// freeze and a reveal or export of the same tenant on two PostgreSQL nodes
// run one after the other, each seeing the other's outcome.
func lockTenant(ctx context.Context, tx *sql.Tx, tenant string) error {
	if _, err := tx.ExecContext(ctx, `UPDATE tenants SET name = name WHERE id = $1`, tenant); err != nil {
		return fmt.Errorf("lock tenant: %w", err)
	}
	return nil
}

// frozenTx returns a refusal if exports and reveals are frozen for tenant.
// It runs in the transaction of the export's or reveal's leaf, under the
// tenant's lock, so a freeze committed a moment earlier stops it. The
// refusal names at most the alert behind the freeze: the reason security
// staff typed may hold anything, and refusals go into leaves.
func frozenTx(ctx context.Context, tx *sql.Tx, tenant string) error {
	if err := lockTenant(ctx, tx, tenant); err != nil {
		return err
	}
	var alert sql.NullString
	err := tx.QueryRowContext(ctx, `SELECT alert_id FROM tenant_freezes WHERE tenant_id = $1`, tenant).Scan(&alert)
	if isNoRows(err) {
		return nil
	} else if err != nil {
		return fmt.Errorf("read freeze: %w", err)
	}
	if custos.ValidID(custos.PrefixAlert, alert.String) {
		return custos.Errorf(custos.EFORBIDDEN, "exports and reveals are frozen for this tenant pending a security review (alert %s)", alert.String)
	}
	return custos.Errorf(custos.EFORBIDDEN, "exports and reveals are frozen for this tenant pending a security review")
}

// InsertAlert stores a new alert in tx (ignored if its dedup key exists).
func InsertAlert(ctx context.Context, tx *sql.Tx, a *Alert) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO alerts (id, rule_id, title, severity, dedup_key, principals, tenants, evidence, actions, status, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) ON CONFLICT (dedup_key) DO NOTHING`,
		a.ID, a.RuleID, a.Title, a.Severity, a.DedupKey, strings.Join(a.Principals, " "), strings.Join(a.Tenants, " "),
		joinIndexes(a.Evidence), strings.Join(a.Actions, "; "), AlertOpen, ms(a.CreatedAt))
	if err != nil {
		return fmt.Errorf("insert alert: %w", err)
	}
	return nil
}

// maxAlertEvidence bounds the evidence an alert keeps.
const maxAlertEvidence = 1000

// AlertID returns the id of the alert with dedupKey ("" if none).
func AlertID(ctx context.Context, tx *sql.Tx, dedupKey string) (string, error) {
	var id string
	err := tx.QueryRowContext(ctx, `SELECT id FROM alerts WHERE dedup_key = $1`, dedupKey).Scan(&id)
	if isNoRows(err) {
		return "", nil
	}
	return id, err
}

// AddEvidence appends evidence (and principals, tenants, containment
// applied) to the alert with dedupKey, in tx.
func AddEvidence(ctx context.Context, tx *sql.Tx, dedupKey string, evidence []uint64, principals, tenants, actions []string, now time.Time) error {
	var ev, ps, ts, acts string
	err := tx.QueryRowContext(ctx, `SELECT evidence, principals, tenants, actions FROM alerts WHERE dedup_key = $1`, dedupKey).Scan(&ev, &ps, &ts, &acts)
	if isNoRows(err) {
		return nil
	} else if err != nil {
		return fmt.Errorf("read alert: %w", err)
	}
	all := append(splitIndexes(ev), evidence...)
	if len(all) > maxAlertEvidence {
		all = all[:maxAlertEvidence]
	}
	if len(actions) > 0 {
		acts = strings.Join(append(slices.DeleteFunc(strings.Split(acts, "; "), func(s string) bool { return s == "" }), actions...), "; ")
	}
	_, err = tx.ExecContext(ctx, `UPDATE alerts SET evidence = $1, principals = $2, tenants = $3, actions = $4, updated_at = $5 WHERE dedup_key = $6`,
		joinIndexes(all), union(ps, principals), union(ts, tenants), acts, ms(now), dedupKey)
	return err
}

func union(have string, more []string) string {
	s := strings.Fields(have)
	for _, m := range more {
		if !slices.Contains(s, m) {
			s = append(s, m)
		}
	}
	return strings.Join(s, " ")
}

func joinIndexes(xs []uint64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.FormatUint(x, 10)
	}
	return strings.Join(parts, " ")
}

func splitIndexes(s string) []uint64 {
	var out []uint64
	for _, f := range strings.Fields(s) {
		if n, err := strconv.ParseUint(f, 10, 64); err == nil {
			out = append(out, n)
		}
	}
	return out
}

const alertColumns = `id, rule_id, title, severity, dedup_key, principals, tenants, evidence, actions, status, created_at, updated_at, acked_by, resolved_by, note`

func scanAlert(s scanner) (*Alert, error) {
	var a Alert
	var ps, ts, ev, acts string
	var created, updated int64
	var acked, resolved, note sql.NullString
	if err := s.Scan(&a.ID, &a.RuleID, &a.Title, &a.Severity, &a.DedupKey, &ps, &ts, &ev, &acts, &a.Status, &created, &updated, &acked, &resolved, &note); err != nil {
		return nil, err
	}
	a.Principals, a.Tenants, a.Evidence = strings.Fields(ps), strings.Fields(ts), splitIndexes(ev)
	a.Actions = []string{}
	if acts != "" {
		a.Actions = strings.Split(acts, "; ")
	}
	a.CreatedAt, a.UpdatedAt = fromMS(created), fromMS(updated)
	a.AckedBy, a.ResolvedBy, a.Note = acked.String, resolved.String, note.String
	return &a, nil
}

// Alerts lists alerts, newest first, optionally of one status.
func (v *Vault) Alerts(ctx context.Context, status string) ([]*Alert, error) {
	l, err := v.authorize(ctx, custos.ActionAlertRead, "")
	if err != nil {
		return nil, err
	}
	if status != "" && !slices.Contains([]string{AlertOpen, AlertAcknowledged, AlertResolved}, status) {
		return nil, v.deny(ctx, l, custos.Errorf(custos.EINVALID, "status must be open, acknowledged or resolved"))
	}
	rows, err := v.read.QueryContext(ctx, `SELECT `+alertColumns+` FROM alerts WHERE $1 = '' OR status = $1 ORDER BY created_at DESC, id LIMIT 1000`, status)
	if err != nil {
		return nil, v.deny(ctx, l, fmt.Errorf("list alerts: %w", err))
	}
	defer rows.Close()
	out := []*Alert{}
	for rows.Next() {
		a, err := scanAlert(rows)
		if err != nil {
			return nil, v.deny(ctx, l, err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, v.deny(ctx, l, err)
	}
	l.Count = len(out)
	return out, v.record(ctx, l, nil)
}

// UpdateAlert acknowledges or resolves an alert, with a note.
func (v *Vault) UpdateAlert(ctx context.Context, id, status, note string) (*Alert, error) {
	l, err := v.authorize(ctx, custos.ActionAlertUpdate, "")
	if err != nil {
		return nil, err
	}
	l.Detail = "alert " + safeID(custos.PrefixAlert, id) + " " + status
	if !custos.ValidID(custos.PrefixAlert, id) {
		return nil, v.deny(ctx, l, notFound("alert"))
	}
	if (status != AlertAcknowledged && status != AlertResolved) || len(note) > 1000 {
		return nil, v.deny(ctx, l, custos.Errorf(custos.EINVALID, "status must be acknowledged or resolved; note at most 1000 characters"))
	}
	p := custos.RequestFromContext(ctx).Principal
	var a *Alert
	// Acknowledging or resolving an alert silences it: security hears of it
	// at once (invariant 12), by ids only — the note is free text.
	msg := &notify.Message{Topic: "alert." + status, Severity: notify.SeverityInfo, To: []string{notify.ToStaffSecurity},
		Text: fmt.Sprintf("alert %s %s by %s", id, status, p.ID), Data: map[string]string{"alert": id, "by": p.ID}}
	if status == AlertResolved {
		msg.Severity = notify.SeverityHigh
	}
	err = v.announce(ctx, l, msg, func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
		var err error
		a, err = scanAlert(tx.QueryRowContext(ctx, `SELECT `+alertColumns+` FROM alerts WHERE id = $1`, id))
		if isNoRows(err) {
			return notFound("alert")
		} else if err != nil {
			return err
		}
		if a.Status == AlertResolved || a.Status == status {
			return custos.Errorf(custos.ECONFLICT, "alert is %s already", a.Status)
		}
		if err := mayLiftAll(ctx, tx, p, a.Principals); err != nil {
			return err // nobody silences an alert about themselves
		}
		now := v.now()
		col := "acked_by"
		if status == AlertResolved {
			col, a.ResolvedBy = "resolved_by", p.ID
		} else {
			a.AckedBy = p.ID
		}
		a.Status, a.Note, a.UpdatedAt = status, note, fromMS(ms(now))
		_, err = tx.ExecContext(ctx, `UPDATE alerts SET status = $1, `+col+` = $2, note = $3, updated_at = $4 WHERE id = $5`, status, p.ID, note, ms(now), id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// SetSuspended suspends a principal (all its keys stop working at once,
// its grants end) or lifts a suspension, by security staff with a reason.
func (v *Vault) SetSuspended(ctx context.Context, id string, suspend bool, reason string) error {
	action := custos.ActionLift
	if suspend {
		action = custos.ActionContain
	}
	l, err := v.authorize(ctx, action, "")
	if err != nil {
		return err
	}
	l.Detail = "principal " + safeID(custos.PrefixPrincipal, id)
	if !custos.ValidID(custos.PrefixPrincipal, id) {
		return v.deny(ctx, l, notFound("principal"))
	}
	if !validReasonText(reason) {
		return v.deny(ctx, l, custos.Errorf(custos.EINVALID, "reason must be 1 to 500 characters"))
	}
	if suspend {
		l.Detail = "suspend " + l.Detail
	} else {
		l.Detail = "lift suspension of " + l.Detail
	}
	return v.announce(ctx, l, &notify.Message{Topic: "containment", Severity: notify.SeverityHigh, To: []string{notify.ToStaffSecurity},
		Text: fmt.Sprintf("%s by %s", l.Detail, custos.RequestFromContext(ctx).Principal.ID)}, func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
		if !suspend {
			target, err := findPrincipalTx(ctx, tx, id)
			if err != nil {
				return err
			}
			if err := mayLift(custos.RequestFromContext(ctx).Principal, target); err != nil {
				return err
			}
		}
		res, err := tx.ExecContext(ctx, `UPDATE principals SET suspended = $1 WHERE id = $2 AND suspended = $3`, boolInt(suspend), id, boolInt(!suspend))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return custos.Errorf(custos.ECONFLICT, "no such principal in that state")
		}
		if suspend {
			if _, err := Contain(ctx, tx, []string{ContainEndGrant}, []string{id}, nil, "", v.now()); err != nil {
				return err
			}
		}
		return v.recordReason(ctx, tx, string(action), id, reason)
	})
}

// recordReason keeps the reason security staff gave for a containment
// action by hand, with who and which request: free text, so here and
// never in the leaf, which names only the action and its target.
func (v *Vault) recordReason(ctx context.Context, tx *sql.Tx, action, target, reason string) error {
	r := custos.RequestFromContext(ctx)
	_, err := tx.ExecContext(ctx, `INSERT INTO containment_actions (id, action, target, reason, actor, request_id, at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		custos.NewID(PrefixContainment), action, target, reason, r.Principal.ID, r.ID, ms(v.now()))
	if err != nil {
		return fmt.Errorf("record containment reason: %w", err)
	}
	return nil
}

// PrefixContainment is the ID prefix of recorded containment actions.
const PrefixContainment = "ca"

// SetFrozen freezes exports and reveals for a tenant, or lifts a freeze,
// by security staff with a reason.
func (v *Vault) SetFrozen(ctx context.Context, tenant string, freeze bool, reason string) error {
	action := custos.ActionLift
	if freeze {
		action = custos.ActionContain
	}
	l, err := v.authorize(ctx, action, tenant)
	if err != nil {
		return err
	}
	if !validReasonText(reason) {
		return v.deny(ctx, l, custos.Errorf(custos.EINVALID, "reason must be 1 to 500 characters"))
	}
	if _, err := v.findTenant(ctx, tenant); err != nil {
		return v.deny(ctx, l, err)
	}
	l.Detail = "freeze exports and reveals"
	if !freeze {
		l.Detail = "lift the freeze of exports and reveals"
	}
	return v.announce(ctx, l, &notify.Message{Topic: "containment", Severity: notify.SeverityHigh, TenantID: tenant, To: []string{notify.ToStaffSecurity, notify.ToTenantAdmins},
		Text: fmt.Sprintf("%s for tenant %s by %s", l.Detail, tenant, custos.RequestFromContext(ctx).Principal.ID)}, func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
		if err := lockTenant(ctx, tx, tenant); err != nil {
			return err
		}
		if !freeze {
			if err := v.mayLiftFreeze(ctx, tx, tenant); err != nil {
				return err
			}
		}
		var res sql.Result
		var err error
		if freeze {
			res, err = tx.ExecContext(ctx, `INSERT INTO tenant_freezes (tenant_id, reason, frozen_at) VALUES ($1, $2, $3) ON CONFLICT (tenant_id) DO NOTHING`, tenant, "by hand", ms(v.now()))
		} else {
			res, err = tx.ExecContext(ctx, `DELETE FROM tenant_freezes WHERE tenant_id = $1`, tenant)
		}
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return custos.Errorf(custos.ECONFLICT, "the tenant is not in that state")
		}
		return v.recordReason(ctx, tx, string(action), tenant, reason)
	})
}

// mayLift checks that lifter may lift a containment of target: a
// different person, who did not create target, and whom target's holder
// did not create (a security principal minted to free oneself).
func mayLift(lifter, target *custos.Principal) error {
	if lifter.SamePerson(target) {
		return custos.Errorf(custos.EFORBIDDEN, "%s: a containment is lifted by someone other than the one contained", reasonSamePerson)
	}
	if target.CreatedByHolderOf(lifter) {
		return custos.Errorf(custos.EFORBIDDEN, "%s", "lifter created the contained principal: someone else lifts its containment")
	}
	if lifter.CreatedByHolderOf(target) {
		return custos.Errorf(custos.EFORBIDDEN, "%s", reasonCreatedBy)
	}
	return nil
}

// mayLiftAll is mayLift for every principal named by ids.
func mayLiftAll(ctx context.Context, tx *sql.Tx, lifter *custos.Principal, ids []string) error {
	for _, id := range ids {
		target, err := findPrincipalTx(ctx, tx, id)
		if custos.ErrorCode(err) == custos.ENOTFOUND {
			continue
		} else if err != nil {
			return err
		}
		if err := mayLift(lifter, target); err != nil {
			return err
		}
	}
	return nil
}

// mayLiftFreeze checks the lifter of a tenant's freeze against the
// principals of the alert that froze it.
func (v *Vault) mayLiftFreeze(ctx context.Context, tx *sql.Tx, tenant string) error {
	var alertID sql.NullString
	err := tx.QueryRowContext(ctx, `SELECT alert_id FROM tenant_freezes WHERE tenant_id = $1`, tenant).Scan(&alertID)
	if isNoRows(err) || (err == nil && !alertID.Valid) {
		return nil
	} else if err != nil {
		return err
	}
	var principals string
	if err := tx.QueryRowContext(ctx, `SELECT principals FROM alerts WHERE id = $1`, alertID.String).Scan(&principals); err != nil && !isNoRows(err) {
		return err
	}
	return mayLiftAll(ctx, tx, custos.RequestFromContext(ctx).Principal, strings.Fields(principals))
}

func validReasonText(s string) bool { return s != "" && len(s) <= 500 }
