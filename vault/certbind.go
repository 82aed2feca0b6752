package vault

import (
	"context"
	"crypto/subtle"
	"database/sql"
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
			return v.reseal(ctx, tx, "principal_certs", by.ID)
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
			return nil
		})
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

// checkCertBinding refuses a bound principal whose request did not
// present its certificate. A binding row whose MAC fails refuses the
// principal too (fail closed: an edited pin is no binding, nor no
// binding).
func (v *Vault) checkCertBinding(ctx context.Context, principalID string) error {
	var pin string
	err := v.queryRow(ctx, `SELECT spki_sha256 FROM principal_certs WHERE principal_id = $1`, principalID).Scan(&pin)
	if isNoRows(err) {
		return nil
	} else if err != nil {
		return fmt.Errorf("authenticate: read certificate binding: %w", err)
	}
	if err := v.checkRow(ctx, v.read, "principal_certs", principalID); err != nil {
		return custos.Errorf(custos.EUNAUTHORIZED, "unknown API key")
	}
	got := custos.RequestFromContext(ctx).CertPin
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(pin)) != 1 {
		return custos.Errorf(custos.EUNAUTHORIZED, "this principal is bound to a client certificate: present it (mTLS) with its key")
	}
	return nil
}
