package vault

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/notify"
)

// Identities and enrollment: "no single person" (DESIGN.md invariant 12).
//
// A principal belongs to an identity, the verified address of the person
// (or owning team) who holds it. Nobody creates a usable key for someone
// else: creating or re-keying a principal makes an [custos.Enrollment],
// whose one-time secret goes by mail to the holder's address and is turned
// into a key by the holder alone ([Vault.Enroll]). An enrollment that would
// give someone a tenant's data or approval power waits for a second party
// first ([Vault.DecideEnrollment]): one of the tenant's admins, a second
// operator or security identity, or — for a tenant that lost every admin —
// a second operator after a waiting period the tenant is told about.

// EnrollmentLifetime is how long an issued enrollment secret works.
const EnrollmentLifetime = 72 * time.Hour

// RecoveryWait is how long a tenant-admin recovery waits before a second
// operator's approval can take effect; the tenant is told at the start.
const RecoveryWait = 72 * time.Hour

// TopicEnroll is the outbox topic of an enrollment mail. The message holds
// ids only; [EnrollmentSink] computes the secret when it sends the mail.
const TopicEnroll = "principal.enroll"

const enrollKeyName = "enrollment"

// principalColumns are the columns scanPrincipal reads, in order.
const principalColumns = `id, kind, tenant_id, name, owner, identity, created_by, creator_identity, suspended, created_at, verified_at, suspended_by, mac, cert_pin, sponsor_identity`

// principalColumnsAs is principalColumns qualified by a table alias.
func principalColumnsAs(alias string) string {
	cols := strings.Split(principalColumns, ", ")
	for i, c := range cols {
		cols[i] = alias + "." + c
	}
	return strings.Join(cols, ", ")
}

// scanPrincipal scans a principal without checking its MAC: for listings
// that show every row as it is (the access review).
func scanPrincipal(row scanner) (*custos.Principal, error) {
	var p *custos.Principal
	var pr principalRow
	if err := scanKeyPrincipal(row, &p, &pr); err != nil {
		return nil, err
	}
	return p, nil
}

// scanVerifiedPrincipal scans a principal and checks its MAC; a principal
// whose MAC fails is errForged (and raises the row-integrity alert).
func (v *Vault) scanVerifiedPrincipal(ctx context.Context, tx *sql.Tx, row interface{ Scan(...any) error }) (*custos.Principal, error) {
	var p *custos.Principal
	var pr principalRow
	if err := scanKeyPrincipal(row, &p, &pr); err != nil {
		return nil, err
	}
	ok, err := v.principalOK(ctx, tx, &pr)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errForged
	}
	return p, nil
}

// principalRow is a principal's MACed values, as scanned, and its MAC.
type principalRow struct {
	vals []any
	mac  sql.NullString
}

// principalOK checks a scanned principal's MAC, raising the alert if it fails.
func (v *Vault) principalOK(ctx context.Context, tx *sql.Tx, pr *principalRow) (bool, error) {
	k, err := v.rowKey(ctx, tx)
	if err != nil {
		return false, err
	}
	if macOK(pr.mac, k.MAC(specOf("principals").message(pr.vals))) {
		return true, nil
	}
	v.rowIntegrity("principals", pr.vals[0].(string))
	return false, nil
}

// scanKeyPrincipal scans dest, then a principal's columns, into *p, and
// what its MAC covers into pr.
func scanKeyPrincipal(row interface{ Scan(...any) error }, pp **custos.Principal, pr *principalRow, dest ...any) error {
	var p custos.Principal
	var kind string
	var tenant, identity, createdBy, creatorIdentity, suspendedBy sql.NullString
	var suspended int
	var created int64
	var verified sql.NullInt64
	var pin, sponsor sql.NullString
	if err := row.Scan(append(dest, &p.ID, &kind, &tenant, &p.Name, &p.Owner, &identity, &createdBy, &creatorIdentity, &suspended, &created, &verified, &suspendedBy, &pr.mac, &pin, &sponsor)...); err != nil {
		return fmt.Errorf("scan principal: %w", err)
	}
	// In rowSpecs' order for principals, the optional columns last.
	pr.vals = []any{p.ID, kind, tenant, p.Owner, identity, createdBy, creatorIdentity, suspended, suspendedBy, created, verified, pin, sponsor}
	p.CertPin, p.SponsorIdentity = pin.String, sponsor.String
	p.Kind, p.TenantID, p.Suspended, p.CreatedAt, p.VerifiedAt = custos.Kind(kind), tenant.String, suspended != 0, fromMS(created), fromNullMS(verified)
	p.Identity, p.CreatedBy, p.CreatorIdentity = identity.String, createdBy.String, creatorIdentity.String
	if p.Identity == "" {
		p.Identity = "legacy::" + p.ID // never equal to another principal's
	}
	*pp = &p
	return nil
}

