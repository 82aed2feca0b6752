package vault

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/notify"
)

// Keys bound to networks (issue 20). A key may carry the CIDR ranges it
// may be used from; [Vault.Authenticate] refuses it from anywhere else
// exactly as it refuses a key that does not exist. Who may change them:
//
//   - a key's own principal, for its own keys — within the ranges of the
//     key it presents, if that one is bound;
//   - an operator, for anyone's key, but only to narrow it (after a theft,
//     say): widening someone else's key is refused and recorded.
//
// Every change is logged with the old and new ranges; a widening (any
// address the key could not be used from before) is a high-severity
// entry, announced to security, the key's principal and its tenant's
// admins, and raises the key-networks-widened alert.

// TopicKeyNetworks is the notification of a key's networks widened.
const TopicKeyNetworks = "key.networks"

// SetKeyNetworks replaces the networks of key id with networks (empty:
// any network) and returns the key.
func (v *Vault) SetKeyNetworks(ctx context.Context, id string, networks []string) (*custos.APIKey, error) {
	own := ""
	if p := custos.PrincipalFromContext(ctx); p != nil {
		own = p.TenantID
	}
	l, err := v.authorize(ctx, custos.ActionKeyNetworks, own)
	if err != nil {
		return nil, err
	}
	if !custos.ValidID(custos.PrefixKey, id) {
		return nil, v.deny(ctx, l, notFound("key"))
	}
	l.Detail = "key " + id
	next, err := custos.CheckNetworks(networks)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	r := custos.RequestFromContext(ctx)
	// Whether a key exists is the operator's to know; anyone else hears
	// the same about another's key and about none at all.
	var noKey error = custos.Errorf(custos.EFORBIDDEN, "a key's networks are changed by its own principal, or narrowed by an operator")
	if r.Principal.Kind == custos.KindOperator {
		noKey = notFound("active key")
	}
	widened := false
	apply := func(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf) error {
		var prev, tn sql.NullString
		var principal string
		err := tx.QueryRowContext(ctx, `SELECT k.principal_id, p.tenant_id, k.networks FROM api_keys k JOIN principals p ON p.id = k.principal_id
			WHERE k.id = $1 AND k.revoked_at IS NULL`, id).Scan(&principal, &tn, &prev)
		if isNoRows(err) {
			return noKey
		} else if err != nil {
			return fmt.Errorf("read key: %w", err)
		}
		// A key row changed by hand is no key to re-seal with new ranges.
		if err := v.checkRow(ctx, tx, "api_keys", id); err != nil {
			return noKey
		}
		tenant := tn.String
		before := parseNetworks(prev.String)
		widened = !custos.NetworksWithin(next, before)
		switch {
		case principal == r.Principal.ID:
			if r.Key != nil && !custos.NetworksWithin(next, r.Key.Networks) {
				return custos.Errorf(custos.EFORBIDDEN, "a key's networks may not reach beyond those of the key presented")
			}
		case r.Principal.Kind == custos.KindOperator:
			if widened {
				return custos.Errorf(custos.EFORBIDDEN, "an operator narrows another principal's key, never widens it: only the key's own principal does, and it is announced")
			}
		default:
			return noKey
		}
		what := "narrowed"
		switch {
		case widened:
			what, leaf.Severity = "widened", "high"
		case custos.NetworksWithin(before, next):
			what = "unchanged"
		}
		leaf.Tenant = tenant
		leaf.Detail = fmt.Sprintf("key %s of principal %s networks %s from %s to %s", id, principal, what, custos.FormatNetworks(before), custos.FormatNetworks(next))
		if len(leaf.Detail) > maxTextBytes {
			leaf.Detail = fmt.Sprintf("key %s of principal %s networks %s from %d to %d ranges", id, principal, what, len(before), len(next))
		}
		if _, err := tx.ExecContext(ctx, `UPDATE api_keys SET networks = $1 WHERE id = $2`, nullString(strings.Join(next, " ")), id); err != nil {
			return fmt.Errorf("set key networks: %w", err)
		}
		if err := v.reseal(ctx, tx, "api_keys", id); err != nil {
			return err
		}
		if widened {
			to := []string{notify.ToStaffSecurity, notify.ToPrincipal(principal)}
			if tenant != "" {
				to = append(to, notify.ToTenantAdmins)
			}
			if err := v.enqueue(ctx, tx, &notify.Message{Topic: TopicKeyNetworks, Severity: notify.SeverityHigh, TenantID: tenant, To: to,
				Text: fmt.Sprintf("%s %s widened the networks of key %s (principal %s): it can now be used from %s", r.Principal.Kind, r.Principal.ID, id, principal, custos.FormatNetworks(next)),
				Data: map[string]string{"key": id, "principal": principal}}); err != nil {
				return err
			}
		}
		return nil
	}
	if err := v.record(ctx, l, apply); err != nil {
		return nil, err
	}
	return v.scanKey(ctx, id)
}
