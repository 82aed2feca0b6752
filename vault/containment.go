package vault

import (
	"context"
	"database/sql"
	"errors"
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

// Contain applies containment actions in tx (the detector's alert
// transaction) and returns what it did. actions are the rule's responses
// ([custos.ContainKind] values). rows MACs the rows it changes (nil: tests
// that run without a vault).
func Contain(ctx context.Context, tx *sql.Tx, rows *Rows, actions, principals, tenants []string, alertID string, now time.Time) ([]custos.ContainmentAction, error) {
	var done []custos.ContainmentAction
	if slices.Contains(actions, string(custos.ContainSuspend)) {
		for _, p := range principals {
			// A forged row is not suspended, so that it is never MACed
			// (and could not be lifted into a valid principal later).
			if rows != nil {
				if err := rows.v.checkRow(ctx, tx, "principals", p); errors.Is(err, errForged) {
					continue
				} else if err != nil {
					return nil, err
				}
			}
			res, err := tx.ExecContext(ctx, `UPDATE principals SET suspended = 1, suspended_by = $2 WHERE id = $1 AND suspended = 0`, p, nullStr(alertID))
			if err != nil {
				return nil, fmt.Errorf("suspend: %w", err)
			}
			if n, _ := res.RowsAffected(); n == 1 {
				if err := rows.reseal(ctx, tx, "principals", p); err != nil {
					return nil, err
				}
				done = append(done, custos.ContainmentAction{Kind: custos.ContainSuspend, Principal: p})
			}
		}
	}
	if slices.Contains(actions, string(custos.ContainEndGrants)) {
		for _, p := range principals {
			ended, err := queryIDs(ctx, tx, `UPDATE grants SET ended_at = $1, ended_by = $2 WHERE staff_id = $3 AND ended_at IS NULL AND expires_at > $1 RETURNING id`, ms(now), "detector", p)
			if err != nil {
				return nil, fmt.Errorf("end grants: %w", err)
			}
			// An ended grant is MACed as ended, whatever else its row holds:
			// ended, it gives nothing.
			if err := rows.reseal(ctx, tx, "grants", ended...); err != nil {
				return nil, err
			}
			if n := len(ended); n > 0 {
				done = append(done, custos.ContainmentAction{Kind: custos.ContainEndGrants, Principal: p, Grants: n})
			}
		}
	}
	if slices.Contains(actions, string(custos.ContainFreeze)) {
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
				if err := rows.reseal(ctx, tx, "tenant_freezes", t); err != nil {
					return nil, err
				}
				done = append(done, custos.ContainmentAction{Kind: custos.ContainFreeze, Tenant: t})
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
// A zero Generation is the first; DedupBase defaults to DedupKey.
func InsertAlert(ctx context.Context, tx *sql.Tx, a *custos.Alert) error {
	if a.Generation <= 0 {
		a.Generation = 1
	}
	if a.DedupBase == "" {
		a.DedupBase = a.DedupKey
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO alerts (id, rule_id, title, severity, dedup_key, dedup_base, generation, principals, tenants, evidence, actions, status, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13) ON CONFLICT (dedup_key) DO NOTHING`,
		a.ID, a.RuleID, a.Title, a.Severity, a.DedupKey, a.DedupBase, a.Generation, strings.Join(a.Principals, " "), strings.Join(a.Tenants, " "),
		joinIndexes(a.Evidence), strings.Join(a.Actions, "; "), custos.AlertOpen, ms(a.CreatedAt))
	if err != nil {
		return fmt.Errorf("insert alert: %w", err)
	}
	return nil
}

// GenerationKey is the dedup key of the generation-th alert of a base key.
func GenerationKey(base string, generation int) string {
	if generation <= 1 {
		return base
	}
	return base + "#" + strconv.Itoa(generation)
}

// maxAlertEvidence bounds the evidence an alert keeps.
const maxAlertEvidence = 1000

// LatestAlert returns the newest generation of the alerts of a base dedup
// key (rule:group:window), or nil if there is none, in tx.
func LatestAlert(ctx context.Context, tx *sql.Tx, base string) (*custos.Alert, error) {
	a, err := scanAlert(tx.QueryRowContext(ctx, `SELECT `+alertColumns+` FROM alerts WHERE dedup_base = $1 ORDER BY generation DESC LIMIT 1`, base))
	if isNoRows(err) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("read alert: %w", err)
	}
	return a, nil
}

// SetAlertActions records the containment an alert's own transaction
// applied after inserting it.
func SetAlertActions(ctx context.Context, tx *sql.Tx, id string, actions []custos.ContainmentAction) error {
	if len(actions) == 0 {
		return nil
	}
	_, err := tx.ExecContext(ctx, `UPDATE alerts SET actions = $1 WHERE id = $2`, strings.Join(custos.ContainmentStrings(actions), "; "), id)
	return err
}

// AddEvidence appends evidence (and principals, tenants, containment
// applied) to the alert id, in tx. A resolved alert is never changed:
// evidence after its resolution belongs to a new alert.
func AddEvidence(ctx context.Context, tx *sql.Tx, id string, evidence []uint64, principals, tenants []string, actions []custos.ContainmentAction, now time.Time) error {
	var ev, ps, ts, acts, status string
	err := tx.QueryRowContext(ctx, `SELECT evidence, principals, tenants, actions, status FROM alerts WHERE id = $1`, id).Scan(&ev, &ps, &ts, &acts, &status)
	if isNoRows(err) {
		return nil
	} else if err != nil {
		return fmt.Errorf("read alert: %w", err)
	}
	if status == custos.AlertResolved {
		return fmt.Errorf("alert %s is resolved: new evidence opens a new alert", id)
	}
	all := append(splitIndexes(ev), evidence...)
	if len(all) > maxAlertEvidence {
		all = all[:maxAlertEvidence]
	}
	if len(actions) > 0 {
		acts = strings.Join(append(slices.DeleteFunc(strings.Split(acts, "; "), func(s string) bool { return s == "" }), custos.ContainmentStrings(actions)...), "; ")
	}
	_, err = tx.ExecContext(ctx, `UPDATE alerts SET evidence = $1, principals = $2, tenants = $3, actions = $4, updated_at = $5 WHERE id = $6 AND status <> $7`,
		joinIndexes(all), union(ps, principals), union(ts, tenants), acts, ms(now), id, custos.AlertResolved)
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

const alertColumns = `id, rule_id, title, severity, dedup_key, dedup_base, generation, principals, tenants, evidence, actions, status, created_at, updated_at, acked_by, resolved_by, note`

func scanAlert(s scanner) (*custos.Alert, error) {
	var a custos.Alert
	var ps, ts, ev, acts string
	var created, updated int64
	var base, acked, resolved, note sql.NullString
	var gen int64
	if err := s.Scan(&a.ID, &a.RuleID, &a.Title, &a.Severity, &a.DedupKey, &base, &gen, &ps, &ts, &ev, &acts, &a.Status, &created, &updated, &acked, &resolved, &note); err != nil {
		return nil, err
	}
	a.DedupBase, a.Generation = base.String, int(gen)
	if a.DedupBase == "" {
		a.DedupBase = a.DedupKey
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
func (v *Vault) Alerts(ctx context.Context, status string) ([]*custos.Alert, error) {
	l, err := v.authorize(ctx, custos.ActionAlertRead, "")
	if err != nil {
		return nil, err
	}
	if status != "" && !slices.Contains([]string{custos.AlertOpen, custos.AlertAcknowledged, custos.AlertResolved}, status) {
		return nil, v.deny(ctx, l, custos.Errorf(custos.EINVALID, "status must be open, acknowledged or resolved"))
	}
	out, err := queryAll(ctx, v, scanAlert, `SELECT `+alertColumns+` FROM alerts WHERE $1 = '' OR status = $1 ORDER BY created_at DESC, id LIMIT 1000`, status)
	if err != nil {
		return nil, v.deny(ctx, l, fmt.Errorf("list alerts: %w", err))
	}
	for _, a := range out {
		if a.Note, err = v.openText(ctx, "", a.Note, adAlertNote(a.ID)); err != nil {
			return nil, v.deny(ctx, l, fmt.Errorf("alert %s note: %w", a.ID, err))
		}
	}
	l.Count = len(out)
	return out, v.record(ctx, l, nil)
}

// UpdateAlert acknowledges or resolves an alert, with a note.
func (v *Vault) UpdateAlert(ctx context.Context, id, status, note string) (*custos.Alert, error) {
	l, err := v.authorize(ctx, custos.ActionAlertUpdate, "")
	if err != nil {
		return nil, err
	}
	l.Detail = "alert " + safeID(custos.PrefixAlert, id) + " " + status
	if !custos.ValidID(custos.PrefixAlert, id) {
		return nil, v.deny(ctx, l, notFound("alert"))
	}
	if (status != custos.AlertAcknowledged && status != custos.AlertResolved) || len(note) > 1000 {
		return nil, v.deny(ctx, l, custos.Errorf(custos.EINVALID, "status must be acknowledged or resolved; note at most 1000 characters"))
	}
	p := custos.RequestFromContext(ctx).Principal
	sealedNote, err := v.sealSystemText(ctx, note, adAlertNote(id))
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	var a *custos.Alert
	// Acknowledging or resolving an alert silences it: security hears of it
	// at once (invariant 12), by ids only — the note is free text.
	msg := &notify.Message{Topic: "alert." + status, Severity: notify.SeverityInfo, To: []string{notify.ToStaffSecurity},
		Text: fmt.Sprintf("alert %s %s by %s", id, status, p.ID), Data: map[string]string{"alert": id, "by": p.ID}}
	if status == custos.AlertResolved {
		msg.Severity = notify.SeverityHigh
	}
	err = v.announce(ctx, l, msg, func(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf) error {
		var err error
		a, err = scanAlert(tx.QueryRowContext(ctx, `SELECT `+alertColumns+` FROM alerts WHERE id = $1`, id))
		if isNoRows(err) {
			return notFound("alert")
		} else if err != nil {
			return err
		}
		if a.Status == custos.AlertResolved || a.Status == status {
			return custos.Errorf(custos.ECONFLICT, "alert is %s already", a.Status)
		}
		if err := v.mayLiftAll(ctx, tx, leaf, p, a.Principals); err != nil {
			return err // nobody silences an alert about themselves
		}
		now := v.now()
		col := "acked_by"
		if status == custos.AlertResolved {
			col, a.ResolvedBy = "resolved_by", p.ID
		} else {
			a.AckedBy = p.ID
		}
		a.Status, a.Note, a.UpdatedAt = status, note, fromMS(ms(now))
		_, err = tx.ExecContext(ctx, `UPDATE alerts SET status = $1, `+col+` = $2, note = $3, updated_at = $4 WHERE id = $5`, status, p.ID, sealedNote, ms(now), id)
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
	caID, sealed, err := v.sealContainmentReason(ctx, id, reason)
	if err != nil {
		return v.deny(ctx, l, err)
	}
	return v.announce(ctx, l, &notify.Message{Topic: "containment", Severity: notify.SeverityHigh, To: []string{notify.ToStaffSecurity},
		Text: fmt.Sprintf("%s by %s", l.Detail, custos.RequestFromContext(ctx).Principal.ID)}, func(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf) error {
		if !suspend {
			target, err := v.findPrincipalTx(ctx, tx, id)
			if err != nil {
				return err
			}
			lifter := custos.RequestFromContext(ctx).Principal
			if err := mayLift(lifter, target); err != nil {
				return err
			}
			noteSponsored(leaf, lifter, target)
		}
		by := sql.NullString{}
		if suspend {
			by = nullStr(caID)
			if err := v.checkRow(ctx, tx, "principals", id); errors.Is(err, errForged) {
				return notFound("principal")
			} else if err != nil {
				return err
			}
		}
		res, err := tx.ExecContext(ctx, `UPDATE principals SET suspended = $1, suspended_by = $2 WHERE id = $3 AND suspended = $4`, boolInt(suspend), by, id, boolInt(!suspend))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return custos.Errorf(custos.ECONFLICT, "no such principal in that state")
		}
		if err := v.reseal(ctx, tx, "principals", id); err != nil {
			return err
		}
		if suspend {
			if _, err := Contain(ctx, tx, v.Rows(), []string{string(custos.ContainEndGrants)}, []string{id}, nil, "", v.now()); err != nil {
				return err
			}
		}
		return v.recordReason(ctx, tx, caID, string(action), id, sealed)
	})
}

// sealContainmentReason names a containment action by hand and seals the
// reason given for it (free text: it may hold anything), with the
// tenant's keys for a tenant, else the system key. It runs before the
// action's transaction (creating the system key writes).
func (v *Vault) sealContainmentReason(ctx context.Context, target, reason string) (id, sealed string, err error) {
	id = custos.NewID(PrefixContainment)
	if custos.ValidID(custos.PrefixTenant, target) {
		sealed, err = v.sealTenantText(ctx, target, reason, adContainmentReason(target, id))
	} else {
		sealed, err = v.sealSystemText(ctx, reason, adContainmentReason(target, id))
	}
	return id, sealed, err
}

// recordReason keeps the reason security staff gave for a containment
// action by hand, sealed, with who and which request: free text, so here
// and never in the leaf, which names only the action and its target.
func (v *Vault) recordReason(ctx context.Context, tx *sql.Tx, id, action, target, sealedReason string) error {
	r := custos.RequestFromContext(ctx)
	_, err := tx.ExecContext(ctx, `INSERT INTO containment_actions (id, action, target, reason, actor, request_id, at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		id, action, target, sealedReason, r.Principal.ID, r.ID, ms(v.now()))
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
	caID, sealed, err := v.sealContainmentReason(ctx, tenant, reason)
	if err != nil {
		return v.deny(ctx, l, err)
	}
	return v.announce(ctx, l, &notify.Message{Topic: "containment", Severity: notify.SeverityHigh, TenantID: tenant, To: []string{notify.ToStaffSecurity, notify.ToTenantAdmins},
		Text: fmt.Sprintf("%s for tenant %s by %s", l.Detail, tenant, custos.RequestFromContext(ctx).Principal.ID)}, func(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf) error {
		if err := lockTenant(ctx, tx, tenant); err != nil {
			return err
		}
		if !freeze {
			if err := v.mayLiftFreeze(ctx, tx, leaf, tenant); err != nil {
				return err
			}
		}
		var res sql.Result
		var err error
		if freeze {
			// The freeze names the containment action that holds its
			// (sealed) reason, never the reason itself.
			res, err = tx.ExecContext(ctx, `INSERT INTO tenant_freezes (tenant_id, reason, frozen_at) VALUES ($1, $2, $3) ON CONFLICT (tenant_id) DO NOTHING`, tenant, caID, ms(v.now()))
		} else {
			res, err = tx.ExecContext(ctx, `DELETE FROM tenant_freezes WHERE tenant_id = $1`, tenant)
		}
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return custos.Errorf(custos.ECONFLICT, "the tenant is not in that state")
		}
		if err := v.reseal(ctx, tx, "tenant_freezes", tenant); err != nil {
			return err
		}
		return v.recordReason(ctx, tx, caID, string(action), tenant, sealed)
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

// mayLiftAll is mayLift for every principal named by ids; leaf is marked
// if lifter and one of them sponsored the other (noteSponsored).
func (v *Vault) mayLiftAll(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf, lifter *custos.Principal, ids []string) error {
	for _, id := range ids {
		target, err := v.findPrincipalTx(ctx, tx, id)
		if custos.ErrorCode(err) == custos.ENOTFOUND {
			continue
		} else if err != nil {
			return err
		}
		if err := mayLift(lifter, target); err != nil {
			return err
		}
		noteSponsored(leaf, lifter, target)
	}
	return nil
}

// mayLiftFreeze checks the lifter of a tenant's freeze against the
// principals of the alert that froze it.
func (v *Vault) mayLiftFreeze(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf, tenant string) error {
	// A freeze row custos did not write could name any alert (or none), and
	// with it anyone as lifter: it is not lifted through the API.
	if err := v.checkRow(ctx, tx, "tenant_freezes", tenant); errors.Is(err, errForged) {
		return custos.Errorf(custos.ECONFLICT, "the freeze failed its integrity check: it stays until security has looked into the row-integrity alert")
	} else if err != nil {
		return err
	}
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
	return v.mayLiftAll(ctx, tx, leaf, custos.RequestFromContext(ctx).Principal, strings.Fields(principals))
}

func validReasonText(s string) bool { return s != "" && len(s) <= 500 }

// liftRule is the rule of mayLift, for people.
const liftRule = "staff_security, other than the person contained, the person who created the contained principal, and principals created by the person contained"

// Containments lists every containment in force, for security staff:
// suspended principals and frozen tenants, each with the alert (or the
// action by hand, its reason opened for them) behind it and who may lift it.
func (v *Vault) Containments(ctx context.Context) ([]*custos.Containment, error) {
	l, err := v.authorize(ctx, custos.ActionAlertRead, "")
	if err != nil {
		return nil, err
	}
	l.Detail = "containments"
	out, sealed, err := v.containments(ctx)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	l.Count = len(out)
	if err := v.record(ctx, l, nil); err != nil {
		return nil, err
	}
	// Reasons are opened only once the listing is on record.
	for i, c := range out {
		if sealed[i] == "" {
			continue
		}
		tenant := ""
		if c.Kind == custos.ContainmentFreeze {
			tenant = c.Target
		}
		if c.Reason, err = v.openText(ctx, tenant, sealed[i], adContainmentReason(c.Target, c.ActionID)); err != nil {
			return nil, fmt.Errorf("containment %s reason: %w", c.ActionID, err)
		}
	}
	return out, nil
}

// containments reads the containments in force and, beside each, its
// sealed reason ("" if none).
func (v *Vault) containments(ctx context.Context) ([]*custos.Containment, []string, error) {
	var out []*custos.Containment
	var sealed []string
	type cause struct{ kind, target, by string }
	var causes []cause
	rows, err := v.read.QueryContext(ctx, `SELECT id, suspended_by FROM principals WHERE suspended <> 0 ORDER BY id`)
	if err != nil {
		return nil, nil, fmt.Errorf("list suspensions: %w", err)
	}
	for rows.Next() {
		var id string
		var by sql.NullString
		if err := rows.Scan(&id, &by); err != nil {
			rows.Close()
			return nil, nil, err
		}
		causes = append(causes, cause{custos.ContainmentSuspension, id, by.String})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	frozenAt := map[string]int64{}
	rows, err = v.read.QueryContext(ctx, `SELECT tenant_id, alert_id, reason, frozen_at FROM tenant_freezes ORDER BY tenant_id`)
	if err != nil {
		return nil, nil, fmt.Errorf("list freezes: %w", err)
	}
	for rows.Next() {
		var tenant, reason string
		var alert sql.NullString
		var at int64
		if err := rows.Scan(&tenant, &alert, &reason, &at); err != nil {
			rows.Close()
			return nil, nil, err
		}
		by := reason // by hand: the containment action
		if alert.Valid && alert.String != "" {
			by = alert.String
		}
		causes = append(causes, cause{custos.ContainmentFreeze, tenant, by})
		frozenAt[tenant] = at
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	security, err := v.securityPrincipals(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, ca := range causes {
		c := &custos.Containment{Kind: ca.kind, Target: ca.target, Contained: []string{}, Excluded: []string{}}
		reason := ""
		switch {
		case custos.ValidID(custos.PrefixAlert, ca.by):
			c.AlertID = ca.by
			var ps string
			var created int64
			err := v.read.QueryRowContext(ctx, `SELECT principals, created_at FROM alerts WHERE id = $1`, ca.by).Scan(&ps, &created)
			if err != nil && !isNoRows(err) {
				return nil, nil, fmt.Errorf("read alert: %w", err)
			}
			if err == nil {
				t := fromMS(created)
				c.Since = &t
				if ca.kind == custos.ContainmentFreeze {
					c.Contained = strings.Fields(ps)
				}
			}
		default:
			// By hand: the containment action named, or for rows from
			// before it was named, the newest one applied to the target.
			var id, actor, r string
			var at int64
			q, args := `SELECT id, actor, reason, at FROM containment_actions WHERE id = $1`, []any{ca.by}
			if !strings.HasPrefix(ca.by, PrefixContainment+"_") {
				q, args = `SELECT id, actor, reason, at FROM containment_actions WHERE target = $1 AND action = $2 ORDER BY at DESC, id DESC LIMIT 1`,
					[]any{ca.target, string(custos.ActionContain)}
			}
			err := v.read.QueryRowContext(ctx, q, args...).Scan(&id, &actor, &r, &at)
			if err != nil && !isNoRows(err) {
				return nil, nil, fmt.Errorf("read containment action: %w", err)
			}
			if err == nil {
				t := fromMS(at)
				c.ActionID, c.By, c.Since, reason = id, actor, &t, r
			}
		}
		if ca.kind == custos.ContainmentSuspension {
			c.Contained = []string{ca.target}
		} else if c.Since == nil {
			t := fromMS(frozenAt[ca.target])
			c.Since = &t
		}
		c.MayLift = "any staff_security principal"
		if len(c.Contained) > 0 {
			c.MayLift = liftRule
		}
		for _, id := range c.Contained {
			target, err := v.findPrincipalTx(ctx, v.read, id)
			if custos.ErrorCode(err) == custos.ENOTFOUND {
				continue
			} else if err != nil {
				return nil, nil, err
			}
			for _, s := range security {
				if mayLift(s, target) != nil && !slices.Contains(c.Excluded, s.ID) {
					c.Excluded = append(c.Excluded, s.ID)
				}
			}
		}
		slices.Sort(c.Contained)
		slices.Sort(c.Excluded)
		out = append(out, c)
		sealed = append(sealed, reason)
	}
	if out == nil {
		out = []*custos.Containment{}
	}
	return out, sealed, nil
}

// securityPrincipals returns every staff_security principal: the people
// who could lift a containment.
func (v *Vault) securityPrincipals(ctx context.Context) ([]*custos.Principal, error) {
	out, err := queryAll(ctx, v, scanPrincipal, `SELECT `+principalColumns+` FROM principals WHERE kind = $1 ORDER BY id`, string(custos.KindStaffSecurity))
	if err != nil {
		return nil, fmt.Errorf("list security staff: %w", err)
	}
	return out, nil
}

// PlanContainment returns what [Contain] would do in tx with the same
// arguments, without doing it: the detector tells security what an alert
// contains before it contains it.
func PlanContainment(ctx context.Context, tx *sql.Tx, actions, principals, tenants []string, now time.Time) ([]custos.ContainmentAction, error) {
	var plan []custos.ContainmentAction
	count := func(q string, args ...any) (int, error) {
		var n int
		err := tx.QueryRowContext(ctx, q, args...).Scan(&n)
		return n, err
	}
	if slices.Contains(actions, string(custos.ContainSuspend)) {
		for _, p := range principals {
			n, err := count(`SELECT count(*) FROM principals WHERE id = $1 AND suspended = 0`, p)
			if err != nil {
				return nil, fmt.Errorf("plan suspension: %w", err)
			}
			if n == 1 {
				plan = append(plan, custos.ContainmentAction{Kind: custos.ContainSuspend, Principal: p})
			}
		}
	}
	if slices.Contains(actions, string(custos.ContainEndGrants)) {
		for _, p := range principals {
			n, err := count(`SELECT count(*) FROM grants WHERE staff_id = $1 AND ended_at IS NULL AND expires_at > $2`, p, ms(now))
			if err != nil {
				return nil, fmt.Errorf("plan ending grants: %w", err)
			}
			if n > 0 {
				plan = append(plan, custos.ContainmentAction{Kind: custos.ContainEndGrants, Principal: p, Grants: n})
			}
		}
	}
	if slices.Contains(actions, string(custos.ContainFreeze)) {
		for _, t := range tenants {
			n, err := count(`SELECT count(*) FROM tenant_freezes WHERE tenant_id = $1`, t)
			if err != nil {
				return nil, fmt.Errorf("plan freeze: %w", err)
			}
			if n == 0 {
				plan = append(plan, custos.ContainmentAction{Kind: custos.ContainFreeze, Tenant: t})
			}
		}
	}
	return plan, nil
}