// findPrincipalTx reads a principal through q (a transaction or a pool).
// One whose MAC fails is not found, like one that does not exist.
func (v *Vault) findPrincipalTx(ctx context.Context, q querier, id string) (*custos.Principal, error) {
	if !custos.ValidID(custos.PrefixPrincipal, id) {
		return nil, notFound("principal")
	}
	p, err := v.scanVerifiedPrincipal(ctx, txOf(q), q.QueryRowContext(ctx, `SELECT `+principalColumns+` FROM principals WHERE id = $1`, id))
	if err != nil && (isNoRows(err) || errors.Is(err, errForged)) {
		return nil, notFound("principal")
	}
	return p, err
}

// CreatePrincipal creates a principal for the person at p.Identity and
// its first enrollment. The response never holds a usable secret: the
// holder receives it at that address, once any approval the enrollment
// needs is given. Operators create staff principals and, pending a tenant
// admin's approval, tenant principals; tenant admins create their own
// tenant's principals.
func (v *Vault) CreatePrincipal(ctx context.Context, p *custos.Principal) (*custos.Enrollment, error) {
	p.ID = custos.NewID(custos.PrefixPrincipal)
	l, err := v.authorize(ctx, custos.ActionPrincipalCreate, p.TenantID)
	if err != nil {
		return nil, err
	}
	l.Detail = "principal " + p.ID
	if err := p.Validate(); err != nil {
		return nil, v.deny(ctx, l, err)
	}
	sealed, err := v.sealIdentity(ctx, p)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	l.Detail += " kind " + string(p.Kind)
	if p.TenantID != "" {
		if _, err := v.findTenant(ctx, p.TenantID); err != nil {
			return nil, v.deny(ctx, l, err)
		}
	}
	creator := custos.RequestFromContext(ctx).Principal
	p.CreatedAt = v.now().UTC().Truncate(time.Millisecond)
	p.Suspended, p.VerifiedAt = false, nil
	p.CreatedBy, p.CreatorIdentity = creator.ID, creator.Identity
	var e *custos.Enrollment
	err = v.record(ctx, l, func(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf) error {
		approval, notBefore, err := v.approvalFor(ctx, tx, creator, p)
		if err != nil {
			return err
		}
		if approval != custos.ApprovalNone {
			// A second party decides it (or it is the founding second
			// person, at bootstrap): it is not its creator's alone, so its
			// creator does not count against it as an approver later.
			p.CreatorIdentity = ""
		}
		if err := insertPrincipal(ctx, tx, p, sealed); err != nil {
			return err
		}
		e, err = v.newEnrollment(ctx, tx, leaf, creator, p, approval, notBefore)
		return err
	})
	if err != nil {
		return nil, err
	}
	v.kick()
	return e, nil
}

