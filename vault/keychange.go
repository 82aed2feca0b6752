package vault

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/keys"
	"github.com/custos-dev/custos/notify"
)

// Changes of a tenant's own key (DESIGN.md invariant 12). Setting a key
// hands whoever holds it a way to destroy the tenant's data that custos
// cannot stop (revoke it), and clearing one takes that way from the
// tenant: neither is one person's to do alone. A tenant admin's set or
// clear is therefore a change that waits, announced at once to every
// tenant admin and to security, like a tenant's deletion: a second tenant
// admin (another person, not created by the requester) approves it and it
// takes effect at once, any tenant admin cancels it, or the system applies
// it when its grace period ends ([Vault.RunDueKeyChanges]). The KMS key is
// tried at request (a key custos cannot use is refused before anyone is
// asked) and again when the change is applied.

// Notice topics of a tenant key change. None may be muted.
const (
	TopicTenantKeyChangeRequested = "tenant_key.change_requested"
	TopicTenantKeyChangeCancelled = "tenant_key.change_cancelled"
	TopicTenantKeyChangeFailed    = "tenant_key.change_failed"
)

const keyChangeColumns = `id, tenant_id, op, uri, status, requested_by, approved_by, cancelled_by, grace_ms, created_at, due_at, done_at`

func scanKeyChange(row scanner) (*custos.TenantKeyChange, error) {
	var c custos.TenantKeyChange
	var uri, approved, cancelled sql.NullString
	var grace, created, due int64
	var done sql.NullInt64
	if err := row.Scan(&c.ID, &c.TenantID, &c.Op, &uri, &c.Status, &c.RequestedBy, &approved, &cancelled, &grace, &created, &due, &done); err != nil {
		return nil, err
	}
	c.URI, c.ApprovedBy, c.CancelledBy = uri.String, approved.String, cancelled.String
	if uri.Valid {
		c.Kind = keys.DescribeTenantKMS(uri.String)
	}
	c.GraceSeconds, c.CreatedAt, c.DueAt, c.DoneAt = grace/1000, fromMS(created), fromMS(due), fromNullMS(done)
	return &c, nil
}

// pendingKeyChange returns the tenant's scheduled change as q reads it,
// or nil. A row whose MAC fails is refused (and alerted): a change
// written into the database by hand is never shown as pending nor applied.
func (v *Vault) pendingKeyChange(ctx context.Context, q interface {
	querier
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, tenant string) (*custos.TenantKeyChange, error) {
	c, err := scanKeyChange(q.QueryRowContext(ctx, `SELECT `+keyChangeColumns+` FROM tenant_key_changes WHERE tenant_id = $1 AND status = $2`, tenant, custos.KeyChangeScheduled))
	if isNoRows(err) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("read pending key change: %w", err)
	}
	if err := v.checkRow(ctx, q, "tenant_key_changes", c.ID); err != nil {
		return nil, err
	}
	return c, nil
}

// SetTenantKey asks for the tenant's keysets to be wrapped under its own
// KMS key (req.URI), around custos's KEK. custos first checks that the
// key encrypts and decrypts for it; the change then waits for a second
// tenant admin ([Vault.ApproveTenantKeyChange]) or its grace period.
func (v *Vault) SetTenantKey(ctx context.Context, tenantID string, req *custos.TenantKeyRequest) (*custos.TenantKeyChange, error) {
	l, err := v.authorize(ctx, custos.ActionTenantKeySet, tenantID)
	if err != nil {
		return nil, err
	}
	if _, err := v.findTenant(ctx, tenantID); err != nil {
		return nil, v.deny(ctx, l, err)
	}
	if err := req.ValidateGrace(); err != nil {
		return nil, v.deny(ctx, l, err)
	}
	if err := v.usableTenantKMS(req.URI, tenantID); err != nil {
		return nil, v.deny(ctx, l, err)
	}
	return v.requestKeyChange(ctx, l, tenantID, custos.KeyChangeSet, req.URI, req.Grace())
}

