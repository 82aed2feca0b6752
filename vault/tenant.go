package vault

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
)

// CreateTenant creates a tenant, its keysets (wrapped under the KEK) and
// its first admin: a principal for the person at adminEmail — the
// address the tenant registered — whose enrollment goes there at once. The
// operator creating the tenant never holds the admin's secret. The
// creation is the first entry of the tenant's own audit sequence.
func (v *Vault) CreateTenant(ctx context.Context, t *custos.Tenant, adminEmail string) (*custos.Enrollment, error) {
	t.ID = custos.NewID(custos.PrefixTenant)
	l, err := v.authorize(ctx, custos.ActionTenantCreate, t.ID)
	if err != nil {
		return nil, err
	}
	if err := t.Validate(); err != nil {
		return nil, v.deny(ctx, l, err)
	}
	t.CreatedAt = v.now().UTC().Truncate(1e6)
	admin := &custos.Principal{ID: custos.NewID(custos.PrefixPrincipal), Kind: custos.KindTenantAdmin, TenantID: t.ID, Name: "admin", Identity: adminEmail, CreatedAt: t.CreatedAt}
	if err := admin.Validate(); err != nil {
		return nil, v.deny(ctx, l, custos.Prefixed(custos.EINVALID, "admin_email", err))
	}
	sealed, err := v.sealIdentity(ctx, admin)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	by := custos.RequestFromContext(ctx).Principal
	// The first admin is the tenant's own, at the address it registered:
	// the operator is recorded as having created it, but it is nobody's
	// second principal, so the checks that refuse an approver minted by the
	// requester do not count the operator as its creator.
	admin.CreatedBy = by.ID
	if admin.SamePerson(by) {
		return nil, v.deny(ctx, l, custos.Errorf(custos.EFORBIDDEN, "%s: a tenant's first admin is the tenant's registered address, not the operator's", reasonSamePerson))
	}
	_, wrapped, err := v.ring.NewTenantKeys(t.ID)
	if err != nil {
		return nil, v.deny(ctx, l, fmt.Errorf("create tenant keys: %w", err))
	}
	l.Detail = "admin principal " + admin.ID
	var e *custos.Enrollment
	err = v.record(ctx, l, func(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)`, t.ID, t.Name, ms(t.CreatedAt)); err != nil {
			return fmt.Errorf("insert tenant: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO tenant_keys (tenant_id, keyset, created_at, kek) VALUES ($1, $2, $3, $4)`, t.ID, wrapped, ms(t.CreatedAt), v.kekTag); err != nil {
			return fmt.Errorf("insert tenant keys: %w", err)
		}
		if err := insertPrincipal(ctx, tx, admin, sealed); err != nil {
			return err
		}
		// The tenant's own onboarding: its first admin needs nobody's
		// approval because there is no data yet, and its secret goes only
		// to the registered address.
		var err error
		e, err = v.newEnrollment(ctx, tx, leaf, by, admin, custos.ApprovalNone, nil)
		return err
	})
	if err != nil {
		return nil, err
	}
	v.kick()
	return e, nil
}

// Tenant returns one tenant.
func (v *Vault) Tenant(ctx context.Context, id string) (*custos.Tenant, error) {
	l, err := v.authorize(ctx, custos.ActionTenantRead, id)
	if err != nil {
		return nil, err
	}
	t, err := v.findTenant(ctx, id)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	if err := v.record(ctx, l, nil); err != nil {
		return nil, err
	}
	return t, nil
}

// Tenants returns every tenant (operators only).
func (v *Vault) Tenants(ctx context.Context) ([]*custos.Tenant, error) {
	l, err := v.authorize(ctx, custos.ActionTenantList, "")
	if err != nil {
		return nil, err
	}
	return listAll(ctx, v, l, "tenants", func(rows scanner) (*custos.Tenant, error) {
		var t custos.Tenant
		var created int64
		err := rows.Scan(&t.ID, &t.Name, &created)
		t.CreatedAt = fromMS(created)
		return &t, err
	}, `SELECT id, name, created_at FROM tenants ORDER BY created_at, id`)
}

func (v *Vault) findTenant(ctx context.Context, id string) (*custos.Tenant, error) {
	if !custos.ValidID(custos.PrefixTenant, id) {
		return nil, notFound("tenant")
	}
	var t custos.Tenant
	var created int64
	var deleted sql.NullInt64
	var receipt sql.NullString
	err := v.read.QueryRowContext(ctx, `SELECT id, name, created_at, deleted_at, receipt_id FROM tenants WHERE id = $1`, id).Scan(&t.ID, &t.Name, &created, &deleted, &receipt)
	if isNoRows(err) {
		return nil, notFound("tenant")
	} else if err != nil {
		return nil, fmt.Errorf("find tenant: %w", err)
	}
	if deleted.Valid {
		return nil, custos.Gone("tenant", receipt.String)
	}
	t.CreatedAt = fromMS(created)
	return &t, nil
}

