package vault

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/keys"
	"github.com/custos-dev/custos/notify"
	"github.com/custos-dev/custos/receipt"
)

// Verified deletion (docs/deletion.md). A tenant's deletion is requested
// by one of its admins (or by an operator and approved by a second one),
// announced to every tenant admin at once, and executed by
// [Vault.RunDueDeletions] once its grace period has passed: its keyset
// row is deleted (crypto-shredding every ciphertext anywhere) with the
// system's audit entry "tenant.delete", the subject of a receipt (package
// receipt), and its rows are then purged in short batches, recorded by
// one "tenant.purge" entry. A list's or a contact's deletion is
// immediate and gets a receipt too.

// receiptWait bounds how long a deletion waits for its entry to be
// sequenced and covered by a checkpoint before it answers without the
// receipt's file (which is then issued by the next RunDueDeletions or
// fetched with [Vault.Receipt]).
const receiptWait = 10 * time.Second

// insertReceipt stores a receipt's row (its file comes once the entry is
// sequenced) inside the deletion's transaction.
func (v *Vault) insertReceipt(ctx context.Context, tx *sql.Tx, st *receipt.Statement) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO receipts (id, tenant_id, scope, list_id, token, detail, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		st.ID, st.Tenant, st.Scope, nullString(st.List), nullString(st.Contact), st.Detail(), ms(v.now()))
	if err != nil {
		return fmt.Errorf("insert receipt: %w", err)
	}
	return nil
}