// usableTenantKMS checks uri as a tenant's own key: a KMS URI without
// credentials, not custos's own KEK, and one custos can encrypt and
// decrypt with now.
func (v *Vault) usableTenantKMS(uri, tenantID string) error {
	if err := keys.CheckTenantKMSURI(uri); err != nil {
		return custos.Errorf(custos.EINVALID, "uri: %s", err.Error())
	}
	if v.kekURI != "" && uri == v.kekURI {
		return custos.Errorf(custos.EINVALID, "uri: that is custos's own key-encryption key, not a key of the tenant's")
	}
	to, err := keys.OpenTenantKMS(uri)
	if err != nil {
		return custos.Errorf(custos.EINVALID, "uri: %s", err.Error())
	}
	if err := keys.ProbeTenantKMS(tenantID, to); err != nil {
		return custos.Errorf(custos.EKEYUNAVAILABLE, "custos cannot encrypt and decrypt with that key: grant custos's KMS identity encrypt and decrypt on it (docs/keys.md), then try again")
	}
	return nil
}

// ClearTenantKey asks for the tenant to return to custos-managed keys:
// its keysets unwrapped with its own key (which must still work then) and
// wrapped under custos's KEK alone. Only the tenant's admins decide:
// nobody at the vendor can take a tenant off its own key. The change
// waits like a set, with the default grace period.
func (v *Vault) ClearTenantKey(ctx context.Context, tenantID string) (*custos.TenantKeyChange, error) {
	l, err := v.authorize(ctx, custos.ActionTenantKeyClear, tenantID)
	if err != nil {
		return nil, err
	}
	if _, err := v.findTenant(ctx, tenantID); err != nil {
		return nil, v.deny(ctx, l, err)
	}
	cur, err := v.readTenantKey(ctx, tenantID)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	if !cur.uri.Valid {
		return nil, v.deny(ctx, l, custos.Errorf(custos.ECONFLICT, "the tenant's keys are already managed by custos alone"))
	}
	// Its own key must open the keysets to take them off it: a clear that
	// could not be applied is refused now, not when due.
	own, err := keys.OpenTenantKMS(cur.uri.String)
	if err == nil {
		_, err = v.ring.Unwrap(tenantID, cur.wrapped, own)
	}
	if err != nil {
		return nil, v.deny(ctx, l, errKeyUnavailable(tenantID))
	}
	return v.requestKeyChange(ctx, l, tenantID, custos.KeyChangeClear, "", custos.DefaultKeyChangeGrace)
}