// CreateList creates a contact list in a tenant.
func (v *Vault) CreateList(ctx context.Context, ls *custos.List) error {
	ls.ID = custos.NewID(custos.PrefixList)
	l, err := v.authorize(ctx, custos.ActionListCreate, ls.TenantID)
	if err != nil {
		return err
	}
	l.List = ls.ID
	if err := ls.Validate(); err != nil {
		return v.deny(ctx, l, err)
	}
	if _, err := v.findTenant(ctx, ls.TenantID); err != nil {
		return v.deny(ctx, l, err)
	}
	// The list's own keys, wrapped under the tenant's, are stored with
	// it: its contacts are sealed under them (listkeys.go).
	wrapped, digest, err := v.newListKeys(ctx, ls.TenantID, ls.ID)
	if err != nil {
		return v.deny(ctx, l, err)
	}
	// The entry commits to the keyset: the deletion's receipt names the
	// same digest, and `custos log verify --rows` finds a keyset row that
	// went missing or was swapped (verifydata.go).
	l.Detail = "keyset " + digest
	ls.CreatedAt = v.now().UTC().Truncate(1e6)
	return v.record(ctx, l, func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO lists (id, tenant_id, name, created_at) VALUES ($1, $2, $3, $4)`, ls.ID, ls.TenantID, ls.Name, ms(ls.CreatedAt))
		if err != nil {
			return fmt.Errorf("insert list: %w", err)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO list_keys (list_id, tenant_id, keyset, created_at) VALUES ($1, $2, $3, $4)`, ls.ID, ls.TenantID, wrapped, ms(ls.CreatedAt))
		if err != nil {
			return fmt.Errorf("insert list keys: %w", err)
		}
		return nil
	})
}

// List returns one list of a tenant.
func (v *Vault) List(ctx context.Context, tenant, id string) (*custos.List, error) {
	l, ls, err := v.authorizeList(ctx, custos.ActionListRead, tenant, id)
	if err != nil {
		return nil, err
	}
	if err := v.record(ctx, l, nil); err != nil {
		return nil, err
	}
	return ls, nil
}

// Lists returns the lists of a tenant.
func (v *Vault) Lists(ctx context.Context, tenant string) ([]*custos.List, error) {
	l, err := v.authorize(ctx, custos.ActionListRead, tenant)
	if err != nil {
		return nil, err
	}
	if _, err := v.findTenant(ctx, tenant); err != nil {
		return nil, v.deny(ctx, l, err)
	}
	return listAll(ctx, v, l, "lists", func(rows scanner) (*custos.List, error) {
		var ls custos.List
		var created int64
		err := rows.Scan(&ls.ID, &ls.TenantID, &ls.Name, &created)
		ls.CreatedAt = fromMS(created)
		return &ls, err
	}, `SELECT id, tenant_id, name, created_at FROM lists WHERE tenant_id = $1 ORDER BY created_at, id`, tenant)
}

func (v *Vault) findList(ctx context.Context, tenant, id string) (*custos.List, error) {
	if !custos.ValidID(custos.PrefixList, id) || !custos.ValidID(custos.PrefixTenant, tenant) {
		return nil, notFound("list")
	}
	var ls custos.List
	var created int64
	// A deleted tenant's lists stay until they are purged (docs/deletion.md).
	err := v.read.QueryRowContext(ctx, `SELECT id, tenant_id, name, created_at FROM lists WHERE id = $1 AND tenant_id = $2
		AND NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = $2 AND t.deleted_at IS NOT NULL)`, id, tenant).
		Scan(&ls.ID, &ls.TenantID, &ls.Name, &created)
	if isNoRows(err) {
		return nil, v.gone(ctx, tenant, id, "", notFound("list"))
	} else if err != nil {
		return nil, fmt.Errorf("find list: %w", err)
	}
	ls.CreatedAt = fromMS(created)
	return &ls, nil
}

// AccessLog returns a page of the tenant's access feed: every audit entry
// that concerns the tenant after tenant_seq "after", each with its
// inclusion proof against the latest signed checkpoint, for the tenant to
// verify on its side. The read is itself recorded, as a count.
func (v *Vault) AccessLog(ctx context.Context, tenant string, after uint64, limit int) (*audit.Feed, error) {
	return v.accessLog(ctx, tenant, after, limit, false)
}

// AccessLogPage is [Vault.AccessLog] with one proof for the whole page
// (audit.Feed.PageProof) instead of one per entry.
func (v *Vault) AccessLogPage(ctx context.Context, tenant string, after uint64, limit int) (*audit.Feed, error) {
	return v.accessLog(ctx, tenant, after, limit, true)
}

func (v *Vault) accessLog(ctx context.Context, tenant string, after uint64, limit int, page bool) (*audit.Feed, error) {
	l, err := v.authorize(ctx, custos.ActionAccessLogRead, tenant)
	if err != nil {
		return nil, err
	}
	if _, err := v.findTenant(ctx, tenant); err != nil && custos.ErrorCode(err) != custos.EGONE { // a deleted tenant's feed remains
		return nil, v.deny(ctx, l, err)
	}
	feed := v.log.TenantFeed
	if page {
		feed = v.log.TenantFeedPage
	}
	f, err := feed(ctx, tenant, after, limit)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	l.Count = len(f.Entries)
	if err := v.record(ctx, l, nil); err != nil {
		return nil, err
	}
	return f, nil
}