// insertPrincipal inserts p, whose Identity is already its pseudonym, with
// its sealed address ([Vault.sealIdentity]).
func insertPrincipal(ctx context.Context, tx *sql.Tx, p *custos.Principal, sealedIdentity string) error {
	var verified sql.NullInt64
	if p.VerifiedAt != nil {
		verified = sql.NullInt64{Int64: ms(*p.VerifiedAt), Valid: true}
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO principals (id, kind, tenant_id, name, owner, identity, created_by, creator_identity, suspended, created_at, verified_at, identity_sealed)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $10, $11)`,
		p.ID, string(p.Kind), nullString(p.TenantID), p.Name, p.Owner, p.Identity, nullString(p.CreatedBy), nullString(p.CreatorIdentity), ms(p.CreatedAt), verified, sealedIdentity)
	if err != nil {
		return fmt.Errorf("insert principal: %w", err)
	}
	return nil
}

// approvalFor decides who must approve an enrollment of p requested by
// by. The rules are the matrix in docs/design.md.
func (v *Vault) approvalFor(ctx context.Context, tx *sql.Tx, by, p *custos.Principal) (string, *time.Time, error) {
	switch {
	case p.Kind.TenantBound() && by.Kind == custos.KindTenantAdmin:
		return custos.ApprovalNone, nil, nil // the tenant's own admin is the second party
	case p.Kind.TenantBound():
		var admins int
		err := tx.QueryRowContext(ctx, `SELECT count(*) FROM principals WHERE tenant_id = $1 AND kind = $2 AND suspended = 0 AND verified_at IS NOT NULL AND id <> $3`,
			p.TenantID, string(custos.KindTenantAdmin), p.ID).Scan(&admins)
		if err != nil {
			return "", nil, fmt.Errorf("count tenant admins: %w", err)
		}
		if admins > 0 {
			return custos.ApprovalTenantAdmin, nil, nil
		}
		if p.Kind != custos.KindTenantAdmin {
			return "", nil, custos.Errorf(custos.ECONFLICT, "the tenant has no admin to approve this: recover its admin first")
		}
		t := v.now().Add(RecoveryWait).UTC().Truncate(time.Millisecond)
		return custos.ApprovalRecovery, &t, nil
	case p.Kind == custos.KindOperator || p.Kind == custos.KindStaffSecurity:
		// Approval power needs a second operator or security identity. Only
		// while none exists — right after init — may the first one add one
		// alone; that enrollment is announced as such and flagged in review.
		// "Exists" counts every state: one not yet enrolled, or suspended,
		// still ends the exception, or an operator could mint any number of
		// unapproved second persons before the first enrolls (or again once
		// the only one is suspended). p itself is left out, so re-keying the
		// founding second person stays possible.
		var others int
		err := tx.QueryRowContext(ctx, `SELECT count(*) FROM principals WHERE kind IN ($1, $2) AND identity <> $3 AND id <> $4`,
			string(custos.KindOperator), string(custos.KindStaffSecurity), by.Identity, p.ID).Scan(&others)
		if err != nil {
			return "", nil, fmt.Errorf("count privileged identities: %w", err)
		}
		if others == 0 {
			return ApprovalBootstrap, nil, nil
		}
		return custos.ApprovalPrivileged, nil, nil
	}
	return custos.ApprovalNone, nil, nil // staff_support: no power without a tenant's grant
}

// ApprovalBootstrap marks the one privileged enrollment made without a
// second party, when none existed yet. It is issued at once, announced at
// high severity, and shows in the access review.
const ApprovalBootstrap = "bootstrap"

// newEnrollment records an enrollment of p requested by by; one that needs
// no approval is issued at once. Inside the caller's transaction.
func (v *Vault) newEnrollment(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf, by, p *custos.Principal, approval string, notBefore *time.Time) (*custos.Enrollment, error) {
	now := v.now().UTC().Truncate(time.Millisecond)
	e := &custos.Enrollment{ID: custos.NewID(custos.PrefixEnrollment), PrincipalID: p.ID, TenantID: p.TenantID, RequestedBy: by.ID,
		Approval: approval, Status: custos.EnrollPending, NotBefore: notBefore, CreatedAt: now}
	if approval == custos.ApprovalNone || approval == ApprovalBootstrap {
		e.Status = custos.EnrollIssued
		exp := now.Add(EnrollmentLifetime)
		e.ExpiresAt = &exp
	}
	var nb, issued, expires sql.NullInt64
	if notBefore != nil {
		nb = sql.NullInt64{Int64: ms(*notBefore), Valid: true}
	}
	if e.ExpiresAt != nil {
		issued, expires = sql.NullInt64{Int64: ms(now), Valid: true}, sql.NullInt64{Int64: ms(*e.ExpiresAt), Valid: true}
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO enrollments (id, principal_id, tenant_id, requested_by, requester_identity, approval, status, not_before, created_at, issued_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		e.ID, p.ID, nullString(p.TenantID), by.ID, by.Identity, approval, e.Status, nb, ms(now), issued, expires)
	if err != nil {
		return nil, fmt.Errorf("insert enrollment: %w", err)
	}
	// The principal is new (inserted just before) or was read and checked
	// by the caller (a re-key): both rows get their MAC here.
	if err := v.reseal(ctx, tx, "enrollments", e.ID); err != nil {
		return nil, err
	}
	if err := v.reseal(ctx, tx, "principals", p.ID); err != nil {
		return nil, err
	}
	leaf.Detail += " enrollment " + e.ID + " approval " + approval
	// Who is told: security always; the tenant whenever the principal is
	// its own; the holder, by the enrollment mail, once it is issued.
	msg := &notify.Message{Topic: "principal.enrollment", Severity: notify.SeverityInfo, TenantID: p.TenantID, To: []string{notify.ToStaffSecurity},
		Text: fmt.Sprintf("%s %s requested an enrollment of %s %s (%s)", by.Kind, by.ID, p.Kind, p.ID, approvalText(approval, notBefore)),
		Data: map[string]string{"enrollment": e.ID, "principal": p.ID, "requested_by": by.ID, "approval": approval}}
	if p.TenantID != "" {
		msg.To = append(msg.To, notify.ToTenantAdmins)
	}
	if approval != custos.ApprovalNone {
		msg.Severity = notify.SeverityHigh
	}
	if err := v.enqueue(ctx, tx, msg); err != nil {
		return nil, err
	}
	if e.Status == custos.EnrollIssued {
		if err := v.enqueueMail(ctx, tx, e); err != nil {
			return nil, err
		}
	}
	return e, nil
}

func approvalText(approval string, notBefore *time.Time) string {
	switch approval {
	case custos.ApprovalTenantAdmin:
		return "waiting for one of the tenant's admins to approve"
	case custos.ApprovalPrivileged:
		return "waiting for a second operator or security identity to approve"
	case custos.ApprovalRecovery:
		return "tenant admin recovery: a second operator may approve after " + notBefore.Format(time.RFC3339)
	case ApprovalBootstrap:
		return "no second operator or security identity exists yet: issued without one"
	}
	return "issued to the holder's address"
}

func (v *Vault) enqueueMail(ctx context.Context, tx *sql.Tx, e *custos.Enrollment) error {
	return v.enqueue(ctx, tx, &notify.Message{Topic: TopicEnroll, TenantID: e.TenantID, To: []string{notify.ToPrincipal(e.PrincipalID)},
		Text: "enrollment " + e.ID + " sent to the holder of " + e.PrincipalID,
		Data: map[string]string{"enrollment": e.ID, "principal": e.PrincipalID}})
}

const enrollmentColumns = `id, principal_id, tenant_id, requested_by, approval, status, not_before, decided_by, created_at, expires_at`

func scanEnrollment(row scanner, now time.Time) (*custos.Enrollment, error) {
	var e custos.Enrollment
	var tenant, decided sql.NullString
	var nb, expires sql.NullInt64
	var created int64
	if err := row.Scan(&e.ID, &e.PrincipalID, &tenant, &e.RequestedBy, &e.Approval, &e.Status, &nb, &decided, &created, &expires); err != nil {
		return nil, err
	}
	e.TenantID, e.DecidedBy, e.NotBefore, e.CreatedAt, e.ExpiresAt = tenant.String, decided.String, fromNullMS(nb), fromMS(created), fromNullMS(expires)
	if e.Status == custos.EnrollIssued && e.ExpiresAt != nil && !now.Before(*e.ExpiresAt) {
		e.Status = custos.EnrollExpired
	}
	return &e, nil
}

// Rekey starts a new enrollment for an existing principal — its holder lost
// its key, or it is time to rotate. The same approvals as at creation
// apply, and the secret goes only to the holder's address.
func (v *Vault) Rekey(ctx context.Context, principalID string) (*custos.Enrollment, error) {
	by := custos.RequestFromContext(ctx).Principal
	l, p, err := v.authorizePrincipal(ctx, custos.ActionPrincipalRekey, ownTenant(by), principalID)
	if err != nil {
		return nil, err
	}
	if err := custos.Authorize(custos.RequestFromContext(ctx), custos.ActionPrincipalRekey, p.TenantID); err != nil {
		return nil, v.deny(ctx, l, err)
	}
	l.Tenant = p.TenantID
	var e *custos.Enrollment
	err = v.record(ctx, l, func(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf) error {
		approval, notBefore, err := v.approvalFor(ctx, tx, by, p)
		if err != nil {
			return err
		}
		e, err = v.newEnrollment(ctx, tx, leaf, by, p, approval, notBefore)
		return err
	})
	if err != nil {
		return nil, err
	}
	v.kick()
	return e, nil
}

// ownTenant is the tenant a tenant-bound caller acts on ("" for staff and
// operators): the tenant its authorization is checked against.
func ownTenant(by *custos.Principal) string {
	if by != nil && by.Kind.TenantBound() {
		return by.TenantID
	}
	return ""
}

// Enrollments lists enrollments the caller may see and decide: a tenant
// admin its tenant's, operators and security staff every one. status
// filters ("" for all).
func (v *Vault) Enrollments(ctx context.Context, status string) ([]*custos.Enrollment, error) {
	by := custos.RequestFromContext(ctx).Principal
	tenant := ownTenant(by)
	l, err := v.authorize(ctx, custos.ActionEnrollmentRead, tenant)
	if err != nil {
		return nil, err
	}
	switch status {
	case "", custos.EnrollPending, custos.EnrollIssued, custos.EnrollUsed, custos.EnrollDenied:
	default:
		return nil, v.deny(ctx, l, custos.Errorf(custos.EINVALID, "status must be pending, issued, used or denied"))
	}
	q, args := `SELECT `+enrollmentColumns+` FROM enrollments WHERE 1 = 1`, []any{}
	if tenant != "" {
		args = append(args, tenant)
		q += fmt.Sprintf(` AND tenant_id = $%d`, len(args))
	}
	if status != "" {
		args = append(args, status)
		q += fmt.Sprintf(` AND status = $%d`, len(args))
	}
	now := v.now()
	es, err := listAll(ctx, v, l, "enrollments", func(rows scanner) (*custos.Enrollment, error) {
		return scanEnrollment(rows, now)
	}, q+` ORDER BY created_at DESC, id LIMIT 1000`, args...)
	if err != nil {
		return nil, err
	}
	// Whoever decides a pending enrollment is told what it would enable:
	// the principal's kind and handle, from its row only if its MAC
	// checks (a forged row names nothing, and raises its alert).
	for _, e := range es {
		if e.Status != custos.EnrollPending {
			continue
		}
		p, err := v.findPrincipalTx(ctx, v.read, e.PrincipalID)
		if custos.ErrorCode(err) == custos.ENOTFOUND {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("list enrollments: %w", err)
		}
		e.PrincipalKind, e.PrincipalName = p.Kind, p.Name
	}
	return es, nil
}

// Refusal reasons of the two-person checks. The detector's rules match
// their beginnings (detect/rules), so they are part of the contract.
const (
	reasonSamePerson = "the same person cannot be both parties"
	reasonCreatedBy  = "approver was created by the person it would approve for"
)

// secondParty checks that approver is a second party to an action that
// benefits the principals in parties: a different identity from each, and
// not created by any of them (a principal one minted for oneself is no
// second person). An approver they sponsored passes, marked: see
// [noteSponsored].
func secondParty(approver *custos.Principal, parties ...*custos.Principal) error {
	for _, p := range parties {
		if p == nil {
			continue
		}
		if approver.SamePerson(p) {
			return custos.Errorf(custos.EFORBIDDEN, "%s", reasonSamePerson)
		}
		if approver.CreatedByHolderOf(p) {
			return custos.Errorf(custos.EFORBIDDEN, "%s", reasonCreatedBy)
		}
	}
	return nil
}

// sponsoredNote is added to the detail of an approval whose approver was
// sponsored by a principal it benefits (rule approval-by-sponsored).
const sponsoredNote = "; the approver was sponsored by the beneficiary"

// noteSponsored marks leaf when approver's key was issued on the approval
// of the person holding one of parties (custos.Principal.SponsorIdentity),
// or one of them on approver's. That is how one person with two mailboxes
// gets a second identity past the two-party rules — approve it into
// existence, then let it approve for you — but also how an honest team
// grows (the first admin approves the second), and a tenant whose admins
// all descend from its first could then never approve anything for it.
// So it is not refused: the approval goes through, and the detector
// alerts the tenant's admins and security on the marked entry.
func noteSponsored(leaf *audit.Leaf, approver *custos.Principal, parties ...*custos.Principal) {
	if leaf == nil {
		return
	}
	for _, p := range parties {
		if p != nil && (approver.SponsoredByHolderOf(p) || p.SponsoredByHolderOf(approver)) {
			if !strings.Contains(leaf.Detail, sponsoredNote) {
				leaf.Detail += sponsoredNote
			}
			return
		}
	}
}

// DecideEnrollment approves or denies a pending enrollment. The decider
// must be the second party its approval names — a tenant admin of its
// tenant, a second operator or security identity, or for recovery a second
// operator after the waiting period — and a different person from both
// the requester and the principal's holder.
func (v *Vault) DecideEnrollment(ctx context.Context, id string, approve bool) (*custos.Enrollment, error) {
	l := leaf(ctx, custos.ActionPrincipalDecide, "")
	if !custos.ValidID(custos.PrefixEnrollment, id) {
		if _, err := v.authorize(ctx, custos.ActionPrincipalDecide, ""); err != nil {
			return nil, err
		}
		return nil, v.deny(ctx, l, notFound("enrollment"))
	}
	e, err := v.findEnrollment(ctx, id)
	if isNoRows(err) {
		return nil, v.deny(ctx, l, notFound("enrollment"))
	} else if err != nil {
		return nil, v.deny(ctx, l, fmt.Errorf("find enrollment: %w", err))
	}
	if l, err = v.authorize(ctx, custos.ActionPrincipalDecide, e.TenantID); err != nil {
		return nil, err
	}
	l.Detail = "enrollment " + e.ID + " of principal " + e.PrincipalID
	if !approve {
		l.Detail = "deny " + l.Detail
	}
	decider := custos.RequestFromContext(ctx).Principal
	now := v.now().UTC().Truncate(time.Millisecond)
	err = v.record(ctx, l, func(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf) error {
		p, err := v.findPrincipalTx(ctx, tx, e.PrincipalID)
		if err != nil {
			return err
		}
		requester, err := v.findPrincipalTx(ctx, tx, e.RequestedBy)
		if err != nil {
			return err
		}
		if e.Status != custos.EnrollPending {
			return custos.Errorf(custos.ECONFLICT, "enrollment is %s, not pending", e.Status)
		}
		if decider.VerifiedAt == nil {
			return custos.Errorf(custos.EFORBIDDEN, "the decider's identity is not verified")
		}
		switch e.Approval {
		case custos.ApprovalTenantAdmin:
			if decider.Kind != custos.KindTenantAdmin {
				return custos.Errorf(custos.EFORBIDDEN, "one of the tenant's admins decides this enrollment")
			}
		case custos.ApprovalPrivileged:
			if decider.Kind != custos.KindOperator && decider.Kind != custos.KindStaffSecurity {
				return custos.Errorf(custos.EFORBIDDEN, "a second operator or security identity decides this enrollment")
			}
		case custos.ApprovalRecovery:
			if decider.Kind != custos.KindOperator {
				return custos.Errorf(custos.EFORBIDDEN, "a second operator decides a tenant admin recovery")
			}
			if approve && e.NotBefore != nil && now.Before(*e.NotBefore) {
				return custos.Errorf(custos.EFORBIDDEN, "the recovery's waiting period ends at %s", e.NotBefore.Format(time.RFC3339))
			}
		default:
			return custos.Errorf(custos.ECONFLICT, "enrollment needs no decision")
		}
		if approve {
			if err := secondParty(decider, requester, p); err != nil {
				return err
			}
			noteSponsored(leaf, decider, requester, p)
		}
		status := custos.EnrollDenied
		var issued, expires sql.NullInt64
		if approve {
			status = custos.EnrollIssued
			exp := now.Add(EnrollmentLifetime)
			e.ExpiresAt = &exp
			issued, expires = sql.NullInt64{Int64: ms(now), Valid: true}, sql.NullInt64{Int64: ms(exp), Valid: true}
		}
		res, err := tx.ExecContext(ctx, `UPDATE enrollments SET status = $1, decided_by = $2, decided_at = $3, issued_at = $4, expires_at = $5 WHERE id = $6 AND status = $7`,
			status, decider.ID, ms(now), issued, expires, e.ID, custos.EnrollPending)
		if err != nil {
			return fmt.Errorf("decide enrollment: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return custos.Errorf(custos.ECONFLICT, "enrollment was decided meanwhile")
		}
		if err := v.reseal(ctx, tx, "enrollments", e.ID); err != nil {
			return err
		}
		if approve && p.SponsorIdentity == "" && !strings.Contains(decider.Identity, "@") {
			// (Identities are person pseudonyms once SealIdentities ran at
			// start; an address is never copied here.)
			// The first approval that issues it a key sponsors it, for good.
			if _, err := tx.ExecContext(ctx, `UPDATE principals SET sponsor_identity = $1 WHERE id = $2 AND sponsor_identity IS NULL`, decider.Identity, p.ID); err != nil {
				return fmt.Errorf("decide enrollment: sponsor: %w", err)
			}
			if err := v.reseal(ctx, tx, "principals", p.ID); err != nil {
				return err
			}
		}
		e.Status, e.DecidedBy = status, decider.ID
		to := []string{notify.ToStaffSecurity, notify.ToPrincipal(e.RequestedBy)}
		if e.TenantID != "" {
			to = append(to, notify.ToTenantAdmins)
		}
		if err := v.enqueue(ctx, tx, &notify.Message{Topic: "principal.enrollment." + status, TenantID: e.TenantID, To: to, Severity: notify.SeverityHigh,
			Text: fmt.Sprintf("enrollment %s of %s %s: %s by %s", e.ID, p.Kind, p.ID, status, decider.ID),
			Data: map[string]string{"enrollment": e.ID, "principal": p.ID, "decided_by": decider.ID}}); err != nil {
			return err
		}
		if approve {
			return v.enqueueMail(ctx, tx, e)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	v.kick()
	return e, nil
}

// findEnrollment reads one enrollment; one whose MAC fails is reported
// as sql.ErrNoRows, like one that does not exist.
func (v *Vault) findEnrollment(ctx context.Context, id string) (*custos.Enrollment, error) {
	e, err := scanEnrollment(v.read.QueryRowContext(ctx, `SELECT `+enrollmentColumns+` FROM enrollments WHERE id = $1`, id), v.now())
	if err != nil {
		return nil, err
	}
	if err := v.checkRow(ctx, v.read, "enrollments", e.ID); errors.Is(err, errForged) {
		return nil, sql.ErrNoRows
	} else if err != nil {
		return nil, err
	}
	return e, nil
}

// Enroll turns an enrollment secret into a key for its principal: the
// only way a principal gets its first key. It needs no API key — the
// secret, which only the holder's mailbox received, is the credential —
// and it is recorded with the principal as actor, announced to security
// and, for a tenant's principal, to the tenant.
func (v *Vault) Enroll(ctx context.Context, secret string, req custos.KeyRequest) (string, *custos.APIKey, error) {
	l := leaf(ctx, custos.ActionEnroll, "")
	id, tag, err := custos.ParseEnrollmentSecret(secret)
	if err != nil {
		return "", nil, v.deny(ctx, l, err)
	}
	unknown := custos.Errorf(custos.EUNAUTHORIZED, "unknown, used or expired enrollment secret")
	e, err := v.findEnrollment(ctx, id)
	if isNoRows(err) {
		return "", nil, v.deny(ctx, l, unknown)
	} else if err != nil {
		return "", nil, v.deny(ctx, l, fmt.Errorf("find enrollment: %w", err))
	}
	want, err := v.enrollmentSecret(ctx, e.ID)
	if err != nil {
		return "", nil, v.deny(ctx, l, err)
	}
	_, wantTag, _ := custos.ParseEnrollmentSecret(want)
	if subtle.ConstantTimeCompare([]byte(tag), []byte(wantTag)) != 1 || e.Status != custos.EnrollIssued {
		return "", nil, v.deny(ctx, l, unknown)
	}
	p, err := v.findPrincipal(ctx, e.PrincipalID)
	if err != nil {
		return "", nil, v.deny(ctx, l, err)
	}
	l.Actor, l.ActorKind, l.ActorTenant, l.Tenant = p.ID, string(p.Kind), p.TenantID, p.TenantID
	if l.Person, err = v.person(ctx, p.Identity); err != nil {
		return "", nil, v.deny(ctx, l, err)
	}
	if p.Suspended {
		return "", nil, v.deny(ctx, l, custos.Errorf(custos.EUNAUTHORIZED, "principal is suspended"))
	}
	key, k, err := v.newKey(p, req)
	if err != nil {
		return "", nil, v.deny(ctx, l, err)
	}
	l.KeyID, l.Detail = k.ID, "enrollment "+e.ID
	if len(k.Networks) > 0 {
		l.Detail += " networks " + custos.FormatNetworks(k.Networks)
	}
	if p.Kind == custos.KindService && !custos.NetworksWithin(k.Networks, v.serviceNetworks) {
		// The holder chose ranges beyond the pipeline's: allowed (a new
		// pipeline site), but it stands out (rule key-networks-widened).
		l.Severity = "high"
		l.Detail += " beyond the pipeline networks"
	}
	now := v.now().UTC().Truncate(time.Millisecond)
	to := []string{notify.ToStaffSecurity}
	if p.TenantID != "" {
		to = append(to, notify.ToTenantAdmins)
	}
	err = v.announce(ctx, l, &notify.Message{Topic: "principal.enrolled", TenantID: p.TenantID, To: to,
		Text: fmt.Sprintf("%s %s set up key %s (enrollment %s)", p.Kind, p.ID, k.ID, e.ID),
		Data: map[string]string{"principal": p.ID, "key": k.ID, "enrollment": e.ID}}, func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
		res, err := tx.ExecContext(ctx, `UPDATE enrollments SET status = $1, used_at = $2, key_id = $3 WHERE id = $4 AND status = $5 AND expires_at > $2`,
			custos.EnrollUsed, ms(now), k.ID, e.ID, custos.EnrollIssued)
		if err != nil {
			return fmt.Errorf("use enrollment: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return unknown
		}
		if _, err := tx.ExecContext(ctx, `UPDATE principals SET verified_at = $1 WHERE id = $2 AND verified_at IS NULL`, ms(now), p.ID); err != nil {
			return fmt.Errorf("verify principal: %w", err)
		}
		if err := v.reseal(ctx, tx, "enrollments", e.ID); err != nil {
			return err
		}
		if err := v.reseal(ctx, tx, "principals", p.ID); err != nil {
			return err
		}
		return v.insertKey(ctx, tx, k, key)
	})
	if err != nil {
		return "", nil, err
	}
	return key, k, nil
}

// enrollmentSecret computes the secret of enrollment id.
func (v *Vault) enrollmentSecret(ctx context.Context, id string) (string, error) {
	v.canaryMu.Lock()
	k := v.enrollKey
	v.canaryMu.Unlock()
	if k == nil {
		var err error
		if k, err = v.systemPRF(ctx, enrollKeyName); err != nil {
			return "", err
		}
		v.canaryMu.Lock()
		v.enrollKey = k
		v.canaryMu.Unlock()
	}
	return custos.EnrollmentSecret(id, k.Tag("enroll/"+id)), nil
}

// EnrollmentMail is one enrollment mail: where it goes and what it says.
// It exists only on its way to the holder's mailbox.
type EnrollmentMail struct {
	To, Subject, Body string
	principal         string
}

// EnrollmentMail composes the mail of an issued enrollment, secret
// included. Only the enrollment sink calls it, when it sends the mail.
func (v *Vault) EnrollmentMail(ctx context.Context, id string) (*EnrollmentMail, error) {
	if !custos.ValidID(custos.PrefixEnrollment, id) {
		return nil, notFound("enrollment")
	}
	e, err := v.findEnrollment(ctx, id)
	if isNoRows(err) {
		return nil, notFound("enrollment")
	} else if err != nil {
		return nil, fmt.Errorf("find enrollment: %w", err)
	}
	if e.Status != custos.EnrollIssued {
		return nil, nil // used, denied or expired meanwhile: nothing to send
	}
	p, err := v.findPrincipal(ctx, e.PrincipalID)
	if err != nil {
		return nil, err
	}
	secret, err := v.enrollmentSecret(ctx, e.ID)
	if err != nil {
		return nil, err
	}
	to, err := v.identityAddress(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("enrollment %s: %w", e.ID, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "You have been enrolled in custos as %s %q (%s)", p.Kind, p.Name, p.ID)
	if p.TenantID != "" {
		fmt.Fprintf(&b, " of tenant %s", p.TenantID)
	}
	fmt.Fprintf(&b, ".\r\n\r\nSet up your own API key before %s with:\r\n\r\n    custos enroll %s\r\n\r\n", e.ExpiresAt.Format(time.RFC3339), secret)
	b.WriteString("The secret works once. Nobody else has received it; if you did not expect this mail, tell your security team.\r\n")
	return &EnrollmentMail{To: to, Subject: "[custos] your enrollment " + e.ID, Body: b.String(), principal: p.ID}, nil
}

// Mailer sends one mail to one address.
type Mailer interface {
	Send(ctx context.Context, to, subject, body string) error
}

// EnrollmentSink delivers enrollment mails from the outbox: it takes only
// [TopicEnroll] messages, computes their secret and mails it to the
// holder's address. Other sinks see those messages without a secret.
type EnrollmentSink struct {
	Vault  *Vault
	Mailer Mailer
}

var _ notify.Sink = (*EnrollmentSink)(nil)

// Name implements notify.Sink.
func (*EnrollmentSink) Name() string { return "enrollment" }

// Accepts implements notify.Accepter.
func (*EnrollmentSink) Accepts(m *notify.Message) bool { return m.Topic == TopicEnroll }

// Deliver implements notify.Sink.
func (s *EnrollmentSink) Deliver(ctx context.Context, m *notify.Message) error {
	mail, err := s.Vault.EnrollmentMail(ctx, m.Data["enrollment"])
	if err != nil || mail == nil {
		return err
	}
	if err := s.Mailer.Send(ctx, mail.To, mail.Subject, mail.Body); err != nil {
		// A mail server's refusal quotes the recipient ("550 <alice@…>
		// unknown"), and the outbox keeps and logs delivery errors: say
		// which enrollment failed, never the address or the server's words.
		return fmt.Errorf("enrollment mail %s to the holder of %s was not accepted (%s)", m.Data["enrollment"], mail.principal, mailErrorKind(err))
	}
	return nil
}

// mailErrorKind names a mail delivery failure without its text.
func mailErrorKind(err error) string {
	var se interface{ Temporary() bool }
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	case errors.As(err, &se) && se.Temporary():
		return "temporary failure"
	}
	return "refused or unreachable"
}

// CreateKey creates an extra API key for the calling principal itself —
// to rotate, or to give one job narrower scopes. Nobody creates a key for
// another principal: that is what enrollment is for. A key may not carry a
// scope the presenting key lacks.
func (v *Vault) CreateKey(ctx context.Context, principalID string, req custos.KeyRequest) (string, *custos.APIKey, error) {
	own := "" // a tenant-bound principal's key belongs to its own tenant
	if p := custos.PrincipalFromContext(ctx); p != nil {
		own = p.TenantID
	}
	l, err := v.authorize(ctx, custos.ActionKeyCreate, own)
	if err != nil {
		return "", nil, err
	}
	r := custos.RequestFromContext(ctx)
	if principalID != r.Principal.ID {
		return "", nil, v.deny(ctx, l, custos.Errorf(custos.EFORBIDDEN, "a key is created only by its own principal; others get one by enrollment (POST /v1/principals/{id}/enrollments)"))
	}
	l.Tenant = r.Principal.TenantID
	if r.Key != nil && len(r.Key.Networks) > 0 && len(req.Networks) == 0 {
		req.Networks = r.Key.Networks // a bound key mints bound keys
	}
	secret, k, err := v.newKey(r.Principal, req)
	if err != nil {
		return "", nil, v.deny(ctx, l, err)
	}
	if r.Key != nil {
		for _, s := range k.Scopes {
			if !r.Key.Has(s) {
				return "", nil, v.deny(ctx, l, custos.Errorf(custos.EFORBIDDEN, "a new key may not carry a scope the presenting key lacks"))
			}
		}
		if !custos.NetworksWithin(k.Networks, r.Key.Networks) {
			return "", nil, v.deny(ctx, l, custos.Errorf(custos.EFORBIDDEN, "a new key may not reach beyond the networks of the presenting key"))
		}
	}
	l.Detail = "key " + k.ID + " for principal " + r.Principal.ID
	if len(k.Networks) > 0 {
		l.Detail += " networks " + custos.FormatNetworks(k.Networks)
	}
	err = v.announce(ctx, l, &notify.Message{Topic: "key.created", TenantID: r.Principal.TenantID, To: []string{notify.ToStaffSecurity},
		Text: fmt.Sprintf("%s %s created key %s for itself", r.Principal.Kind, r.Principal.ID, k.ID)}, func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
		return v.insertKey(ctx, tx, k, secret)
	})
	if err != nil {
		return "", nil, err
	}
	return secret, k, nil
}

// RecordConfig appends the hash of the effective configuration a server
// started with, and tells security: a change to sinks, rules or any other
// setting shows as a new hash in the log.
func (v *Vault) RecordConfig(ctx context.Context, hash string) error {
	l := leaf(ctx, custos.ActionConfigLoaded, "")
	l.Actor, l.Detail = "system", "config sha256:"+hash
	return v.announce(ctx, l, &notify.Message{Topic: "config.loaded", To: []string{notify.ToStaffSecurity},
		Text: "a server started with configuration sha256:" + hash}, func(context.Context, *sql.Tx, *audit.Leaf) error { return nil })
}

// RecordConfigReload records a configuration reloaded without a restart
// (SIGHUP): its hash, as a start does ([Vault.RecordConfig]), announced
// to security.
func (v *Vault) RecordConfigReload(ctx context.Context, hash string) error {
	l := leaf(ctx, custos.ActionConfigLoaded, "")
	l.Actor, l.Detail = "system", "config sha256:"+hash+" (reloaded)"
	return v.announce(ctx, l, &notify.Message{Topic: "config.loaded", To: []string{notify.ToStaffSecurity},
		Text: "a server reloaded its configuration: now sha256:" + hash}, func(context.Context, *sql.Tx, *audit.Leaf) error { return nil })
}

const personKeyName = "person"

// person returns the pseudonym of identity: "pe_" + 26 characters of a
// keyed PRF (a system key wrapped by the KEK), so the log can say "the same
// person" without an address, and nobody without the KEK can test a guess.
// Pseudonyms are cached: Authenticate asks for one on every request.
func (v *Vault) person(ctx context.Context, identity string) (string, error) {
	if isPseudonym(identity) { // stored sealed: the column holds the pseudonym (identityseal.go)
		return identity, nil
	}
	if p, ok := v.persons.Load(identity); ok {
		return p.(string), nil
	}
	v.canaryMu.Lock()
	k := v.personKey
	v.canaryMu.Unlock()
	if k == nil {
		var err error
		if k, err = v.systemPRF(ctx, personKeyName); err != nil {
			return "", err
		}
		v.canaryMu.Lock()
		v.personKey = k
		v.canaryMu.Unlock()
	}
	p := custos.PrefixPerson + "_" + personEncoding.EncodeToString(k.Tag("person/" + identity)[:16])
	v.persons.Store(identity, p)
	return p, nil
}

var personEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)