// deleteList removes a list's rows in tx and returns their counts: its
// contacts (canaries among them) and the canaries' tags.
func deleteList(ctx context.Context, tx *sql.Tx, canaryListTag, tenant, list string, counts map[string]int) error {
	res, err := tx.ExecContext(ctx, `DELETE FROM canaries WHERE list_tag = $1`, canaryListTag)
	if err != nil {
		return fmt.Errorf("delete canaries: %w", err)
	}
	n, _ := res.RowsAffected()
	counts["canaries"] += int(n)
	res, err = tx.ExecContext(ctx, `DELETE FROM suppressions WHERE tenant_id = $1 AND token IN (SELECT token FROM contacts WHERE list_id = $2 AND tenant_id = $1)`, tenant, list)
	if err != nil {
		return fmt.Errorf("delete suppressions: %w", err)
	}
	n, _ = res.RowsAffected()
	counts["suppressions"] += int(n)
	// A reader's kept watermark rows go with the list (made up, not
	// counted on the receipt).
	if _, err = tx.ExecContext(ctx, `DELETE FROM reader_canaries WHERE list_id = $1 AND tenant_id = $2`, list, tenant); err != nil {
		return fmt.Errorf("delete reader canaries: %w", err)
	}
	if _, err = tx.ExecContext(ctx, `DELETE FROM canary_reserve WHERE list_id = $1 AND tenant_id = $2`, list, tenant); err != nil {
		return fmt.Errorf("delete reserved canary tokens: %w", err)
	}
	// Its canary plan, and the events waiting in it, go too.
	if _, err = tx.ExecContext(ctx, `DELETE FROM canary_plans WHERE list_tag = $1`, canaryListTag); err != nil {
		return fmt.Errorf("delete canary plan: %w", err)
	}
	res, err = tx.ExecContext(ctx, `DELETE FROM contacts WHERE list_id = $1 AND tenant_id = $2`, list, tenant)
	if err != nil {
		return fmt.Errorf("delete contacts: %w", err)
	}
	n, _ = res.RowsAffected()
	counts["contacts"] += int(n)
	res, err = tx.ExecContext(ctx, `DELETE FROM lists WHERE id = $1 AND tenant_id = $2`, list, tenant)
	if err != nil {
		return fmt.Errorf("delete list: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return notFound("list")
	}
	counts["lists"]++
	return nil
}

func (v *Vault) listTag(ctx context.Context, list string) (string, error) {
	k, err := v.canaryPRF(ctx)
	if err != nil {
		return "", fmt.Errorf("canary key: %w", err)
	}
	return hex.EncodeToString(k.Tag("list/" + list)), nil
}

// DeleteList deletes a list, its contacts (canaries included) and their
// suppressions, and returns the deletion's receipt. In the same
// transaction it destroys the list's keyset (crypto-shredding the list's
// ciphertexts, blind indexes and row MACs in backups too), which the
// receipt names. A legacy list (created before lists had keys) has none:
// its rows are removed, and its ciphertexts in backups stay under the
// tenant's live keyset until the tenant itself is deleted
// (docs/deletion.md).
func (v *Vault) DeleteList(ctx context.Context, tenant, id string) (*custos.Receipt, error) {
	l, _, err := v.authorizeList(ctx, custos.ActionListDelete, tenant, id)
	if err != nil {
		return nil, err
	}
	tag, err := v.listTag(ctx, id)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	st := &receipt.Statement{ID: custos.NewID(custos.PrefixReceipt), Tenant: tenant, Scope: custos.DeletionScopeList, List: id, Counts: map[string]int{}}
	rec, err := v.recordAt(ctx, l, func(ctx context.Context, tx *sql.Tx, l *audit.Leaf) error {
		if err := deleteList(ctx, tx, tag, tenant, id, st.Counts); err != nil {
			return err
		}
		digest, err := destroyListKeys(ctx, tx, tenant, id)
		if err != nil {
			return err
		}
		st.Keyset, st.KEK, st.Counts["keysets"] = digest, "", 0
		if digest != "" {
			if st.KEK, err = v.kekKind(ctx, tx, tenant); err != nil {
				return err
			}
			st.Counts["keysets"] = 1
		}
		l.Count, l.Detail = st.Counts["contacts"], st.Detail()
		return v.insertReceipt(ctx, tx, st)
	})
	v.forgetList(tenant, id) // also after a failure: the keys are read again if the list lives
	if err != nil {
		return nil, err
	}
	return v.issue(ctx, st.ID, rec)
}

// DeleteContact deletes a contact (a data subject's erasure) and its
// suppression, and returns the deletion's receipt. Its row and blind
// index are removed; backups hold its ciphertext under the tenant's live
// keyset (docs/deletion.md). A token of the caller's own watermark row
// (watermark.go) is deleted from the caller's view alike: its values are
// erased, a tombstone keeps it from being minted again, and the receipt
// is the same — true of that row, which no one else's view holds.
func (v *Vault) DeleteContact(ctx context.Context, tenant, token string) (*custos.Receipt, error) {
	l, s, err := v.authorizeContact(ctx, custos.ActionContactDelete, tenant, token)
	if err != nil {
		return nil, err
	}
	var lk *keys.DataKeys
	if s.reader != "" {
		if lk, err = v.listKeys(ctx, tenant, s.list); err != nil {
			return nil, v.deny(ctx, l, err)
		}
	}
	st := &receipt.Statement{ID: custos.NewID(custos.PrefixReceipt), Tenant: tenant, Scope: custos.DeletionScopeContact, List: s.list, Contact: token, Counts: map[string]int{}}
	rec, err := v.recordAt(ctx, l, func(ctx context.Context, tx *sql.Tx, l *audit.Leaf) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM suppressions WHERE token = $1 AND tenant_id = $2`, token, tenant)
		if err != nil {
			return fmt.Errorf("delete suppression: %w", err)
		}
		n, _ := res.RowsAffected()
		st.Counts["suppressions"] = int(n)
		if s.reader != "" {
			// The reader's own watermark row (watermark.go): deleted from
			// its view, with a receipt like a contact's — its values are
			// erased, which is what the receipt states. The tombstone
			// keeps a replacement from being minted.
			if err := buryMark(ctx, tx, lk, s, ms(v.now())); err != nil {
				return err
			}
		} else if res, err = tx.ExecContext(ctx, `DELETE FROM contacts WHERE token = $1 AND tenant_id = $2`, token, tenant); err != nil {
			return fmt.Errorf("delete contact: %w", err)
		} else if n, _ := res.RowsAffected(); n != 1 {
			return notFound("contact")
		}
		st.Counts["contacts"] = 1
		l.Count, l.Detail = 1, st.Detail()
		return v.insertReceipt(ctx, tx, st)
	})
	if err != nil {
		return nil, err
	}
	return v.issue(ctx, st.ID, rec)
}

// RequestTenantDeletion schedules the deletion of a tenant. A tenant
// admin's request is scheduled at once, due after the grace period; an
// operator's (contract end) waits for a second operator
// ([Vault.ApproveTenantDeletion]). Every tenant admin is told at once, in
// the same transaction, and so is security.
func (v *Vault) RequestTenantDeletion(ctx context.Context, tenant string, req *custos.DeletionRequest) (*custos.Deletion, error) {
	l, err := v.authorize(ctx, custos.ActionDeletionRequest, tenant)
	if err != nil {
		return nil, err
	}
	if err := req.Validate(); err != nil {
		return nil, v.deny(ctx, l, err)
	}
	if _, err := v.findTenant(ctx, tenant); err != nil {
		return nil, v.deny(ctx, l, err)
	}
	p := custos.PrincipalFromContext(ctx)
	now := v.now().UTC().Truncate(time.Millisecond)
	d := &custos.Deletion{ID: custos.NewID(custos.PrefixDeletion), TenantID: tenant, Initiator: custos.InitiatorTenant, RequestedBy: p.ID,
		GraceSeconds: int64(req.Grace() / time.Second), CreatedAt: now, Status: custos.DeletionScheduled}
	topic, text := "deletion.scheduled", "tenant deletion scheduled by a tenant admin; any tenant admin may cancel it before it is due"
	if p.Kind == custos.KindOperator {
		d.Initiator, d.Status = custos.InitiatorOperator, custos.DeletionAwaitingApproval
		topic, text = "deletion.requested", "an operator requested this tenant's deletion (contract end); it is scheduled once a second operator approves"
	} else {
		due := now.Add(req.Grace())
		d.DueAt = &due
	}
	l.Detail = "deletion " + d.ID + " " + d.Status
	msg := &notify.Message{Topic: topic, Severity: notify.SeverityHigh, TenantID: tenant, To: []string{notify.ToTenantAdmins, notify.ToStaffSecurity},
		Text: text, Data: deletionData(d)}
	err = v.announce(ctx, l, msg, func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
		var open int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM deletions WHERE tenant_id = $1 AND status IN ($2, $3)`,
			tenant, custos.DeletionAwaitingApproval, custos.DeletionScheduled).Scan(&open); err != nil {
			return fmt.Errorf("find open deletion: %w", err)
		}
		if open > 0 {
			return custos.Errorf(custos.ECONFLICT, "the tenant has a deletion pending already")
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO deletions (id, tenant_id, status, initiator, requested_by, grace_ms, created_at, due_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			d.ID, tenant, d.Status, d.Initiator, d.RequestedBy, d.GraceSeconds*1000, ms(now), nullTime(d.DueAt))
		if err != nil {
			return fmt.Errorf("insert deletion: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

func nullTime(t *time.Time) sql.NullInt64 {
	if t == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: ms(*t), Valid: true}
}

func deletionData(d *custos.Deletion) map[string]string {
	m := map[string]string{"deletion": d.ID, "status": d.Status, "initiator": d.Initiator}
	if d.DueAt != nil {
		m["due_at"] = d.DueAt.Format(time.RFC3339)
	}
	return m
}

const deletionColumns = `id, tenant_id, status, initiator, requested_by, approved_by, cancelled_by, grace_ms, created_at, due_at, done_at, receipt_id`

func scanDeletion(row scanner) (*custos.Deletion, error) {
	var d custos.Deletion
	var approved, cancelled, rid sql.NullString
	var grace, created int64
	var due, done sql.NullInt64
	if err := row.Scan(&d.ID, &d.TenantID, &d.Status, &d.Initiator, &d.RequestedBy, &approved, &cancelled, &grace, &created, &due, &done, &rid); err != nil {
		return nil, err
	}
	d.ApprovedBy, d.CancelledBy, d.ReceiptID = approved.String, cancelled.String, rid.String
	d.GraceSeconds, d.CreatedAt, d.DueAt, d.DoneAt = grace/1000, fromMS(created), fromNullMS(due), fromNullMS(done)
	return &d, nil
}

// openDeletion returns the tenant's pending deletion in tx.
func openDeletion(ctx context.Context, tx *sql.Tx, tenant string) (*custos.Deletion, error) {
	d, err := scanDeletion(tx.QueryRowContext(ctx, `SELECT `+deletionColumns+` FROM deletions WHERE tenant_id = $1 AND status IN ($2, $3)`,
		tenant, custos.DeletionAwaitingApproval, custos.DeletionScheduled))
	if isNoRows(err) {
		return nil, notFound("pending deletion")
	}
	return d, err
}

// ApproveTenantDeletion is the second operator's approval of an
// operator's request: a different person, not created by the requester
// (nor its creator). The deletion is then due after its grace period, and
// the tenant is told.
func (v *Vault) ApproveTenantDeletion(ctx context.Context, tenant string) (*custos.Deletion, error) {
	l, err := v.authorize(ctx, custos.ActionDeletionApprove, tenant)
	if err != nil {
		return nil, err
	}
	approver := custos.PrincipalFromContext(ctx)
	var d *custos.Deletion
	msg := &notify.Message{Topic: "deletion.scheduled", Severity: notify.SeverityHigh, TenantID: tenant, To: []string{notify.ToTenantAdmins, notify.ToStaffSecurity},
		Text: "a second operator approved this tenant's deletion (contract end); it runs when due"}
	err = v.announce(ctx, l, msg, func(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf) error {
		var err error
		if d, err = openDeletion(ctx, tx, tenant); err != nil {
			return err
		}
		if d.Status != custos.DeletionAwaitingApproval {
			return custos.Errorf(custos.ECONFLICT, "deletion %s is %s, not awaiting approval", d.ID, d.Status)
		}
		requester, err := v.findPrincipalTx(ctx, tx, d.RequestedBy)
		if err != nil {
			return err
		}
		if err := secondParty(approver, requester); err != nil {
			return err
		}
		if requester.CreatedByHolderOf(approver) {
			return custos.Errorf(custos.EFORBIDDEN, "%s", reasonCreatedBy)
		}
		due := v.now().UTC().Truncate(time.Millisecond).Add(time.Duration(d.GraceSeconds) * time.Second)
		d.Status, d.ApprovedBy, d.DueAt = custos.DeletionScheduled, approver.ID, &due
		leaf.Detail = "deletion " + d.ID + " approved"
		noteSponsored(leaf, approver, requester)
		msg.Data = deletionData(d)
		_, err = tx.ExecContext(ctx, `UPDATE deletions SET status = $1, approved_by = $2, due_at = $3 WHERE id = $4`, d.Status, d.ApprovedBy, ms(due), d.ID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// CancelTenantDeletion cancels the tenant's pending deletion. Any of the
// tenant's admins may; an operator may cancel only an operator's request
// (a tenant's own decision is the tenant's).
func (v *Vault) CancelTenantDeletion(ctx context.Context, tenant string) (*custos.Deletion, error) {
	l, err := v.authorize(ctx, custos.ActionDeletionCancel, tenant)
	if err != nil {
		return nil, err
	}
	p := custos.PrincipalFromContext(ctx)
	var d *custos.Deletion
	msg := &notify.Message{Topic: "deletion.cancelled", Severity: notify.SeverityHigh, TenantID: tenant, To: []string{notify.ToTenantAdmins, notify.ToStaffSecurity},
		Text: "this tenant's pending deletion was cancelled"}
	err = v.announce(ctx, l, msg, func(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf) error {
		var err error
		if d, err = openDeletion(ctx, tx, tenant); err != nil {
			return err
		}
		if p.Kind == custos.KindOperator && d.Initiator == custos.InitiatorTenant {
			return custos.Errorf(custos.EFORBIDDEN, "a deletion the tenant requested is cancelled by a tenant admin")
		}
		d.Status, d.CancelledBy = custos.DeletionCancelled, p.ID
		leaf.Detail = "deletion " + d.ID + " cancelled"
		msg.Data = deletionData(d)
		_, err = tx.ExecContext(ctx, `UPDATE deletions SET status = $1, cancelled_by = $2 WHERE id = $3`, d.Status, d.CancelledBy, d.ID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// TenantDeletions returns the tenant's deletions, newest first (also once
// the tenant is gone).
func (v *Vault) TenantDeletions(ctx context.Context, tenant string) ([]*custos.Deletion, error) {
	l, err := v.authorize(ctx, custos.ActionDeletionRead, tenant)
	if err != nil {
		return nil, err
	}
	return listAll(ctx, v, l, "deletions", scanDeletion,
		`SELECT `+deletionColumns+` FROM deletions WHERE tenant_id = $1 ORDER BY created_at DESC, id`, tenant)
}

// RunDueDeletions executes every scheduled tenant deletion due at now
// and purges its rows, finishes purges cut short before, issues receipts
// still waiting for their entry, and drops from this
// node's caches the keys of tenants deleted (by any node). The node calls
// it periodically; it returns how many deletions it executed.
func (v *Vault) RunDueDeletions(ctx context.Context, now time.Time) (int, error) {
	due, err := queryAll(ctx, v, scanDeletion, `SELECT `+deletionColumns+` FROM deletions WHERE status = $1 AND due_at <= $2 ORDER BY due_at, id`,
		custos.DeletionScheduled, ms(now))
	if err != nil {
		return 0, fmt.Errorf("due deletions: %w", err)
	}
	if !v.log.IsLeader() {
		due = nil // one node executes (queued mode: the leader); every node forgets keys below
	}
	done := 0
	var errs []error
	purged := map[string]bool{} // purges run (or begun) by this call
	for _, d := range due {
		r, err := v.executeTenantDeletion(ctx, d, now)
		if err != nil {
			errs = append(errs, fmt.Errorf("deletion %s: %w", d.ID, err))
			continue
		}
		done++
		purged[d.TenantID] = true
		if err := v.purgeTenant(ctx, d.TenantID, r.ID); err != nil {
			errs = append(errs, fmt.Errorf("purge tenant %s: %w", d.TenantID, err))
		}
	}
	if v.log.IsLeader() {
		// Purges cut short (a crash, a failed batch) are finished here.
		pending, err := v.pendingPurges(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("pending purges: %w", err))
		}
		for _, p := range pending {
			if purged[p[0]] {
				continue
			}
			if err := v.purgeTenant(ctx, p[0], p[1]); err != nil {
				errs = append(errs, fmt.Errorf("purge tenant %s: %w", p[0], err))
			}
		}
	}
	gone, err := queryAll(ctx, v, func(r scanner) (string, error) { var s string; return s, r.Scan(&s) },
		`SELECT id FROM tenants WHERE deleted_at IS NOT NULL`)
	if err != nil {
		errs = append(errs, err)
	}
	for _, t := range gone {
		v.forget(t)
	}
	if err := v.forgetDeletedLists(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := v.forgetRotatedKeys(ctx); err != nil {
		errs = append(errs, err)
	}
	pending, err := queryAll(ctx, v, func(r scanner) (string, error) { var s string; return s, r.Scan(&s) },
		`SELECT id FROM receipts WHERE file IS NULL ORDER BY created_at LIMIT 100`)
	if err != nil {
		errs = append(errs, err)
	}
	for _, id := range pending {
		if _, err := v.issue(ctx, id, audit.Receipt{Queued: true}); err != nil {
			errs = append(errs, fmt.Errorf("receipt %s: %w", id, err))
		}
	}
	return done, errors.Join(errs...)
}

// forgetDeletedLists drops from this process the keys of lists deleted
// (by any node) since the last call, with a minute's margin for receipts
// committed late or stamped by another node's clock.
func (v *Vault) forgetDeletedLists(ctx context.Context) error {
	since := v.listsForgotten.Load() - time.Minute.Milliseconds()
	type deleted struct {
		tenant, list string
		at           int64
	}
	ds, err := queryAll(ctx, v, func(r scanner) (deleted, error) {
		var d deleted
		return d, r.Scan(&d.tenant, &d.list, &d.at)
	}, `SELECT tenant_id, list_id, created_at FROM receipts WHERE scope = $1 AND created_at >= $2`, custos.DeletionScopeList, since)
	if err != nil {
		return fmt.Errorf("deleted lists: %w", err)
	}
	newest := v.listsForgotten.Load()
	for _, d := range ds {
		v.forgetList(d.tenant, d.list)
		newest = max(newest, d.at)
	}
	v.listsForgotten.Store(newest)
	return nil
}

// kekKind is the receipt's "kek" for a keyset of tenant: the tenant's own
// KMS key if it set one (it wraps the tenant's keys around custos's KEK,
// and the tenant can disable it), else custos's KEK.
func (v *Vault) kekKind(ctx context.Context, tx *sql.Tx, tenant string) (string, error) {
	var kms sql.NullString
	if err := tx.QueryRowContext(ctx, `SELECT kms_uri FROM tenant_keys WHERE tenant_id = $1`, tenant).Scan(&kms); err != nil && !isNoRows(err) {
		return "", fmt.Errorf("read tenant key: %w", err)
	}
	if kms.Valid {
		return keys.DescribeTenantKMS(kms.String), nil
	}
	return v.kek, nil
}

// forget drops a tenant's unwrapped keys from this process.
func (v *Vault) forget(tenant string) {
	v.tenantCache.Delete(tenant)
	v.tenantLoads.Delete(tenant)
	v.ring.Forget(tenant)
}

// executeTenantDeletion crypto-shreds a tenant: in one transaction with
// its "tenant.delete" entry it deletes the wrapped keyset (without which
// no ciphertext of the tenant opens, in this database, a replica or a
// backup), marks the tenant deleted (from then on every request for it
// answers 410 and no lookup finds its rows), counts the rows that are now
// unreadable (the receipt's counts) and stores the receipt's row. The rows
// themselves are removed afterwards, in short batches, by
// [Vault.purgeTenant]: the transaction the sequencer applies stays small
// however large the tenant, so other tenants' audited requests do not
// wait behind it.
func (v *Vault) executeTenantDeletion(ctx context.Context, d *custos.Deletion, now time.Time) (*custos.Receipt, error) {
	canary, err := v.canaryPRF(ctx)
	if err != nil {
		return nil, fmt.Errorf("canary key: %w", err)
	}
	ctx = custos.NewContext(ctx, &custos.Request{ID: custos.NewID(custos.PrefixRequest)})
	l := leaf(ctx, custos.ActionTenantDelete, d.TenantID)
	l.Actor = "system"
	st := &receipt.Statement{ID: custos.NewID(custos.PrefixReceipt), Tenant: d.TenantID, Scope: custos.DeletionScopeTenant, Counts: map[string]int{}}
	msg := &notify.Message{Topic: "tenant.deleted", Severity: notify.SeverityHigh, TenantID: d.TenantID, To: []string{notify.ToTenantAdmins, notify.ToStaffSecurity},
		Text: "this tenant was deleted: its keys were destroyed; the receipt proves it", Data: map[string]string{"deletion": d.ID, "receipt": st.ID}}
	rec, err := v.recordAt(ctx, l, func(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf) error {
		cur, err := openDeletion(ctx, tx, d.TenantID)
		if err != nil || cur.ID != d.ID || cur.Status != custos.DeletionScheduled || cur.DueAt == nil || cur.DueAt.After(now) {
			return custos.Errorf(custos.ECONFLICT, "deletion %s is no longer due", d.ID)
		}
		var wrapped []byte
		var kms sql.NullString
		if err := tx.QueryRowContext(ctx, `SELECT keyset, kms_uri FROM tenant_keys WHERE tenant_id = $1`, d.TenantID).Scan(&wrapped, &kms); err != nil {
			return fmt.Errorf("read keyset: %w", err)
		}
		sum := sha256.Sum256(wrapped)
		st.Keyset = "sha256:" + hex.EncodeToString(sum[:])
		res, err := tx.ExecContext(ctx, `DELETE FROM tenant_keys WHERE tenant_id = $1`, d.TenantID)
		if err != nil {
			return fmt.Errorf("delete keyset: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("delete keyset: %d rows", n)
		}
		// Its lists' keysets are wrapped under it: shredded with it, and
		// their rows go now too (one per list, on an index).
		res, err = tx.ExecContext(ctx, `DELETE FROM list_keys WHERE tenant_id = $1`, d.TenantID)
		if err != nil {
			return fmt.Errorf("delete list keysets: %w", err)
		}
		n, _ := res.RowsAffected()
		st.Counts["keysets"] = 1 + int(n)
		st.KEK = v.kek
		if kms.Valid { // the tenant's own key wrapped it too (byok.go)
			st.KEK = keys.DescribeTenantKMS(kms.String)
		}
		if err := countTenantRows(ctx, tx, canary, d.TenantID, st.Counts); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE tenants SET deleted_at = $1, receipt_id = $2 WHERE id = $3`, ms(now), st.ID, d.TenantID); err != nil {
			return fmt.Errorf("mark tenant deleted: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE deletions SET status = $1, done_at = $2, receipt_id = $3 WHERE id = $4`, custos.DeletionDone, ms(now), st.ID, d.ID); err != nil {
			return fmt.Errorf("mark deletion done: %w", err)
		}
		leaf.Count, leaf.Detail = st.Counts["contacts"], st.Detail()
		if err := v.insertReceipt(ctx, tx, st); err != nil {
			return err
		}
		return v.enqueue(ctx, tx, msg)
	})
	if err != nil {
		return nil, err
	}
	v.forget(d.TenantID)
	v.kick()
	return v.issue(ctx, st.ID, rec)
}

// countTenantRows counts, in tx, the tenant's rows by kind (the kinds a
// receipt states): its lists and their contacts (canaries among them),
// the canaries' tags, suppressions and the reveal register. Every count
// runs on an index (lists, suppressions and reveals by tenant; contacts by
// list; canaries by list tag).
func countTenantRows(ctx context.Context, tx *sql.Tx, canary interface{ Tag(string) []byte }, tenant string, counts map[string]int) error {
	lists, err := txStrings(ctx, tx, `SELECT id FROM lists WHERE tenant_id = $1`, tenant)
	if err != nil {
		return fmt.Errorf("tenant lists: %w", err)
	}
	counts["lists"] = len(lists)
	counts["contacts"], counts["canaries"] = 0, 0
	for _, ls := range lists {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM contacts WHERE list_id = $1`, ls).Scan(&n); err != nil {
			return fmt.Errorf("count contacts: %w", err)
		}
		counts["contacts"] += n
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM canaries WHERE list_tag = $1`, hex.EncodeToString(canary.Tag("list/"+ls))).Scan(&n); err != nil {
			return fmt.Errorf("count canaries: %w", err)
		}
		counts["canaries"] += n
	}
	for _, q := range []struct{ kind, query string }{
		{"suppressions", `SELECT count(*) FROM suppressions WHERE tenant_id = $1`},
		{"reveals", `SELECT count(*) FROM reveals WHERE tenant_id = $1`},
	} {
		var n int
		if err := tx.QueryRowContext(ctx, q.query, tenant).Scan(&n); err != nil {
			return fmt.Errorf("count %s: %w", q.kind, err)
		}
		counts[q.kind] = n
	}
	return nil
}

func txStrings(ctx context.Context, tx *sql.Tx, query string, args ...any) ([]string, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// DefaultPurgeBatch is how many rows of a deleted tenant one purge
// batch removes at most unless Options.PurgeBatch says otherwise. Where
// batches are transactions of their own (PurgeInBatches), the purge
// pauses as long as a batch took before the next; where they ride the
// log's commits (PurgeInCommits), a step removes fewer rows, as many as
// fit in Options.PurgeStep. (Sizing separate batches to a time budget was no
// better for other tenants' p99 and slower: docs/benchmarks.md (p).)
const DefaultPurgeBatch = 100

// PurgeMode says where the batches of a deleted tenant's purge run.
type PurgeMode int

const (
	// PurgeAuto purges in the log's commits where the write pool is one
	// connection, the one the sequencer commits on (SQLite), and in
	// batches of their own elsewhere (PostgreSQL).
	PurgeAuto PurgeMode = iota
	// PurgeInCommits removes a few rows at the start of each of the audit
	// log's commit transactions ([audit.Log.RunChore]), and alone when the
	// log is idle: a purge then adds no transaction, and no fsync, for
	// other requests to wait behind — only its step, about Options.PurgeStep.
	PurgeInCommits
	// PurgeInBatches removes the rows in transactions of their own on the
	// write pool, pausing between them. On PostgreSQL they run beside the
	// sequencer's commits, on other connections.
	PurgeInBatches
)

// DefaultPurgeStep is the time a purge step riding a log commit aims at
// unless Options.PurgeStep says otherwise: the rows per step adapt to it,
// between 1 and the purge batch. An audited request whose commit carries
// a step waits about this much longer, and again as much for the step's
// pages in the commit's write (a step's time is a fair proxy for its
// pages: both grow with its rows), against the 0.3–0.6 ms median of an
// audited read on an idle log. 75 µs, half of the first choice: at
// 150 µs a step was about what the idle p99 is on a quiet machine
// (docs/benchmarks.md (w)); with the log's 5 ms ChoreIdle, 75 µs gave the
// lower p99 during the purge in the runs of (x).
const DefaultPurgeStep = 75 * time.Microsecond

// inCommits reports whether the purge rides the log's commits.
func (v *Vault) inCommits() bool {
	switch v.purgeMode {
	case PurgeInCommits:
		return true
	case PurgeInBatches:
		return false
	}
	return v.write.Stats().MaxOpenConnections == 1
}

// purgeTenant removes a deleted tenant's rows, whose keys are gone: per
// list, its contacts (with their blind indexes and suppressions) and its
// canaries' tags in batches of at most v.purgeBatch rows with no audit
// entry of their own — in the log's commits or in transactions of their
// own, as v.purgeMode says — so that other requests' audit commits are
// not held up behind them; then, in one transaction with the
// system's "tenant.purge" entry, what is left (the list rows, reveals and
// any stray suppression), after checking no contact is left. The entry's
// detail names the deletion's receipt and the rows removed by this call.
//
// It is idempotent and resumable: a purge cut short leaves the list rows,
// by which [Vault.RunDueDeletions] finds the tenant again (pendingPurges)
// and finishes it.
func (v *Vault) purgeTenant(ctx context.Context, tenant, receiptID string) error {
	canary, err := v.canaryPRF(ctx)
	if err != nil {
		return fmt.Errorf("canary key: %w", err)
	}
	lists, err := queryAll(ctx, v, func(r scanner) (string, error) { var s string; return s, r.Scan(&s) },
		`SELECT id FROM lists WHERE tenant_id = $1 ORDER BY id`, tenant)
	if err != nil {
		return fmt.Errorf("tenant lists: %w", err)
	}
	counts := map[string]int{}
	budget := v.purgeMax
	for _, ls := range lists {
		n, err := v.purgeBatches(ctx, &budget, []string{
			`DELETE FROM suppressions WHERE tenant_id = $1 AND token IN (SELECT token FROM contacts WHERE list_id = $2 ORDER BY token LIMIT $3)`,
			`DELETE FROM contacts WHERE tenant_id = $1 AND token IN (SELECT token FROM contacts WHERE list_id = $2 ORDER BY token LIMIT $3)`,
		}, tenant, ls)
		counts["suppressions"] += n[0]
		counts["contacts"] += n[1]
		if errors.Is(err, errPurgePaused) {
			return nil // the next RunDueDeletions goes on
		} else if err != nil {
			return fmt.Errorf("purge contacts: %w", err)
		}
		n, err = v.purgeBatches(ctx, &budget, []string{`DELETE FROM canaries WHERE tag IN (SELECT tag FROM canaries WHERE list_tag = $1 LIMIT $2)`},
			hex.EncodeToString(canary.Tag("list/"+ls)))
		counts["canaries"] += n[0]
		if errors.Is(err, errPurgePaused) {
			return nil
		} else if err != nil {
			return fmt.Errorf("purge canaries: %w", err)
		}
		if _, err := v.write.ExecContext(ctx, `DELETE FROM canary_plans WHERE list_tag = $1`, hex.EncodeToString(canary.Tag("list/"+ls))); err != nil {
			return fmt.Errorf("purge canary plan: %w", err)
		}
	}

	ctx = custos.NewContext(ctx, &custos.Request{ID: custos.NewID(custos.PrefixRequest)})
	l := leaf(ctx, custos.ActionTenantPurge, tenant)
	l.Actor = "system"
	return v.record(ctx, l, func(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf) error {
		var deleted sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT deleted_at FROM tenants WHERE id = $1`, tenant).Scan(&deleted); err != nil || !deleted.Valid {
			return custos.Errorf(custos.ECONFLICT, "tenant %s is not deleted", tenant)
		}
		var left int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM contacts WHERE list_id IN (SELECT id FROM lists WHERE tenant_id = $1)`, tenant).Scan(&left); err != nil {
			return fmt.Errorf("count contacts left: %w", err)
		}
		if left > 0 {
			return fmt.Errorf("purge: %d contacts left", left)
		}
		for _, q := range []struct{ kind, query string }{
			{"suppressions", `DELETE FROM suppressions WHERE tenant_id = $1`},
			{"reveals", `DELETE FROM reveals WHERE tenant_id = $1`},
			{"lists", `DELETE FROM lists WHERE tenant_id = $1`},
			// Shredded with the tenant and deleted then; one left by a
			// list created as the tenant was being deleted goes here.
			{"list_keys", `DELETE FROM list_keys WHERE tenant_id = $1`},
			{"reader_canaries", `DELETE FROM reader_canaries WHERE tenant_id = $1`},
		} {
			res, err := tx.ExecContext(ctx, q.query, tenant)
			if err != nil {
				return fmt.Errorf("purge %s: %w", q.kind, err)
			}
			n, _ := res.RowsAffected()
			counts[q.kind] += int(n)
		}
		// Reserved canary tokens (made up, never counted) go too.
		if _, err := tx.ExecContext(ctx, `DELETE FROM canary_reserve WHERE tenant_id = $1`, tenant); err != nil {
			return fmt.Errorf("purge reserved canary tokens: %w", err)
		}
		// So do the relay's records of its canary deliveries (uncounted:
		// a count would say how many canaries the tenant's mail carried).
		if _, err := tx.ExecContext(ctx, `DELETE FROM canary_sends WHERE tenant_id = $1`, tenant); err != nil {
			return fmt.Errorf("purge canary sends: %w", err)
		}
		leaf.Count = counts["contacts"]
		leaf.Detail = purgeDetail(receiptID, counts)
		return nil
	})
}

// purgeDetail is the "tenant.purge" entry's detail: the receipt of the
// deletion and the rows removed, by kind, in the receipt's order.
func purgeDetail(receiptID string, counts map[string]int) string {
	var b strings.Builder
	b.WriteString("purged receipt " + receiptID)
	for _, k := range receipt.Kinds {
		if k == "keysets" {
			continue // destroyed by the deletion itself
		}
		fmt.Fprintf(&b, " %s=%d", k, counts[k])
	}
	return b.String()
}

// errPurgePaused ends a purge that ran out of its batches for this call.
var errPurgePaused = errors.New("purge paused")

// purgeBatches runs stmts, in order, one batch at a time, each with
// args and then the batch's row limit, until the last removes fewer rows
// than its limit; it returns the rows each removed. Each batch takes one
// of budget if v.purgeMax bounds them; when none is left it returns
// errPurgePaused.
func (v *Vault) purgeBatches(ctx context.Context, budget *int, stmts []string, args ...any) ([]int, error) {
	if v.inCommits() {
		c := &purgeChore{args: args, limit: 1, max: v.purgeBatch, target: v.purgeStep, budget: budget, bounded: v.purgeMax != 0, total: make([]int, len(stmts))}
		// Prepared once: parsing the statements would otherwise cost a
		// small step more than its rows.
		for _, q := range stmts {
			s, err := v.write.PrepareContext(ctx, q)
			if err != nil {
				return c.total, fmt.Errorf("prepare purge: %w", err)
			}
			defer s.Close()
			c.stmts = append(c.stmts, s)
		}
		err := v.log.RunChore(ctx, c)
		if err == nil && c.paused {
			err = errPurgePaused
		}
		return c.total, err
	}
	args = append(args, v.purgeBatch)
	total := make([]int, len(stmts))
	for {
		if v.purgeMax != 0 && *budget <= 0 {
			return total, errPurgePaused
		}
		*budget--
		began := time.Now()
		n, err := v.purgeBatch1(ctx, stmts, args)
		took := time.Since(began)
		for i := range n {
			total[i] += n[i]
		}
		if err != nil {
			return total, err
		}
		if n[len(n)-1] < v.purgeBatch {
			return total, nil
		}
		select {
		case <-ctx.Done():
			return total, ctx.Err()
		case <-time.After(took):
		}
	}
}

// purgeBatch1 runs one batch in a transaction of its own on the write
// pool.
func (v *Vault) purgeBatch1(ctx context.Context, stmts []string, args []any) ([]int, error) {
	tx, err := v.write.BeginTx(ctx, nil)
	if err != nil {
		return make([]int, len(stmts)), err
	}
	defer tx.Rollback()
	n, err := purgeExec(ctx, tx, stmts, args)
	if err != nil {
		return make([]int, len(stmts)), err
	}
	if err := tx.Commit(); err != nil {
		return make([]int, len(stmts)), err
	}
	return n, nil
}

// purgeExec runs a batch's statements in tx and returns the rows each
// removed.
func purgeExec(ctx context.Context, tx *sql.Tx, stmts []string, args []any) ([]int, error) {
	n := make([]int, len(stmts))
	for i, q := range stmts {
		res, err := tx.ExecContext(ctx, q, args...)
		if err != nil {
			return nil, err
		}
		k, _ := res.RowsAffected()
		n[i] = int(k)
	}
	return n, nil
}

// purgeChore runs a purge's batches as steps of the audit log's commits
// (an [audit.Chore]). Its row limit adapts to Options.PurgeStep: one more row
// after a step that took less, a third fewer after one that took more.
type purgeChore struct {
	stmts      []*sql.Stmt
	args       []any
	limit, max int
	target     time.Duration // a step's aim: Options.PurgeStep
	budget     *int          // batches left, if bounded
	bounded    bool
	paused     bool  // ran out of budget
	step       []int // rows removed by the step not yet committed
	total      []int
}

func (c *purgeChore) Step(ctx context.Context, tx *sql.Tx) (bool, error) {
	c.step = nil
	if c.bounded && *c.budget <= 0 {
		c.paused = true
		return true, nil
	}
	if c.bounded {
		*c.budget--
	}
	began := time.Now()
	args := append(c.args, c.limit)
	n := make([]int, len(c.stmts))
	for i, s := range c.stmts {
		res, err := tx.StmtContext(ctx, s).ExecContext(ctx, args...)
		if err != nil {
			return false, err
		}
		k, _ := res.RowsAffected()
		n[i] = int(k)
	}
	took := time.Since(began)
	c.step = n
	last := n[len(n)-1] < c.limit
	if took <= c.target {
		c.limit = min(c.limit+1, c.max)
	} else {
		c.limit = max(c.limit*2/3, 1)
	}
	return last, nil
}

func (c *purgeChore) Committed() {
	for i := range c.step {
		c.total[i] += c.step[i]
	}
	c.step = nil
}

// pendingPurges returns the deleted tenants whose rows are not purged yet
// (a purge cut short leaves at least their list rows, or a reveal) and
// their receipts.
func (v *Vault) pendingPurges(ctx context.Context) ([][2]string, error) {
	return queryAll(ctx, v, func(r scanner) ([2]string, error) {
		var p [2]string
		var rid sql.NullString
		err := r.Scan(&p[0], &rid)
		p[1] = rid.String
		return p, err
	}, `SELECT t.id, t.receipt_id FROM tenants t WHERE t.deleted_at IS NOT NULL
		AND (EXISTS (SELECT 1 FROM lists l WHERE l.tenant_id = t.id) OR EXISTS (SELECT 1 FROM reveals r WHERE r.tenant_id = t.id)
			OR EXISTS (SELECT 1 FROM suppressions s WHERE s.tenant_id = t.id))
		ORDER BY t.deleted_at, t.id`)
}

const receiptColumns = `id, tenant_id, scope, list_id, token, entry_index, file, created_at`

func scanReceipt(row scanner) (*custos.Receipt, error) {
	var r custos.Receipt
	var list, token, file sql.NullString
	var idx sql.NullInt64
	var created int64
	if err := row.Scan(&r.ID, &r.TenantID, &r.Scope, &list, &token, &idx, &file, &created); err != nil {
		return nil, err
	}
	r.ListID, r.Token, r.EntryIndex, r.File, r.CreatedAt = list.String, token.String, uint64(idx.Int64), file.String, fromMS(created)
	return &r, nil
}

// issue completes the receipt id once its entry is sequenced: it finds
// the entry's index (known from rec unless the log is queued), proves it
// against a checkpoint that covers it, signs the statement and stores the
// file. It waits at most receiptWait; if the entry is not covered by then
// it returns the receipt without its file (EUNAVAILABLE is for readers).
func (v *Vault) issue(ctx context.Context, id string, rec audit.Receipt) (*custos.Receipt, error) {
	r, err := scanReceipt(v.read.QueryRowContext(ctx, `SELECT `+receiptColumns+` FROM receipts WHERE id = $1`, id))
	if err != nil {
		return nil, fmt.Errorf("read receipt: %w", err)
	}
	if r.File != "" {
		return r, nil
	}
	if v.signer == nil || v.verifier == nil {
		return r, nil // a vault without the log's key issues no receipts (tools, tests)
	}
	ctx, cancel := context.WithTimeout(ctx, receiptWait)
	defer cancel()
	index, known := rec.Index, !rec.Queued
	for {
		if !known {
			index, known, err = v.findEntry(ctx, r)
			if err != nil {
				return nil, err
			}
		}
		if known {
			if _, err := v.log.SignCheckpoint(ctx); err != nil {
				return nil, fmt.Errorf("sign checkpoint: %w", err)
			}
			p, cp, err := v.proveIn(ctx, index)
			if err == nil {
				// The receipt carries cp: the log keeps its copy past the
				// retention horizon.
				if err := v.log.Keep(ctx, cp.Size, audit.KeptReceipt); err != nil {
					return nil, fmt.Errorf("keep the receipt's checkpoint: %w", err)
				}
				file, err := v.buildReceipt(r.ID, index, p)
				if err != nil {
					return nil, err
				}
				if _, err := v.write.ExecContext(ctx, `UPDATE receipts SET entry_index = $1, file = $2 WHERE id = $3`, int64(index), string(file), r.ID); err != nil {
					return nil, fmt.Errorf("store receipt: %w", err)
				}
				r.EntryIndex, r.File = index, string(file)
				return r, nil
			} else if custos.ErrorCode(err) != custos.EINVALID && custos.ErrorCode(err) != custos.ENOTFOUND {
				return nil, fmt.Errorf("prove deletion entry: %w", err)
			}
		}
		select {
		case <-ctx.Done():
			return r, nil // issued later: RunDueDeletions, or Receipt
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// buildReceipt makes the receipt file from the entry's proof: the
// statement is what the entry says (receipt.FromEntry), signed.
func (v *Vault) buildReceipt(id string, index uint64, p *audit.Proof) ([]byte, error) {
	st, err := receipt.FromEntry(p.Body(), index)
	if err != nil {
		return nil, err
	}
	if st.ID != id {
		return nil, fmt.Errorf("entry %d is not receipt %s's", index, id)
	}
	// The log's key transitions ride along: a tenant holding only the key
	// it was first given verifies a receipt signed after a rotation.
	var transitions [][]byte
	if c := v.log.Keys(); c != nil {
		transitions = c.Notes()
	}
	return receipt.BuildWithKeys(st, v.signer, p, transitions)
}

// findEntry looks for a receipt's entry in its tenant's feed (queued
// mode: the index is the leader's to give). It reports false if the entry
// is not sequenced and covered by a checkpoint yet.
func (v *Vault) findEntry(ctx context.Context, r *custos.Receipt) (uint64, bool, error) {
	if err := v.log.Sync(ctx); err != nil {
		return 0, false, nil
	}
	prefix := "receipt " + r.ID + " "
	var after uint64
	for {
		f, err := v.log.TenantFeed(ctx, r.TenantID, after, audit.MaxFeedPage)
		if err != nil {
			return 0, false, nil
		}
		for _, e := range f.Entries {
			var l audit.Leaf
			if json.Unmarshal(e.Body, &l) == nil && strings.HasPrefix(l.Detail, prefix) && l.Outcome == audit.OutcomeOK {
				return e.Index, true, nil
			}
			after = e.TenantSeq
		}
		if !f.More {
			return 0, false, nil
		}
	}
}

// Receipt returns a stored receipt, also once its tenant is gone: to the
// tenant's admins and to operators.
func (v *Vault) Receipt(ctx context.Context, id string) (*custos.Receipt, error) {
	l := leaf(ctx, custos.ActionReceiptRead, "")
	var r *custos.Receipt
	var err error
	if custos.ValidID(custos.PrefixReceipt, id) {
		r, err = scanReceipt(v.read.QueryRowContext(ctx, `SELECT `+receiptColumns+` FROM receipts WHERE id = $1`, id))
	}
	if r == nil || err != nil {
		// An unknown receipt is refused like another tenant's: to a
		// tenant admin both are forbidden, so neither tells it apart.
		if _, aerr := v.authorize(ctx, custos.ActionReceiptRead, ""); aerr != nil {
			return nil, aerr
		}
		if err != nil && !isNoRows(err) {
			return nil, v.deny(ctx, l, fmt.Errorf("read receipt: %w", err))
		}
		return nil, v.deny(ctx, l, notFound("receipt"))
	}
	l, err = v.authorize(ctx, custos.ActionReceiptRead, r.TenantID)
	if err != nil {
		return nil, err
	}
	if r.File == "" {
		if r, err = v.issue(ctx, id, audit.Receipt{Queued: true}); err != nil {
			return nil, v.deny(ctx, l, err)
		}
		if r.File == "" {
			return nil, v.deny(ctx, l, custos.Errorf(custos.EUNAVAILABLE, "receipt %s is not issued yet: its entry is not sequenced", id))
		}
	}
	l.Detail = "receipt " + r.ID
	if err := v.record(ctx, l, nil); err != nil {
		return nil, err
	}
	return r, nil
}

// Receipts returns a tenant's receipts, newest first, also once it is gone.
func (v *Vault) Receipts(ctx context.Context, tenant string) ([]*custos.Receipt, error) {
	l, err := v.authorize(ctx, custos.ActionReceiptRead, tenant)
	if err != nil {
		return nil, err
	}
	return listAll(ctx, v, l, "receipts", scanReceipt,
		`SELECT `+receiptColumns+` FROM receipts WHERE tenant_id = $1 ORDER BY created_at DESC, id`, tenant)
}

// gone returns EGONE with the receipt of the deletion that removed what a
// request names (the tenant, the list or the contact), or fallback if
// nothing it names was deleted. It runs on the not-found path only.
func (v *Vault) gone(ctx context.Context, tenant, list, token string, fallback error) error {
	var rid string
	if custos.ValidID(custos.PrefixTenant, tenant) {
		var r sql.NullString
		if err := v.read.QueryRowContext(ctx, `SELECT receipt_id FROM tenants WHERE id = $1 AND deleted_at IS NOT NULL`, tenant).Scan(&r); err == nil && r.Valid {
			return custos.Gone("tenant", r.String)
		}
	}
	if custos.ValidID(custos.PrefixList, list) {
		if err := v.read.QueryRowContext(ctx, `SELECT id FROM receipts WHERE list_id = $1 AND tenant_id = $2 AND scope = $3`, list, tenant, custos.DeletionScopeList).Scan(&rid); err == nil {
			return custos.Gone("list", rid)
		}
	}
	if custos.ValidID(custos.PrefixContact, token) {
		if err := v.read.QueryRowContext(ctx, `SELECT id FROM receipts WHERE token = $1 AND tenant_id = $2`, token, tenant).Scan(&rid); err == nil {
			return custos.Gone("contact", rid)
		}
	}
	return fallback
}
