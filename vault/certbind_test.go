package vault_test

import (
	"context"
	"strings"
	"testing"

	"github.com/custos-dev/custos"
)

// withPin returns ctx as if its connection had presented a verified
// client certificate with pin.
func withPin(ctx context.Context, pin string) context.Context {
	r := *custos.RequestFromContext(ctx)
	r.CertPin = pin
	return custos.NewContext(ctx, &r)
}

// TestCertBindingOnlyByItself: one operator cannot bind another principal
// to a certificate it holds (it would lock the other out, or make a
// certificate it controls the other's second factor) — refused and
// recorded; the principal binds itself, after which its key is refused
// without that certificate.
func TestCertBindingOnlyByItself(t *testing.T) {
	f := newFixture(t)
	ctx2, p2, secret2 := f.principalSecret(t, custos.KindOperator, "", "other")
	mine, theirs := strings.Repeat("a", 64), strings.Repeat("b", 64)

	if _, err := f.vault.BindCertificate(withPin(f.ctx, mine), p2.ID); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Fatalf("an operator binding another principal: %v, want EFORBIDDEN", err)
	}
	wantDenied(t, f, custos.ActionCertBind, "only itself")
	if err := f.authenticate(secret2); err != nil {
		t.Fatalf("the refused binding bound something: %v", err)
	}
	if _, err := f.vault.BindCertificate(ctx2, p2.ID); custos.ErrorCode(err) != custos.EINVALID {
		t.Fatalf("binding without a certificate: %v, want EINVALID", err)
	}
	pin, err := f.vault.BindCertificate(withPin(ctx2, theirs), p2.ID)
	if err != nil || pin != theirs {
		t.Fatalf("self-binding: %q %v", pin, err)
	}
	auth := func(pin string) error {
		ctx := withPin(custos.NewContext(context.Background(), &custos.Request{ID: custos.NewID(custos.PrefixRequest)}), pin)
		_, _, err := f.vault.Authenticate(ctx, secret2)
		return err
	}
	for _, c := range []struct {
		name, pin string
		want      string
	}{{"no certificate", "", custos.EUNAUTHORIZED}, {"another certificate", mine, custos.EUNAUTHORIZED}, {"its certificate", theirs, ""}} {
		if err := auth(c.pin); custos.ErrorCode(err) != c.want {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	// The first operator cannot unbind it either.
	if err := f.vault.UnbindCertificate(withPin(f.ctx, theirs), p2.ID); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Fatalf("an operator unbinding another principal: %v, want EFORBIDDEN", err)
	}
	if err := auth(""); custos.ErrorCode(err) != custos.EUNAUTHORIZED {
		t.Fatalf("after the refused unbinding, the key alone: %v", err)
	}
}

// TestCertBindingSurvivesTheDatabaseHand: the binding holds against
// someone with write access to the database. Deleting principal_certs'
// row leaves the pin on the principal's own row (its keys still need the
// certificate); clearing or changing that pin by hand breaks the
// principal's MAC (refused even with the certificate, and the
// row-integrity alert raised). A binding made before principals carried
// their pin is copied onto them once, on record.
func TestCertBindingSurvivesTheDatabaseHand(t *testing.T) {
	f := newFixture(t)
	pin, other := strings.Repeat("c", 64), strings.Repeat("d", 64)
	auth := func(secret, pin string) error {
		ctx := withPin(custos.NewContext(context.Background(), &custos.Request{ID: custos.NewID(custos.PrefixRequest)}), pin)
		_, _, err := f.vault.Authenticate(ctx, secret)
		return err
	}
	bound := func(t *testing.T) (*custos.Principal, string) {
		t.Helper()
		ctx, p, secret := f.principalSecret(t, custos.KindOperator, "", "bound-"+custos.NewID("x"))
		if _, err := f.vault.BindCertificate(withPin(ctx, pin), p.ID); err != nil {
			t.Fatal(err)
		}
		return p, secret
	}

	t.Run("binding row deleted", func(t *testing.T) {
		p, secret := bound(t)
		f.exec(t, `DELETE FROM principal_certs WHERE principal_id = $1`, p.ID)
		if err := auth(secret, ""); custos.ErrorCode(err) != custos.EUNAUTHORIZED {
			t.Fatalf("the key alone after the binding row was deleted: %v, want EUNAUTHORIZED", err)
		}
		if err := auth(secret, pin); err != nil {
			t.Fatalf("with its certificate: %v", err)
		}
	})
	for _, c := range []struct{ name, set string }{{"pin cleared", "NULL"}, {"pin changed", "'" + other + "'"}} {
		t.Run(c.name, func(t *testing.T) {
			p, secret := bound(t)
			f.exec(t, `DELETE FROM principal_certs WHERE principal_id = $1`, p.ID)
			f.exec(t, `UPDATE principals SET cert_pin = `+c.set+` WHERE id = $1`, p.ID)
			for _, presented := range []string{"", pin, other} {
				if err := auth(secret, presented); custos.ErrorCode(err) != custos.EUNAUTHORIZED {
					t.Fatalf("presenting %q after the %s: %v, want EUNAUTHORIZED", presented[:min(len(presented), 4)], c.name, err)
				}
			}
			f.integrityAlerted(t, "principals", p.ID)
		})
	}
	t.Run("binding from before the pin column", func(t *testing.T) {
		p, secret := bound(t)
		// As a database from before migration 0035 holds it: the binding
		// row only, the principal's row without a pin and MACed so.
		f.exec(t, `UPDATE principals SET cert_pin = NULL WHERE id = $1`, p.ID)
		if err := f.vault.Reseal(context.Background(), "principals", p.ID); err != nil {
			t.Fatal(err)
		}
		n, err := f.vault.SealCertPins(context.Background())
		if err != nil || n != 1 {
			t.Fatalf("SealCertPins: %d %v, want 1", n, err)
		}
		if n, err := f.vault.SealCertPins(context.Background()); err != nil || n != 0 {
			t.Fatalf("SealCertPins again: %d %v, want 0", n, err)
		}
		f.exec(t, `DELETE FROM principal_certs WHERE principal_id = $1`, p.ID)
		if err := auth(secret, ""); custos.ErrorCode(err) != custos.EUNAUTHORIZED {
			t.Fatalf("a copied binding, its row deleted, the key alone: %v", err)
		}
		if err := auth(secret, pin); err != nil {
			t.Fatalf("a copied binding with its certificate: %v", err)
		}
	})
}
