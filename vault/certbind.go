package vault

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/notify"
)

// Client-certificate binding (issue 21). A principal bound to a client
// certificate is authenticated only when its API key arrives on a TLS
// connection that presented that certificate (its SubjectPublicKeyInfo's
// SHA-256, verified by the server against its client CAs): a copied key
// alone is refused.
//
// Only the principal binds or unbinds itself, and only while presenting
// the certificate: binding takes the pin from the connection, never from
// a request body, so nobody binds a principal to a certificate whose key
// they hold and the principal does not; unbinding needs the bound
// certificate (Authenticate refuses the request otherwise). Both are
// recorded and announced to security, like a new key.

// TopicCertBound and TopicCertUnbound are the notices of a binding's change.
const (
	TopicCertBound   = "principal.certificate.bound"
	TopicCertUnbound = "principal.certificate.unbound"
)

// BindCertificate binds the calling principal (principalID must be its
// own) to the client certificate the request's connection presented, and
// returns the pin.
func (v *Vault) BindCertificate(ctx context.Context, principalID string) (string, error) {
	by := custos.PrincipalFromContext(ctx)
	l, err := v.authorizeCert(ctx, principalID)
	if err != nil {
		return "", err
	}
	pin := custos.RequestFromContext(ctx).CertPin
	if pin == "" {
		return "", v.deny(ctx, l, custos.Errorf(custos.EINVALID, "no verified client certificate on this connection: bind over mTLS, presenting the certificate to bind (the server needs tls.client_ca_file)"))
	}
	l.Detail = "principal " + by.ID + " bound to client certificate spki-sha256:" + pin
	err = v.announce(ctx, l, &notify.Message{Topic: TopicCertBound, TenantID: by.TenantID, To: []string{notify.ToStaffSecurity},
		Text: fmt.Sprintf("%s %s bound itself to a client certificate (spki-sha256:%s): its keys now need it", by.Kind, by.ID, pin)},
		func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO principal_certs (principal_id, spki_sha256, bound_at) VALUES ($1, $2, $3)
				ON CONFLICT (principal_id) DO UPDATE SET spki_sha256 = excluded.spki_sha256, bound_at = excluded.bound_at`, by.ID, pin, ms(v.now())); err != nil {
				return fmt.Errorf("bind certificate: %w", err)
			}
			if err := v.reseal(ctx, tx, "principal_certs", by.ID); err != nil {
				return err
			}
			return v.setCertPin(ctx, tx, by.ID, pin)
		})
	if err != nil {
		return "", err
	}
	return pin, nil
}

// UnbindCertificate removes the calling principal's binding; its keys work
// without the certificate again.
func (v *Vault) UnbindCertificate(ctx context.Context, principalID string) error {
	by := custos.PrincipalFromContext(ctx)
	l, err := v.authorizeCert(ctx, principalID)
	if err != nil {
		return err
	}
	l.Detail = "principal " + by.ID + " unbound from its client certificate"
	return v.announce(ctx, l, &notify.Message{Topic: TopicCertUnbound, TenantID: by.TenantID, To: []string{notify.ToStaffSecurity},
		Text: fmt.Sprintf("%s %s removed its client-certificate binding: its keys work without the certificate again", by.Kind, by.ID)},
		func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
			res, err := tx.ExecContext(ctx, `DELETE FROM principal_certs WHERE principal_id = $1`, by.ID)
			if err != nil {
				return fmt.Errorf("unbind certificate: %w", err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return custos.Errorf(custos.ENOTFOUND, "this principal is not bound to a client certificate")
			}
			return v.setCertPin(ctx, tx, by.ID, "")
		})
}

// setCertPin writes a principal's pin ("" for none) on its own row and
// MACs the row again: the principal's MAC covers the pin, so the binding
// cannot be removed by deleting principal_certs' row, nor the pin cleared
// or changed by hand, without the principal being refused.
func (v *Vault) setCertPin(ctx context.Context, tx *sql.Tx, principalID, pin string) error {
	if err := v.checkRow(ctx, tx, "principals", principalID); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE principals SET cert_pin = $1 WHERE id = $2`, sql.NullString{String: pin, Valid: pin != ""}, principalID); err != nil {
		return fmt.Errorf("certificate binding: %w", err)
	}
	return v.reseal(ctx, tx, "principals", principalID)
}

