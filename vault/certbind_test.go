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
