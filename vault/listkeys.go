package vault

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"fmt"

	"github.com/custos-dev/custos/keys"
)

// List keys (docs/keys.md, "List keys"): a list created since migration
// 0014 seals its contacts — ciphertexts, blind index, row MAC — under its
// own keysets, wrapped under its tenant's and stored in list_keys; a list
// created before has none and keeps its tenant's keys (a legacy list).
// Deleting a list destroys its list_keys row with the list.delete entry,
// so its ciphertexts in backups no longer open with anything left alive.

// listKeys returns the keys the contacts of tenant's list are sealed
// under: its own, or its tenant's for a legacy list. After the first call
// for a list it costs two cache lookups (the tenant's keys, then the
// list's among them) and no query.
func (v *Vault) listKeys(ctx context.Context, tenant, list string) (*keys.DataKeys, error) {
	tk, err := v.tenantKeys(ctx, tenant)
	if err != nil {
		return nil, err
	}
	if dk, ok := tk.CachedList(list); ok {
		return dk, nil
	}
	// The list's row decides: a list without its keys row is legacy only
	// if the list itself exists (a deleted list has neither).
	var wrapped sql.NullString
	err = v.queryRow(ctx, `SELECT k.keyset FROM lists l LEFT JOIN list_keys k ON k.list_id = l.id WHERE l.id = $1 AND l.tenant_id = $2`, list, tenant).Scan(&wrapped)
	if isNoRows(err) {
		return nil, v.gone(ctx, tenant, list, "", notFound("list"))
	} else if err != nil {
		return nil, fmt.Errorf("load list keys: %w", err)
	}
	if !wrapped.Valid {
		return tk.LegacyList(list), nil
	}
	b, err := base64.StdEncoding.DecodeString(wrapped.String)
	if err != nil {
		return nil, fmt.Errorf("load list keys: malformed keyset column")
	}
	dk, err := tk.List(list, b)
	if err != nil && v.mayReload(tenant) {
		// The tenant's keys may have been rotated by another node since
		// this one cached them, and the list's keyset wrapped under the
		// new ones (rotate.go): load them again, once.
		v.forgetTenantKeys(tenant)
		if tk, err2 := v.tenantKeys(ctx, tenant); err2 == nil {
			dk, err = tk.List(list, b)
		}
	}
	return dk, err
}

// newListKeys makes a new list's keysets and returns their stored form
// (base64 of the wrapped pair), to be inserted with the list, and its
// digest (keysetDigest).
func (v *Vault) newListKeys(ctx context.Context, tenant, list string) (string, string, error) {
	tk, err := v.tenantKeys(ctx, tenant)
	if err != nil {
		return "", "", err
	}
	_, wrapped, err := tk.NewListKeys(list)
	if err != nil {
		return "", "", err
	}
	return base64.StdEncoding.EncodeToString(wrapped), keysetDigest(wrapped), nil
}

// keysetDigest names a wrapped keyset without revealing it: "sha256:" and
// the hex SHA-256 of its wrapped form, as receipts state it.
func keysetDigest(wrapped []byte) string {
	sum := sha256.Sum256(wrapped)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// destroyListKeys deletes a list's keys row in tx and returns the digest
// the receipt names ("sha256:" and the hex SHA-256 of the wrapped pair),
// or "" for a legacy list, which has none.
func destroyListKeys(ctx context.Context, tx *sql.Tx, tenant, list string) (string, error) {
	var stored string
	err := tx.QueryRowContext(ctx, `SELECT keyset FROM list_keys WHERE list_id = $1`, list).Scan(&stored)
	if isNoRows(err) {
		return "", nil
	} else if err != nil {
		return "", fmt.Errorf("read list keyset: %w", err)
	}
	wrapped, err := base64.StdEncoding.DecodeString(stored)
	if err != nil {
		return "", fmt.Errorf("read list keyset: malformed keyset column")
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM list_keys WHERE list_id = $1`, list)
	if err != nil {
		return "", fmt.Errorf("delete list keyset: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return "", fmt.Errorf("delete list keyset: %d rows", n)
	}
	return keysetDigest(wrapped), nil
}

// forgetList drops a list's unwrapped keys from this process (after its
// deletion). Other nodes drop theirs in RunDueDeletions; until then they
// find no row of the list to open.
func (v *Vault) forgetList(tenant, list string) {
	if k, ok := v.cachedTenant(tenant); ok {
		k.ForgetList(list)
	}
}
