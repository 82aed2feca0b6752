// Package enrolltest gives tests a principal's key the way its holder gets
// one: the enrollment mail the vault composes for the holder's address,
// then [vault.Vault.Enroll] with the secret read from it. Nothing here
// creates a key any other way.
package enrolltest

import (
	"context"
	"testing"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/vault"
)

// Secret returns the secret in the enrollment mail of enrollment id, as
// the holder would read it.
func Secret(t testing.TB, v *vault.Vault, id string) string {
	t.Helper()
	mail, err := v.EnrollmentMail(context.Background(), id)
	if err != nil {
		t.Fatalf("enrollment mail of %s: %v", id, err)
	}
	if mail == nil {
		t.Fatalf("enrollment %s has no mail to send (not issued)", id)
	}
	s := custos.FindEnrollmentSecret(mail.Body)
	if s == "" {
		t.Fatalf("enrollment mail of %s holds no secret", id)
	}
	return s
}

// Key enrolls with the secret of enrollment id and returns the new key.
func Key(t testing.TB, v *vault.Vault, id string, req custos.KeyRequest) string {
	t.Helper()
	ctx := custos.NewContext(context.Background(), &custos.Request{ID: custos.NewID(custos.PrefixRequest), Source: "192.0.2.1"})
	key, _, err := v.Enroll(ctx, Secret(t, v, id), req)
	if err != nil {
		t.Fatalf("enroll %s: %v", id, err)
	}
	return key
}

// As returns a context authenticated with key.
func As(t testing.TB, v *vault.Vault, key, source string) context.Context {
	t.Helper()
	ctx := custos.NewContext(context.Background(), &custos.Request{ID: custos.NewID(custos.PrefixRequest), Source: source})
	p, k, err := v.Authenticate(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	return custos.NewContext(ctx, &custos.Request{ID: custos.NewID(custos.PrefixRequest), Source: source, Principal: p, Key: k})
}

// Approvers decides pending enrollments in tests: it remembers every
// principal context it is given and, for an enrollment waiting on a second
// party, approves it with the first one the vault would accept.
type Approvers struct {
	V    *vault.Vault
	ctxs []context.Context
}

// Add remembers ctx as a possible approver.
func (a *Approvers) Add(ctx context.Context) { a.ctxs = append(a.ctxs, ctx) }

// Settle approves e if it is pending, trying each remembered approver in
// turn (newest first), and fails t if none may.
func (a *Approvers) Settle(t testing.TB, e *custos.Enrollment) {
	t.Helper()
	if e.Status != custos.EnrollPending {
		return
	}
	var last error
	for i := len(a.ctxs) - 1; i >= 0; i-- {
		p := custos.PrincipalFromContext(a.ctxs[i])
		switch e.Approval {
		case custos.ApprovalTenantAdmin:
			if p.Kind != custos.KindTenantAdmin || p.TenantID != e.TenantID {
				continue
			}
		case custos.ApprovalPrivileged, custos.ApprovalRecovery:
			if p.Kind != custos.KindOperator && p.Kind != custos.KindStaffSecurity {
				continue
			}
		}
		d, err := a.V.DecideEnrollment(a.ctxs[i], e.ID, true)
		if err == nil {
			*e = *d
			return
		}
		last = err
	}
	t.Fatalf("nobody could approve enrollment %s (%s): %v", e.ID, e.Approval, last)
}