func (v *Vault) authorizeCert(ctx context.Context, principalID string) (audit.Leaf, error) {
	by := custos.PrincipalFromContext(ctx)
	l, err := v.authorize(ctx, custos.ActionCertBind, ownTenant(by))
	if err != nil {
		return l, err
	}
	l.Tenant = by.TenantID
	if principalID != by.ID {
		return l, v.deny(ctx, l, custos.Errorf(custos.EFORBIDDEN, "a principal binds or unbinds only itself, presenting its own certificate"))
	}
	return l, nil
}

// A bound principal's request must present its certificate. The binding
// is on two rows, each MACed: the pin on the principal's own row
// (p.CertPin, checked with the principal's MAC when the key was looked
// up) and principal_certs' row. Either one binds: a row deleted by hand
// leaves the other, and a row whose MAC fails refuses the principal (fail
// closed: an edited pin is no binding, nor no binding). Authentication
// reads the legacy row with legacyCertPin (or takes it from its cache) and
// compares both with matchCertPins.

// legacyCertPin reads p's pin in principal_certs ("" for none) and checks
// its row's MAC. The authentication cache keeps it with the key: any
// change to the table raises auth_epoch (migration 0052).
func (v *Vault) legacyCertPin(ctx context.Context, p *custos.Principal) (string, error) {
	var pin string
	err := v.queryRow(ctx, `SELECT spki_sha256 FROM principal_certs WHERE principal_id = $1`, p.ID).Scan(&pin)
	if err != nil && !isNoRows(err) {
		return "", fmt.Errorf("authenticate: read certificate binding: %w", err)
	}
	if err == nil {
		if err := v.checkRow(ctx, v.read, "principal_certs", p.ID); err != nil {
			return "", custos.Errorf(custos.EUNAUTHORIZED, "unknown API key")
		}
	}
	return pin, nil
}

// matchCertPins refuses the request unless it presented the certificate
// of each binding p has: its own row's and the legacy one (pin).
func matchCertPins(ctx context.Context, p *custos.Principal, pin string) error {
	got := custos.RequestFromContext(ctx).CertPin
	for _, want := range []string{p.CertPin, pin} {
		if want != "" && (got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1) {
			return custos.Errorf(custos.EUNAUTHORIZED, "this principal is bound to a client certificate: present it (mTLS) with its key")
		}
	}
	return nil
}

// ActionCertPinsSeal is the system entry of the one-time copy of
// certificate bindings made before principals carried their pin
// ([Vault.SealCertPins]).
const ActionCertPinsSeal = "certpins.seal"

// SealCertPins copies each binding in principal_certs whose row and whose
// principal's row both pass their MACs onto the principal's own row
// (cert_pin, covered by the principal's MAC from then on), in one
// transaction with one certpins.seal system entry counting them; nothing
// (and no entry) when there is none. Bindings are written to both rows
// since migration 0035: this is for those made before it. A binding row
// whose MAC fails is not copied (the principal stays refused by it).
func (v *Vault) SealCertPins(ctx context.Context) (int, error) {
	var pending int
	if err := v.read.QueryRowContext(ctx, `SELECT count(*) FROM principal_certs c JOIN principals p ON p.id = c.principal_id WHERE p.cert_pin IS NULL`).Scan(&pending); err != nil {
		return 0, fmt.Errorf("seal certificate pins: %w", err)
	}
	if pending == 0 {
		return 0, nil
	}
	n := 0
	l := audit.Leaf{Actor: "system", Action: ActionCertPinsSeal, Outcome: audit.OutcomeOK,
		Detail: "client-certificate bindings copied onto their principals once"}
	err := v.record(ctx, l, func(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf) error {
		n = 0
		rows, err := tx.QueryContext(ctx, `SELECT c.principal_id, c.spki_sha256 FROM principal_certs c JOIN principals p ON p.id = c.principal_id WHERE p.cert_pin IS NULL ORDER BY c.principal_id`)
		if err != nil {
			return fmt.Errorf("seal certificate pins: %w", err)
		}
		var ids, pins []string
		for rows.Next() {
			var id, pin string
			if err := rows.Scan(&id, &pin); err != nil {
				rows.Close()
				return fmt.Errorf("seal certificate pins: %w", err)
			}
			ids, pins = append(ids, id), append(pins, pin)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("seal certificate pins: %w", err)
		}
		for i, id := range ids {
			if err := v.checkRow(ctx, tx, "principal_certs", id); errors.Is(err, errForged) {
				continue
			} else if err != nil {
				return err
			}
			if err := v.setCertPin(ctx, tx, id, pins[i]); errors.Is(err, errForged) {
				continue // the principal's own row fails: it stays refused
			} else if err != nil {
				return err
			}
			n++
		}
		leaf.Count = n
		return nil
	})
	return n, err
}