// requestKeyChange records a tenant admin's scheduled change and tells
// every tenant admin and security in the same transaction. One change
// waits at a time.
func (v *Vault) requestKeyChange(ctx context.Context, l audit.Leaf, tenantID, op, uri string, grace time.Duration) (*custos.TenantKeyChange, error) {
	by := custos.PrincipalFromContext(ctx)
	now := v.now().UTC().Truncate(time.Millisecond)
	c := &custos.TenantKeyChange{ID: custos.NewID(custos.PrefixKeyChange), TenantID: tenantID, Op: op, URI: uri, Status: custos.KeyChangeScheduled,
		RequestedBy: by.ID, GraceSeconds: int64(grace / time.Second), CreatedAt: now, DueAt: now.Add(grace)}
	what := "take the tenant's keys off its own KMS key, back under custos's key alone (revoking the tenant's key would then no longer stop custos)"
	data := map[string]string{"change": c.ID, "op": op, "due_at": c.DueAt.Format(time.RFC3339)}
	if op == custos.KeyChangeSet {
		c.Kind = keys.DescribeTenantKMS(uri)
		what = fmt.Sprintf("wrap the tenant's keys under its own KMS key (%s, uri %s): whoever holds that key can then make the tenant's data unreadable", c.Kind, uriDigest(uri))
		data["kind"], data["uri_sha256"] = c.Kind, uriDigest(uri)
	}
	l.Detail = fmt.Sprintf("key change %s requested: %s, due %s", c.ID, op, c.DueAt.Format(time.RFC3339))
	m := &notify.Message{Topic: TopicTenantKeyChangeRequested, Severity: notify.SeverityHigh, TenantID: tenantID, To: []string{notify.ToTenantAdmins, notify.ToStaffSecurity},
		Text: fmt.Sprintf("%s %s asked to %s. It takes effect at %s unless another tenant admin approves it sooner; any tenant admin may cancel it before then",
			by.Kind, by.ID, what, c.DueAt.Format(time.RFC3339)),
		Data: data}
	err := v.announce(ctx, l, m, func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
		var open int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM tenant_key_changes WHERE tenant_id = $1 AND status = $2`, tenantID, custos.KeyChangeScheduled).Scan(&open); err != nil {
			return fmt.Errorf("find pending key change: %w", err)
		}
		if open > 0 {
			return custos.Errorf(custos.ECONFLICT, "the tenant has a key change pending already: approve or cancel it first")
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO tenant_key_changes (id, tenant_id, op, uri, status, requested_by, grace_ms, created_at, due_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			c.ID, tenantID, op, nullString(uri), c.Status, c.RequestedBy, c.GraceSeconds*1000, ms(now), ms(c.DueAt)); err != nil {
			return fmt.Errorf("insert key change: %w", err)
		}
		return v.reseal(ctx, tx, "tenant_key_changes", c.ID)
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// ApproveTenantKeyChange is a second tenant admin's approval of the
// tenant's pending key change changeID — the one they reviewed: if
// another is pending by then, nothing is approved (conflict). The approver
// is a different person from the requester, not created by them. The
// change takes effect at once, under the approver's entry.
func (v *Vault) ApproveTenantKeyChange(ctx context.Context, tenantID, changeID string) (*custos.TenantKey, error) {
	l, err := v.authorize(ctx, custos.ActionTenantKeyApprove, tenantID)
	if err != nil {
		return nil, err
	}
	if _, err := v.findTenant(ctx, tenantID); err != nil {
		return nil, v.deny(ctx, l, err)
	}
	if !custos.ValidID(custos.PrefixKeyChange, changeID) {
		return nil, v.deny(ctx, l, custos.Errorf(custos.EINVALID, "change: the id of the pending change reviewed (kc_…)"))
	}
	c, err := v.pendingKeyChange(ctx, v.read, tenantID)
	if err == nil && c == nil {
		err = notFound("pending key change")
	}
	if err == nil && c.ID != changeID {
		err = custos.Errorf(custos.ECONFLICT, "the pending change is now %s, not the one reviewed: review it first", c.ID)
	}
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	approver := custos.PrincipalFromContext(ctx)
	requester, err := v.findPrincipalTx(ctx, v.read, c.RequestedBy)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	if err := secondParty(approver, requester); err != nil {
		return nil, v.deny(ctx, l, err)
	}
	var mark audit.Leaf
	noteSponsored(&mark, approver, requester)
	return v.applyKeyChange(ctx, l, c, approver.ID, v.now(), mark.Detail)
}

// CancelTenantKeyChange cancels the tenant's pending key change. Any of
// the tenant's admins may, the requester too.
func (v *Vault) CancelTenantKeyChange(ctx context.Context, tenantID string) (*custos.TenantKeyChange, error) {
	l, err := v.authorize(ctx, custos.ActionTenantKeyCancel, tenantID)
	if err != nil {
		return nil, err
	}
	if _, err := v.findTenant(ctx, tenantID); err != nil {
		return nil, v.deny(ctx, l, err)
	}
	p := custos.PrincipalFromContext(ctx)
	var c *custos.TenantKeyChange
	m := &notify.Message{Topic: TopicTenantKeyChangeCancelled, Severity: notify.SeverityHigh, TenantID: tenantID, To: []string{notify.ToTenantAdmins, notify.ToStaffSecurity}}
	err = v.announce(ctx, l, m, func(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf) error {
		var err error
		if c, err = v.pendingKeyChange(ctx, tx, tenantID); err != nil {
			return err
		}
		if c == nil {
			return notFound("pending key change")
		}
		c.Status, c.CancelledBy = custos.KeyChangeCancelled, p.ID
		leaf.Detail = "key change " + c.ID + " cancelled"
		m.Text = fmt.Sprintf("%s %s cancelled the pending change of this tenant's key (%s): nothing changed", p.Kind, p.ID, c.Op)
		m.Data = map[string]string{"change": c.ID, "op": c.Op}
		if _, err := tx.ExecContext(ctx, `UPDATE tenant_key_changes SET status = $1, cancelled_by = $2, done_at = $3 WHERE id = $4`, c.Status, c.CancelledBy, ms(v.now()), c.ID); err != nil {
			return fmt.Errorf("cancel key change: %w", err)
		}
		return v.reseal(ctx, tx, "tenant_key_changes", c.ID)
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// RunDueKeyChanges applies the key changes whose grace period ended by
// now, as the system, and returns how many took effect. On PostgreSQL only
// the log's leader applies them. A change whose key no longer works for
// custos is marked failed and announced: nothing changed.
func (v *Vault) RunDueKeyChanges(ctx context.Context, now time.Time) (int, error) {
	if !v.log.IsLeader() {
		return 0, nil
	}
	due, err := queryAll(ctx, v, scanKeyChange, `SELECT `+keyChangeColumns+` FROM tenant_key_changes WHERE status = $1 AND due_at <= $2 ORDER BY due_at, id`,
		custos.KeyChangeScheduled, ms(now))
	if err != nil {
		return 0, fmt.Errorf("due key changes: %w", err)
	}
	done := 0
	var errs []error
	for _, c := range due {
		if err := v.checkRow(ctx, v.read, "tenant_key_changes", c.ID); err != nil {
			errs = append(errs, fmt.Errorf("key change %s: %w", c.ID, err))
			continue
		}
		action := custos.ActionTenantKeySet
		if c.Op == custos.KeyChangeClear {
			action = custos.ActionTenantKeyClear
		}
		sctx, l := systemLeaf(ctx, action, c.TenantID)
		_, err := v.applyKeyChange(sctx, l, c, "", now, "")
		if errors.Is(err, errKeyChangeFailed) {
			if err := v.failKeyChange(sctx, c, now); err != nil {
				errs = append(errs, fmt.Errorf("key change %s: %w", c.ID, err))
			}
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("key change %s: %w", c.ID, err))
			continue
		}
		done++
	}
	return done, errors.Join(errs...)
}

// errKeyChangeFailed wraps the refusal of a due change by a key that no
// longer works for custos.
var errKeyChangeFailed = errors.New("the key does not work for custos")

// failKeyChange marks a due change failed and tells the tenant's admins
// and security.
func (v *Vault) failKeyChange(ctx context.Context, c *custos.TenantKeyChange, now time.Time) error {
	_, l := systemLeaf(ctx, custos.ActionTenantKeyChangeFailed, c.TenantID)
	l.Detail = "key change " + c.ID + " failed: the key did not work for custos when due"
	m := &notify.Message{Topic: TopicTenantKeyChangeFailed, Severity: notify.SeverityHigh, TenantID: c.TenantID, To: []string{notify.ToTenantAdmins, notify.ToStaffSecurity},
		Text: "the pending change of this tenant's key (" + c.Op + ") came due but custos could not use the key: nothing changed; fix the key's grants and ask again",
		Data: map[string]string{"change": c.ID, "op": c.Op}}
	return v.announce(ctx, l, m, func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
		res, err := tx.ExecContext(ctx, `UPDATE tenant_key_changes SET status = $1, done_at = $2 WHERE id = $3 AND status = $4`, custos.KeyChangeFailed, ms(now), c.ID, custos.KeyChangeScheduled)
		if err != nil {
			return fmt.Errorf("fail key change: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return custos.Errorf(custos.ECONFLICT, "key change %s is no longer pending", c.ID)
		}
		return v.reseal(ctx, tx, "tenant_key_changes", c.ID)
	})
}

// applyKeyChange re-wraps the tenant's keysets as c says (KMS calls
// outside the transaction) and, in one transaction under l, swaps them in,
// marks c applied (approvedBy: the second admin, or "" when due) and tells
// the tenant's admins and security. c must still be the tenant's pending
// change then.
func (v *Vault) applyKeyChange(ctx context.Context, l audit.Leaf, c *custos.TenantKeyChange, approvedBy string, now time.Time, note string) (*custos.TenantKey, error) {
	cur, err := v.readTenantKey(ctx, c.TenantID)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	var from, to tink.AEAD
	if cur.uri.Valid {
		if from, err = keys.OpenTenantKMS(cur.uri.String); err != nil {
			return nil, v.keyChangeRefused(ctx, l, c, approvedBy)
		}
	}
	switch c.Op {
	case custos.KeyChangeSet:
		if v.usableTenantKMS(c.URI, c.TenantID) != nil {
			return nil, v.keyChangeRefused(ctx, l, c, approvedBy)
		}
		if to, err = keys.OpenTenantKMS(c.URI); err != nil {
			return nil, v.keyChangeRefused(ctx, l, c, approvedBy)
		}
	case custos.KeyChangeClear:
		if !cur.uri.Valid {
			return nil, v.deny(ctx, l, custos.Errorf(custos.ECONFLICT, "the tenant's keys are already managed by custos alone"))
		}
	default:
		return nil, v.deny(ctx, l, fmt.Errorf("key change %s: unknown op", c.ID))
	}
	wrapped, err := v.ring.Rewrap(c.TenantID, cur.wrapped, from, to)
	if errors.Is(err, keys.ErrKeyUnavailable) {
		return nil, v.keyChangeRefused(ctx, l, c, approvedBy)
	} else if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	now = now.UTC().Truncate(time.Millisecond)
	who := "the system (its grace period ended)"
	if approvedBy != "" {
		who = "a second tenant admin, " + approvedBy + ","
	}
	set, args := `kms_uri = NULL, kms_set_at = NULL, kms_set_by = NULL, kms_down_since = NULL`, []any(nil)
	k := &custos.TenantKey{TenantID: c.TenantID, Managed: custos.KeyManagedByCustos, Kind: v.kek, State: custos.KeyAvailable}
	m := &notify.Message{Severity: notify.SeverityHigh, TenantID: c.TenantID, To: []string{notify.ToTenantAdmins, notify.ToStaffSecurity}, Data: map[string]string{"change": c.ID}}
	// Each entry commits to the stored keyset (and a set to the URI, by
	// digest), so that a keyset row swapped back by hand is detectable
	// from the log (Vault.VerifyData): its detail begins with one of
	// keysWrappedUnder or keysBackUnder.
	if c.Op == custos.KeyChangeSet {
		k = &custos.TenantKey{TenantID: c.TenantID, Managed: custos.KeyManagedByTenant, URI: c.URI, Kind: c.Kind, State: custos.KeyAvailable, SetAt: &now, SetBy: c.RequestedBy}
		set, args = `kms_uri = $3, kms_set_at = $4, kms_set_by = $5, kms_down_since = NULL`, []any{c.URI, ms(now), c.RequestedBy}
		l.Detail = keysWrappedUnder + " " + c.Kind + " uri " + uriDigest(c.URI) + " keyset " + keysetDigest(wrapped) + " change " + c.ID
		m.Topic = TopicTenantKeySet
		m.Text = fmt.Sprintf("this tenant's keys are now wrapped under the tenant's own KMS key (%s, uri %s), as %s %s asked, applied by %s: revoking custos's access to it stops custos reading the tenant's data",
			c.Kind, uriDigest(c.URI), "tenant admin", c.RequestedBy, who)
		m.Data["kind"], m.Data["uri_sha256"] = c.Kind, uriDigest(c.URI)
	} else {
		kind := keys.DescribeTenantKMS(cur.uri.String)
		l.Detail = keysBackUnder + "; were under the tenant's own key " + kind + " uri " + uriDigest(cur.uri.String) + " keyset " + keysetDigest(wrapped) + " change " + c.ID
		m.Topic = TopicTenantKeyCleared
		m.Text = fmt.Sprintf("this tenant's keys were taken off the tenant's own KMS key (%s), as tenant admin %s asked, applied by %s: custos's key alone now opens them, and revoking the tenant's key no longer stops custos",
			kind, c.RequestedBy, who)
		m.Data["kind"], m.Data["uri_sha256"] = kind, uriDigest(cur.uri.String)
	}
	l.Detail += note // the approver sponsored by the requester (noteSponsored)
	err = v.announce(ctx, l, m, func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
		p, err := v.pendingKeyChange(ctx, tx, c.TenantID)
		if err != nil {
			return err
		}
		if p == nil || p.ID != c.ID || (approvedBy == "" && p.DueAt.After(now)) {
			return custos.Errorf(custos.ECONFLICT, "key change %s is no longer pending", c.ID)
		}
		if err := swapTenantKeyset(ctx, tx, c.TenantID, cur.wrapped, wrapped, set, args...); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE tenant_key_changes SET status = $1, approved_by = $2, done_at = $3 WHERE id = $4`,
			custos.KeyChangeApplied, nullString(approvedBy), ms(now), c.ID); err != nil {
			return fmt.Errorf("mark key change applied: %w", err)
		}
		return v.reseal(ctx, tx, "tenant_key_changes", c.ID)
	})
	if err != nil {
		return nil, err
	}
	v.tenantCache.Delete(c.TenantID)
	return k, nil
}

// The beginnings of the details of the entries that change a tenant's
// keyset wrapping (replayed by Vault.VerifyData).
const (
	keysWrappedUnder = "tenant keysets wrapped under the tenant's own key"
	keysBackUnder    = "tenant keysets back under custos's KEK alone"
)

// keyChangeRefused is the answer when a key change's keys do not work for
// custos: an approver is refused with key_unavailable (the change stays
// pending); a due change is failed by the caller.
func (v *Vault) keyChangeRefused(ctx context.Context, l audit.Leaf, c *custos.TenantKeyChange, approvedBy string) error {
	if approvedBy == "" {
		return errKeyChangeFailed
	}
	return v.deny(ctx, l, errKeyUnavailable(c.TenantID))
}
